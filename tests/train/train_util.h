/* Helpers for the training tests: temporary directories and comparing two checkpoints. */
#ifndef ZT_TEST_TRAIN_UTIL_H
#define ZT_TEST_TRAIN_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../model/fixture.h"
#include "common/dtype.h"
#include "io/safetensors.h"
#include "train/trainer.h"

static inline void make_temp_dir(char *dir, size_t size, const char *tag) {
    snprintf(dir, size, "/tmp/zt_%s_XXXXXX", tag);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "FATAL: mkdtemp %s\n", dir);
        exit(1);
    }
}

static inline void remove_run_dir(const char *dir) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
}

static inline double element_as_double(const zt_st_tensor *t, size_t i) {
    if (strcmp(t->dtype, "F32") == 0) {
        float v;
        memcpy(&v, t->data + 4 * i, 4);
        return v;
    }
    uint16_t h;
    memcpy(&h, t->data + 2 * i, 2);
    return strcmp(t->dtype, "F16") == 0 ? zt_f16_to_f32(h) : zt_bf16_to_f32(h);
}

/* Lines of out/steplog.jsonl (the header and one per record), 0 when there is none. */
static inline int steplog_lines(const char *out) {
    char path[1200];
    snprintf(path, sizeof path, "%s/steplog.jsonl", out);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int lines = 0, c;
    while ((c = fgetc(f)) != EOF)
        lines += c == '\n';
    fclose(f);
    return lines;
}

typedef struct checkpoint_diff {
    size_t elements, changed;
    double max_abs;
    int mismatched_layout; /* a tensor missing or of another shape/dtype */
} checkpoint_diff;

/* Compares model.safetensors of two directories element by element (bitwise for `changed`). */
static inline checkpoint_diff compare_checkpoints(const char *dir_a, const char *dir_b) {
    checkpoint_diff d = {0, 0, 0.0, 0};
    char pa[1200], pb[1200];
    snprintf(pa, sizeof pa, "%s/model.safetensors", dir_a);
    snprintf(pb, sizeof pb, "%s/model.safetensors", dir_b);
    zt_safetensors *a = NULL, *b = NULL;
    if (zt_st_open(pa, &a) != ZT_OK || zt_st_open(pb, &b) != ZT_OK) {
        fprintf(stderr, "compare: %s\n", zt_last_error());
        d.mismatched_layout = 1;
        zt_st_close(a);
        return d;
    }
    for (int i = 0; i < zt_st_count(a); i++) {
        const zt_st_tensor *ta = zt_st_get(a, i);
        const zt_st_tensor *tb = zt_st_find(b, ta->name);
        if (!tb || tb->n_bytes != ta->n_bytes || strcmp(ta->dtype, tb->dtype) != 0) {
            d.mismatched_layout = 1;
            continue;
        }
        size_t size = (size_t)ta->element_bits / 8;
        for (size_t e = 0; e < ta->n_elems; e++) {
            d.elements++;
            if (memcmp(ta->data + e * size, tb->data + e * size, size) != 0) {
                d.changed++;
                double diff = fabs(element_as_double(ta, e) - element_as_double(tb, e));
                if (diff > d.max_abs) d.max_abs = diff;
            }
        }
    }
    if (zt_st_count(a) != zt_st_count(b)) d.mismatched_layout = 1;
    zt_st_close(a);
    zt_st_close(b);
    return d;
}

/* Options for a quiet run on a fixture model with the fixture's score.jsonl as the task. */
static inline void fixture_run_options(zt_train_options *o, const char *fixture, char *model_dir,
                                       size_t model_size, char *data, size_t data_size,
                                       const char *output) {
    zt_train_options_default(o);
    fixture_path(model_dir, model_size, fixture, NULL);
    fixture_path(data, data_size, "opt-pre", "score.jsonl");
    o->model_dir = model_dir;
    o->train_path = data;
    o->output_dir = output;
    o->batch_size = 4;
    o->quiet = 1;
    o->hp.lr = 1e-3;
    o->hp.eps = 1e-3;
}

/* The text of a file with every "elapsed_s" field removed (wall-clock time differs between
 * runs); NULL when unreadable. The caller frees it. */
static inline char *read_without_timing(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *out = malloc(n + 1), *w = out;
    for (const char *c = text; *c;) {
        if (strncmp(c, ",\"elapsed_s\":", 13) == 0) {
            c += 13;
            while (*c && *c != '}' && *c != ',')
                c++;
            continue;
        }
        *w++ = *c++;
    }
    *w = '\0';
    return out;
}

/* Waits for a child: its exit code, or 128 + the signal that ended it (as a shell reports). */
static inline int wait_exit(pid_t pid) {
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

#endif
