/* The step log: one JSON line per step with everything replay needs (docs/design.md §2). Base
 * weights + log rebuild a fine-tune bit for bit. Floats are written so they read back exactly
 * (%.9g for f32 coefficients, %.17g for doubles); 64-bit seeds as hex strings, since JSON numbers
 * lose integers above 2^53. The first line is a header naming the run. */
#ifndef ZT_ZO_STEPLOG_H
#define ZT_ZO_STEPLOG_H

#include <stdio.h>

#include "zo/engine.h"

enum { ZT_STEPLOG_TEXT_MAX = 512, ZT_RUN_OPTIONS_MAX = 64, ZT_RUN_VALUE_MAX = 160 };

/* One option that defines the run, as the command line spells it ("--lr", "1e-06"); the
 * content fingerprints of the inputs are options too ("--train", its fingerprint). */
typedef struct zt_run_option {
    char name[32];
    char value[ZT_RUN_VALUE_MAX];
} zt_run_option;

/* What a log is about: enough to rebuild the trainable set and optimizer state for replay, and
 * (version 2) everything that defines the run, which --resume must match. */
typedef struct zt_steplog_header {
    int version; /* 1: no run options (not checked on resume); 2 */
    int n_run;
    zt_run_option run[ZT_RUN_OPTIONS_MAX];
    char optimizer[64];
    char trainable[ZT_STEPLOG_TEXT_MAX]; /* the --trainable patterns, "" = all */
    int state_copies;
    char model[ZT_STEPLOG_TEXT_MAX]; /* base model directory, informational */
    unsigned long long run_seed;
    char compute[96]; /* "cpu, gemm f32" & co. (informational; "" in older logs): where the
                         losses were computed, which bit-identical resume must match */
} zt_steplog_header;

typedef struct zt_steplog zt_steplog;

/* Opens path for appending. A new (or empty) file gets the header; an existing one must carry
 * the same optimizer and trainable set. A torn last line (crash mid-write) is cut off first. */
zt_status zt_steplog_open_append(const char *path, const zt_steplog_header *header,
                                 zt_steplog **out);
/* Appends one record and flushes it to the OS (a crash loses at most the line being written). */
zt_status zt_steplog_append(zt_steplog *log, const zt_step_record *record);
/* fsync: called at checkpoints. */
zt_status zt_steplog_sync(zt_steplog *log);
void zt_steplog_close(zt_steplog *log);

/* The value of a run option of the header, or NULL. */
const char *zt_steplog_run_value(const zt_steplog_header *header, const char *name);

/* The run option naming the z layout a log's steps were drawn with, and this version's value:
 * Rademacher z packed 32 elements per z word (docs/spec.md §5.9). Logs written before it have no
 * such option; their Rademacher steps took one word per element. */
#define ZT_RUN_Z_LAYOUT "z layout"
#define ZT_Z_LAYOUT_CURRENT "rademacher 32 per word"

/* Refuses (ZT_ERR_CONFLICT, naming path and the first such step) a log whose records hold a
 * Rademacher step drawn under another z layout than this version's: replaying or resuming it
 * would move the weights along other directions than the logged run did. Gaussian and sphere
 * steps are the same in every layout. */
zt_status zt_steplog_check_z_layout(const zt_steplog_header *header, const zt_step_record *records,
                                    int n_records, const char *path);

/* Reads a whole log: header and records (steps, skipped steps, evaluations) in order. Errors name
 * path:line. A last line without its newline is torn, parsable or not: ignored (reported through
 * *torn_tail when not NULL). */
zt_status zt_steplog_read(const char *path, zt_steplog_header *header, zt_step_record **records,
                          int *n_records, int *torn_tail);

/* Cuts the log (closed) back to its header and first n_keep records: a first-order run's steps
 * past its snapshot cannot be replayed, so a resume makes them again. */
zt_status zt_steplog_keep_records(const char *path, int n_keep);

/* One record as a JSON line (no newline) into buf; returns ZT_ERR_INTERNAL if it does not fit. */
zt_status zt_steplog_format(const zt_step_record *record, char *buf, size_t size);

#endif
