/* What the libFuzzer harnesses share: a private scratch directory for the files a loader reads,
 * splitting one input into several files, and the checks every harness makes. A broken
 * invariant prints what broke and aborts, so libFuzzer keeps the input as a crash artifact. */
#ifndef ZT_FUZZ_COMMON_H
#define ZT_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "zotune.h"

/* Separates the files of a multi-file input (tokenizer files, a shard set, a snapshot). A line
 * of its own, so hand-written seeds stay readable; the dictionaries carry it. */
#define FUZZ_SEPARATOR "\n#--8<--\n"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                            \
    } while (0)

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

/* This process's scratch directory, created on first use on tmpfs when there is one: the
 * writers fsync, and on a disk each execution would cost milliseconds. */
const char *fuzz_dir(void);
/* dir/name into out (aborts when it does not fit). */
void fuzz_path(char *out, size_t size, const char *name);

/* Writes bytes to dir/name (replacing it) and, when path is not NULL, gives that path; aborts
 * when the scratch directory cannot take it. */
void fuzz_put(const char *name, const void *data, size_t size, char *path, size_t path_size);
/* Removes the named files of the scratch directory (what the previous input left there). */
void fuzz_remove(const char *const *names, int n);

/* Cuts data at FUZZ_SEPARATOR into at most max_parts parts (the last takes the rest). Returns
 * how many parts there are; missing ones are set to NULL with size 0. */
int fuzz_split(const uint8_t *data, size_t size, const uint8_t **parts, size_t *sizes,
               int max_parts);

/* Before a call that may fail: forget the previous message. */
void fuzz_expect_begin(void);
/* After it: a failure must say why (a non-empty message) and never be an internal error or an
 * out-of-memory on a tiny input, which both mean a bug rather than a bad file. */
void fuzz_expect_reported(zt_status status, const char *call);

/* Whether text[0..n) is well-formed UTF-8 (the harnesses' own check, independent of the
 * library's). */
int fuzz_utf8_valid(const uint8_t *text, size_t n);

#endif
