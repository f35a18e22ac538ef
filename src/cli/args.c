#include "cli/args.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void zt_args_print_help(const zt_arg_spec *spec) {
    printf("usage: %s\n\n%s\n\noptions:\n", spec->usage, spec->description);
    for (int i = 0; i < spec->n_options; i++) {
        const zt_arg_option *o = &spec->options[i];
        char left[64];
        if (o->kind == ZT_ARG_FLAG)
            snprintf(left, sizeof left, "--%s", o->name);
        else
            snprintf(left, sizeof left, "--%s %s", o->name, o->metavar ? o->metavar : "VALUE");
        printf("  %-26s %s\n", left, o->help);
    }
    printf("  %-26s %s\n", "--help", "show this help and exit");
}

static int set_value(const char *command, const zt_arg_option *o, const char *value) {
    char *end = NULL;
    errno = 0;
    switch (o->kind) {
    case ZT_ARG_INT: {
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < INT_MIN || v > INT_MAX) {
            fprintf(stderr, "%s: --%s expects an integer, got '%s'\n", command, o->name, value);
            return ZT_ARGS_ERROR;
        }
        *(int *)o->target = (int)v;
        return ZT_ARGS_OK;
    }
    case ZT_ARG_DOUBLE: {
        double v = strtod(value, &end);
        if (errno || end == value || *end) {
            fprintf(stderr, "%s: --%s expects a number, got '%s'\n", command, o->name, value);
            return ZT_ARGS_ERROR;
        }
        *(double *)o->target = v;
        return ZT_ARGS_OK;
    }
    case ZT_ARG_U64: {
        /* strtoull would take "-1" as 2^64 - 1 and "1.5" as 1: digits only, and no overflow */
        int hex = value[0] == '0' && (value[1] == 'x' || value[1] == 'X');
        const char *digits = hex ? value + 2 : value;
        int valid = *digits != '\0';
        for (const char *c = digits; *c && valid; c++)
            valid = hex ? isxdigit((unsigned char)*c) != 0 : isdigit((unsigned char)*c) != 0;
        unsigned long long v = valid ? strtoull(value, &end, hex ? 16 : 10) : 0;
        if (!valid || errno || *end) {
            fprintf(stderr, "%s: --%s expects an integer in [0, 2^64), got '%s'\n", command,
                    o->name, value);
            return ZT_ARGS_ERROR;
        }
        *(uint64_t *)o->target = (uint64_t)v;
        return ZT_ARGS_OK;
    }
    case ZT_ARG_THREADS: {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        long most = ZT_ARGS_THREADS_PER_CORE * (cores > 0 ? cores : 1);
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < 1 || v > most) {
            fprintf(stderr, "%s: --%s expects 1 .. %ld (%d per core on %ld cores), got '%s'\n",
                    command, o->name, most, (int)ZT_ARGS_THREADS_PER_CORE, cores, value);
            return ZT_ARGS_ERROR;
        }
        *(int *)o->target = (int)v;
        return ZT_ARGS_OK;
    }
    case ZT_ARG_STRING:
        *(const char **)o->target = value;
        return ZT_ARGS_OK;
    case ZT_ARG_FLAG:
        break;
    }
    return ZT_ARGS_ERROR;
}

int zt_args_parse(const zt_arg_spec *spec, int argc, char **argv, int first,
                  const char **positional, int *n_positional) {
    const char *command = spec->command;
    *n_positional = 0;
    int only_positional = 0;
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (only_positional || strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            if (!only_positional && strcmp(arg, "--") == 0) {
                only_positional = 1;
                continue;
            }
            if (*n_positional >= spec->max_positional) {
                fprintf(stderr, "%s: unexpected argument '%s'\n(see --help)\n", command, arg);
                return ZT_ARGS_ERROR;
            }
            positional[(*n_positional)++] = arg;
            continue;
        }
        if (strcmp(arg, "--help") == 0) {
            zt_args_print_help(spec);
            return ZT_ARGS_HELP;
        }
        const char *name = arg + 2;
        const char *equals = strchr(name, '=');
        size_t name_len = equals ? (size_t)(equals - name) : strlen(name);
        const zt_arg_option *o = NULL;
        for (int k = 0; k < spec->n_options && !o; k++)
            if (strlen(spec->options[k].name) == name_len &&
                strncmp(spec->options[k].name, name, name_len) == 0)
                o = &spec->options[k];
        if (!o) {
            fprintf(stderr, "%s: unknown option '--%.*s'\n(see --help)\n", command, (int)name_len,
                    name);
            return ZT_ARGS_ERROR;
        }
        if (o->kind == ZT_ARG_FLAG) {
            if (equals) {
                fprintf(stderr, "%s: --%s takes no value\n", command, o->name);
                return ZT_ARGS_ERROR;
            }
            *(int *)o->target = 1;
            continue;
        }
        const char *value = equals ? equals + 1 : NULL;
        if (!value) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: --%s needs a value (%s)\n", command, o->name,
                        o->metavar ? o->metavar : "VALUE");
                return ZT_ARGS_ERROR;
            }
            value = argv[++i];
        }
        int r = set_value(command, o, value);
        if (r != ZT_ARGS_OK) return r;
    }
    if (*n_positional < spec->min_positional) {
        fprintf(stderr, "%s: missing arguments\nusage: %s\n(see --help)\n", command, spec->usage);
        return ZT_ARGS_ERROR;
    }
    return ZT_ARGS_OK;
}

int zt_args_named_or_positional(const zt_arg_spec *spec, const char **named,
                                const char *const *option_names, int n,
                                const char *const *positional, int n_positional) {
    if (n_positional > n) {
        fprintf(stderr, "%s: %d positional arguments, at most %d (usage: %s)\n", spec->command,
                n_positional, n, spec->usage);
        return ZT_ARGS_ERROR;
    }
    for (int i = 0; i < n; i++) {
        const char *given = i < n_positional ? positional[i] : NULL;
        if (named[i] && given && strcmp(named[i], given) != 0) {
            fprintf(stderr, "%s: --%s %s and the positional '%s' name different inputs\n",
                    spec->command, option_names[i], named[i], given);
            return ZT_ARGS_ERROR;
        }
        if (!named[i]) named[i] = given;
        if (!named[i]) {
            fprintf(stderr, "%s: --%s is required (or give it by position: %s)\n", spec->command,
                    option_names[i], spec->usage);
            return ZT_ARGS_ERROR;
        }
    }
    return ZT_ARGS_OK;
}

int zt_args_choice(const char *command, const char *option, const char *value,
                   const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (strcmp(value, names[i]) == 0) return i;
    fprintf(stderr, "%s: --%s '%s': expected one of", command, option, value);
    for (int i = 0; i < n; i++)
        fprintf(stderr, " %s", names[i]);
    fprintf(stderr, "\n");
    return -1;
}
