/* GNU-style option parsing for the zotune subcommands: --name VALUE, --name=VALUE, flags,
 * positional arguments, --help. Errors name the option. */
#ifndef ZT_CLI_ARGS_H
#define ZT_CLI_ARGS_H

#include <stddef.h>

typedef enum zt_arg_kind {
    ZT_ARG_FLAG,
    ZT_ARG_INT,
    ZT_ARG_DOUBLE,
    ZT_ARG_STRING,
    ZT_ARG_U64,     /* uint64_t*: an exact unsigned integer, decimal or 0x hex (seeds) */
    ZT_ARG_THREADS, /* int*: 1 .. ZT_ARGS_THREADS_PER_CORE x the online cores */
} zt_arg_kind;

/* More threads than this many per core only oversubscribe (and OpenMP fails long before an
 * absurd count): --threads is refused past it. */
enum { ZT_ARGS_THREADS_PER_CORE = 4 };
/* What every command's --threads says of the default (kernels/cpu/threads.c). */
#define ZT_THREADS_HELP                                                                            \
    "CPU threads (default: every core other processes leave free, looked at as the run goes)"

typedef struct zt_arg_option {
    const char *name; /* without the leading "--" */
    zt_arg_kind kind;
    void *target;        /* int* (FLAG, INT, THREADS), double*, const char**, uint64_t* */
    const char *metavar; /* shown in --help, e.g. "N" */
    const char *help;
} zt_arg_option;

typedef struct zt_arg_spec {
    const char *command;     /* "zotune info", prefixes every error */
    const char *usage;       /* "zotune info MODEL_DIR [options]" */
    const char *description; /* one paragraph */
    const zt_arg_option *options;
    int n_options;
    int min_positional, max_positional;
} zt_arg_spec;

enum { ZT_ARGS_OK = 0, ZT_ARGS_HELP = 1, ZT_ARGS_ERROR = 2 };

/* Parses argv[first..argc). Positional arguments go to positional[0..*n_positional).
 * Returns ZT_ARGS_HELP after printing help to stdout, ZT_ARGS_ERROR after printing the problem
 * and a hint to stderr. */
int zt_args_parse(const zt_arg_spec *spec, int argc, char **argv, int first,
                  const char **positional, int *n_positional);

void zt_args_print_help(const zt_arg_spec *spec);

/* A command's inputs may be given by position or by option (`score --model DIR --data FILE`
 * = `score DIR FILE`): named[i] takes positional[i] when its option (option_names[i], without
 * "--") was not given. Both for one input must agree; a missing one is an error. Returns
 * ZT_ARGS_OK, or ZT_ARGS_ERROR after printing the problem. */
int zt_args_named_or_positional(const zt_arg_spec *spec, const char **named,
                                const char *const *option_names, int n,
                                const char *const *positional, int n_positional);

/* The index of `value` among the n `names` of option --`option`; -1 after printing
 * "<command>: --option 'value': expected one of ...". */
int zt_args_choice(const char *command, const char *option, const char *value,
                   const char *const *names, int n);

/* The choices more than one command takes. */
#define ZT_ARGS_BOS_CHOICES                                                                        \
    { "opt", "mezo" }
#define ZT_ARGS_TRAIN_AS_CHOICES                                                                   \
    { "classification", "lm" }
#define ZT_ARGS_OBJECTIVE_CHOICES                                                                  \
    { "loss", "accuracy", "f1" }
#define ZT_ARGS_MODE_CHOICES                                                                       \
    { "shadow", "inplace" }

#endif
