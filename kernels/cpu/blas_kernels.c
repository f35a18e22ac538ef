/* Which OpenBLAS kernels the CPU backend's GEMMs run on.
 *
 * A DYNAMIC_ARCH OpenBLAS picks its kernels from the CPUID model number, and a model newer than
 * the library falls back to a generic SSE3 core. Debian 12's OpenBLAS 0.3.21 does that on Intel
 * Emerald Rapids (family 6, model 0xCF): it runs "Prescott" kernels on a CPU with AVX-512, and
 * sgemm at (256 x 768) x (768 x 3072) ran at 31 GFLOP/s there against 145 with its SkylakeX
 * kernels (docs/design.md §4.2). So when the library settled on a core older than the CPU's own
 * vector units, the backend asks it again for the core those units can run, the way
 * OPENBLAS_CORETYPE would have at load time. A user's OPENBLAS_CORETYPE is always obeyed. */
#include "cpu/cpu_backend.h"

#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Weak: an OpenBLAS built without DYNAMIC_ARCH has one set of kernels and neither of these. */
extern void gotoblas_dynamic_init(void) __attribute__((weak));
extern void gotoblas_dynamic_quit(void) __attribute__((weak));

static pthread_once_t selection_once = PTHREAD_ONCE_INIT;
static char detected_core[32];
static char chosen_core[32];
static char summary[192];
static char gemm_kernels[48];

/* 2: AVX-512 (F, CD, BW, DQ, VL) as OpenBLAS's SkylakeX kernels use it; 1: AVX2 with FMA, as
 * its Haswell kernels do; 0: neither. */
static int cpu_vector_level(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl"))
        return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
    return 0;
}

/* The vector level an OpenBLAS core name's kernels are written for. Unknown names count as the
 * top level, so a core newer than this table is never replaced. */
static int core_vector_level(const char *name) {
    static const char *const avx512_cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    static const char *const avx2_cores[] = {"Haswell", "Zen", "Excavator"};
    static const char *const older_cores[] = {
        "Katmai",       "Coppermine",  "Northwood",  "Prescott",    "Banias", "Atom",
        "Core2",        "Penryn",      "Dunnington", "Nehalem",     "Athlon", "Opteron",
        "Opteron_SSE3", "Barcelona",   "Nano",       "Sandybridge", "Bobcat", "Bulldozer",
        "Piledriver",   "Steamroller", "Unknown"};
    for (size_t i = 0; i < sizeof avx512_cores / sizeof *avx512_cores; i++)
        if (strcmp(name, avx512_cores[i]) == 0) return 2;
    for (size_t i = 0; i < sizeof avx2_cores / sizeof *avx2_cores; i++)
        if (strcmp(name, avx2_cores[i]) == 0) return 1;
    for (size_t i = 0; i < sizeof older_cores / sizeof *older_cores; i++)
        if (strcmp(name, older_cores[i]) == 0) return 0;
    return 2;
}

static void copy_name(char *dst, size_t size, const char *src) {
    snprintf(dst, size, "%s", src ? src : "unknown");
}

static void select_kernels(void) {
    copy_name(detected_core, sizeof detected_core, openblas_get_corename());
    copy_name(chosen_core, sizeof chosen_core, detected_core);
    const char *config = openblas_get_config();
    char version[32];
    /* "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..." -> "OpenBLAS 0.3.21" */
    if (sscanf(config, "OpenBLAS %31s", version) != 1) snprintf(version, sizeof version, "?");
    const char *user_core = getenv("OPENBLAS_CORETYPE");
    int cpu_level = cpu_vector_level();
    int can_switch = gotoblas_dynamic_init && gotoblas_dynamic_quit && !user_core;
    if (can_switch && core_vector_level(detected_core) < cpu_level) {
        /* OpenBLAS reads OPENBLAS_CORETYPE only while it initialises, so it is set around a
         * re-initialisation and removed again: child processes see the environment as given. */
        const char *wanted = cpu_level == 2 ? "SkylakeX" : "Haswell";
        setenv("OPENBLAS_CORETYPE", wanted, 1);
        gotoblas_dynamic_quit();
        gotoblas_dynamic_init();
        unsetenv("OPENBLAS_CORETYPE");
        copy_name(chosen_core, sizeof chosen_core, openblas_get_corename());
    }
    snprintf(gemm_kernels, sizeof gemm_kernels, "OpenBLAS %s", chosen_core);
    if (strcmp(chosen_core, detected_core) != 0)
        snprintf(summary, sizeof summary,
                 "OpenBLAS %s, %s kernels (it detected %s, older than this CPU's vector units)",
                 version, chosen_core, detected_core);
    else
        snprintf(summary, sizeof summary, "OpenBLAS %s, %s kernels%s", version, chosen_core,
                 user_core ? " (OPENBLAS_CORETYPE)" : "");
}

void zt_cpu_blas_select_kernels(void) {
    pthread_once(&selection_once, select_kernels);
}

const char *zt_cpu_blas_kernels(void) {
    zt_cpu_blas_select_kernels();
    return summary;
}

const char *zt_cpu_blas_gemm_kernels(void) {
    zt_cpu_blas_select_kernels();
    return gemm_kernels;
}

const char *zt_cpu_blas_detected_core(void) {
    zt_cpu_blas_select_kernels();
    return detected_core;
}

const char *zt_cpu_blas_core(void) {
    zt_cpu_blas_select_kernels();
    return chosen_core;
}
