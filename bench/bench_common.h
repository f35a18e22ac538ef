/* Helpers shared by bench_ops and roofline: a monotonic clock, option parsing, unit
 * conversions, the OPT size table of docs/spec.md §1.1 and the GPU peak table of
 * NVIDIA's datasheets. Header-only (static inline), so each benchmark stays one file plus
 * this one; nothing here touches a backend or the CUDA runtime. */
#ifndef ZT_BENCH_COMMON_H
#define ZT_BENCH_COMMON_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "opt/opt.h"
#include "zotune.h"

/* ---- time ---- */

static inline double bench_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

/* ---- units: bytes / ms * 1e-6 = GB/s (decimal, as vendors quote bandwidth) ---- */

static inline double bench_gb_per_s(double bytes, double ms) {
    return ms > 0.0 ? bytes / (ms * 1e6) : 0.0;
}

static inline double bench_gflop_per_s(double flops, double ms) {
    return ms > 0.0 ? flops / (ms * 1e6) : 0.0;
}

static inline double bench_gb(double bytes) {
    return bytes * 1e-9;
}

/* ---- option parsing: "--flag=value" or "--flag value" ---- */

/* Splits "--flag=value" in place into flag and value; *value = NULL when there is no '='.
 * Returns 0 when arg is not a "--" option. */
static inline int bench_split_option(char *arg, char **flag, char **value) {
    if (strncmp(arg, "--", 2) != 0) return 0;
    *flag = arg;
    *value = NULL;
    char *eq = strchr(arg, '=');
    if (eq) {
        *eq = '\0';
        *value = eq + 1;
    }
    return 1;
}

/* The value of a flag that needs one: after '=' or the next argument. */
static inline char *bench_take_value(const char *prog, int argc, char **argv, int *i,
                                     const char *flag, char *value) {
    if (value) return value;
    if (*i + 1 < argc) return argv[++*i];
    fprintf(stderr, "%s: %s needs a value\n", prog, flag);
    return NULL;
}

static inline int bench_parse_int(const char *prog, const char *flag, const char *text, int min,
                                  int *out) {
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (!*text || *end || errno || value < min || value > (1L << 30)) {
        fprintf(stderr, "%s: %s expects an integer >= %d, got '%s'\n", prog, flag, min, text);
        return 0;
    }
    *out = (int)value;
    return 1;
}

static inline int bench_parse_double(const char *prog, const char *flag, const char *text,
                                     double min, double *out) {
    char *end = NULL;
    errno = 0;
    double value = strtod(text, &end);
    if (!*text || *end || errno || !(value >= min)) {
        fprintf(stderr, "%s: %s expects a number >= %g, got '%s'\n", prog, flag, min, text);
        return 0;
    }
    *out = value;
    return 1;
}

static inline int bench_parse_dtype(const char *prog, const char *text, zt_dtype *out) {
    if (strcmp(text, "f32") == 0)
        *out = ZT_F32;
    else if (strcmp(text, "f16") == 0)
        *out = ZT_F16;
    else if (strcmp(text, "bf16") == 0)
        *out = ZT_BF16;
    else {
        fprintf(stderr, "%s: --dtype expects f32, f16 or bf16, got '%s'\n", prog, text);
        return 0;
    }
    return 1;
}

static inline const char *bench_dtype_flag_name(zt_dtype dtype) {
    return dtype == ZT_F32 ? "f32" : dtype == ZT_F16 ? "f16" : "bf16";
}

/* ---- the released OPT sizes (docs/spec.md §1.1): models/opt/opt.h's table ---- */

typedef zt_opt_published_shape bench_opt_size;

enum {
    BENCH_OPT_VOCAB = ZT_OPT_PUBLISHED_VOCAB,
    BENCH_OPT_POSITIONS = ZT_OPT_PUBLISHED_POSITIONS,
    BENCH_OPT_N_SIZES = ZT_OPT_N_PUBLISHED_SIZES
};

static inline const bench_opt_size *bench_opt_sizes(void) {
    return zt_opt_published_shapes();
}

/* "125m" or "opt-125m"; NULL when unknown. */
static inline const bench_opt_size *bench_find_opt_size(const char *name) {
    return zt_opt_find_published_shape(name);
}

/* ---- GPU peaks (NVIDIA's A100, H100 and H200 datasheets): dense, no sparsity ---- */

typedef struct bench_gpu_peaks {
    const char *key;      /* what --gpu takes */
    const char *match[2]; /* substrings of cudaDeviceProp.name that identify it (all must occur) */
    const char *label;
    double hbm_gb_per_s;
    double bf16_tflops; /* dense tensor-core BF16/FP16 */
    double tf32_tflops; /* dense tensor-core TF32 */
    double f32_tflops;  /* plain FP32 FMA (what a cuBLAS SGEMM without TF32 can reach) */
    double memory_gb;   /* HBM capacity */
} bench_gpu_peaks;

enum { BENCH_N_GPUS = 5 };

/* Ordered so that the first match wins: "H100 PCIe" before the SXM part, whose runtime name is
 * "NVIDIA H100 80GB HBM3", and the A100 40 GB ("NVIDIA A100-SXM4-40GB") before the 80 GB one.
 * Bandwidth, tensor, TF32 and FP32 peaks from NVIDIA's
 * datasheets (H100 PCIe: FP32 51, TF32 378); H200 is the H100 SXM die with
 * HBM3e. */
static inline const bench_gpu_peaks *bench_gpu_table(void) {
    static const bench_gpu_peaks gpus[BENCH_N_GPUS] = {
        {"h100-pcie", {"H100", "PCIe"}, "H100 PCIe (HBM2e)", 2000.0, 756.0, 378.0, 51.0, 80.0},
        {"h100", {"H100", ""}, "H100 SXM5 (HBM3)", 3350.0, 989.0, 495.0, 67.0, 80.0},
        {"h200", {"H200", ""}, "H200 SXM (HBM3e)", 4800.0, 989.0, 495.0, 67.0, 141.0},
        {"a100-40gb", {"A100", "40GB"}, "A100 40GB SXM4 (HBM2)", 1555.0, 312.0, 156.0, 19.5, 40.0},
        {"a100", {"A100", ""}, "A100 80GB SXM4 (HBM2e)", 2039.0, 312.0, 156.0, 19.5, 80.0},
    };
    return gpus;
}

static inline const bench_gpu_peaks *bench_find_gpu_by_key(const char *key) {
    for (int i = 0; i < BENCH_N_GPUS; i++)
        if (strcmp(bench_gpu_table()[i].key, key) == 0) return &bench_gpu_table()[i];
    return NULL;
}

static inline const bench_gpu_peaks *bench_find_gpu_by_device_name(const char *device_name) {
    for (int i = 0; i < BENCH_N_GPUS; i++) {
        const bench_gpu_peaks *g = &bench_gpu_table()[i];
        if (strstr(device_name, g->match[0]) && strstr(device_name, g->match[1])) return g;
    }
    return NULL;
}

#endif
