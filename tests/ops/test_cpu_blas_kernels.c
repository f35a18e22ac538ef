/* The OpenBLAS kernels the CPU backend runs on (kernels/cpu/blas_kernels.c). The CPU's vector
 * units are read here straight from CPUID and XGETBV, not through the compiler's helpers the
 * backend uses. With OPENBLAS_CORETYPE unset (ZT_EXPECT_CORE unset): a CPU with AVX2 and FMA
 * never keeps a pre-AVX2 core, and one that OpenBLAS placed on such a core while the CPU has
 * AVX-512 runs SkylakeX; the environment is as it was; sgemm after the switch matches a double
 * loop. With OPENBLAS_CORETYPE set (ZT_EXPECT_CORE names it): that core is kept. Nothing here is
 * timed (bench_ops prints the GEMM rates). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_backend.h"
#include "zt_test.h"

#if defined(__x86_64__)
#include <cpuid.h>

/* 2: AVX-512 F, CD, BW, DQ, VL with the OS saving the ZMM state; 1: AVX2 and FMA with the YMM
 * state saved; 0: neither. */
static int cpuid_vector_level(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx) return 0;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 0x6) != 0x6) return 0; /* XMM and YMM state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    const int avx2 = (b >> 5) & 1;
    const int avx512 = ((b >> 16) & 1) && ((b >> 28) & 1) && ((b >> 30) & 1) && ((b >> 17) & 1) &&
                       ((b >> 31) & 1);                              /* F, CD, BW, DQ, VL */
    if (avx512 && avx2 && fma && (xcr0_lo & 0xE0) == 0xE0) return 2; /* opmask, ZMM state */
    return avx2 && fma ? 1 : 0;
}
#else
static int cpuid_vector_level(void) {
    return 0;
}
#endif

static int is_pre_avx2_core(const char *core) {
    static const char *const avx2_or_later[] = {"Haswell",  "Zen",        "Excavator",
                                                "SkylakeX", "Cooperlake", "SapphireRapids"};
    for (size_t i = 0; i < sizeof avx2_or_later / sizeof *avx2_or_later; i++)
        if (strcmp(core, avx2_or_later[i]) == 0) return 0;
    return 1;
}

/* C = A B^T as the linear op calls it, against a double loop: the kernels OpenBLAS switched to
 * must be initialised (block sizes, buffers), not just named. */
static void check_sgemm(void) {
    enum { M = 67, N = 131, K = 259 };
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * N * K);
    float *c = malloc(sizeof(float) * M * N);
    ZT_REQUIRE(a && b && c, "out of memory");
    for (int i = 0; i < M * K; i++)
        a[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    for (int i = 0; i < N * K; i++)
        b[i] = (float)((i * 53) % 97) / 97.0f - 0.5f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
    double worst = 0.0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double want = 0.0, scale = 0.0;
            for (int k = 0; k < K; k++) {
                want += (double)a[i * K + k] * b[j * K + k];
                scale += fabs((double)a[i * K + k] * b[j * K + k]);
            }
            double err = fabs(c[i * N + j] - want) / (scale > 0 ? scale : 1.0);
            if (err > worst) worst = err;
        }
    /* K f32 roundings of sums bounded by `scale`: K * 2^-24 relative, with room to spare */
    ZT_CHECK(worst < K * 6e-8, "sgemm on %s: error %.3g of the absolute sum, bound %.3g",
             zt_cpu_blas_core(), worst, K * 6e-8);
    free(a);
    free(b);
    free(c);
}

int main(void) {
    const char *expected = getenv("ZT_EXPECT_CORE");
    const char *user_core_before = getenv("OPENBLAS_CORETYPE");
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_cpu_backend_create(1, &be));
    const char *detected = zt_cpu_blas_detected_core(), *core = zt_cpu_blas_core();
    const char *summary = zt_cpu_blas_kernels();
    printf("cpu level %d (2 = AVX-512, 1 = AVX2); %s\n", cpuid_vector_level(), summary);
    ZT_CHECK(strstr(summary, core) != NULL, "the summary '%s' does not name the core %s", summary,
             core);
    char gemm_kernels[64];
    snprintf(gemm_kernels, sizeof gemm_kernels, "OpenBLAS %s", core);
    ZT_CHECK(be->gemm_kernels && strcmp(be->gemm_kernels, gemm_kernels) == 0,
             "the backend's gemm_kernels is '%s', want '%s'", be->gemm_kernels, gemm_kernels);
    const char *describe = be->ops->describe ? be->ops->describe(be) : "";
    ZT_CHECK(strstr(describe, "OpenBLAS") && strstr(describe, core),
             "the backend describes itself as '%s'", describe);
    if (expected) {
        /* a user's OPENBLAS_CORETYPE is obeyed, even where the CPU could do better */
        ZT_CHECK(strcmp(core, expected) == 0 && strcmp(detected, expected) == 0,
                 "OPENBLAS_CORETYPE=%s: the kernels are %s (detected %s)", expected, core,
                 detected);
        ZT_CHECK(user_core_before && getenv("OPENBLAS_CORETYPE") &&
                     strcmp(getenv("OPENBLAS_CORETYPE"), user_core_before) == 0,
                 "the user's OPENBLAS_CORETYPE was changed");
    } else {
        const int level = cpuid_vector_level();
        if (level >= 1)
            ZT_CHECK(!is_pre_avx2_core(core),
                     "the CPU has AVX2 and FMA, the kernels are %s (detected %s)", core, detected);
        if (level == 2 && is_pre_avx2_core(detected))
            ZT_CHECK(strcmp(core, "SkylakeX") == 0,
                     "OpenBLAS detected %s on an AVX-512 CPU; the kernels are %s, want SkylakeX",
                     detected, core);
        if (!is_pre_avx2_core(detected))
            ZT_CHECK(strcmp(core, detected) == 0, "OpenBLAS's own choice %s was replaced by %s",
                     detected, core);
        ZT_CHECK(getenv("OPENBLAS_CORETYPE") == NULL,
                 "OPENBLAS_CORETYPE=%s is left in the environment", getenv("OPENBLAS_CORETYPE"));
    }
    check_sgemm();
    /* a second backend does not select again */
    zt_backend *again = NULL;
    ZT_CHECK_OK(zt_cpu_backend_create(2, &again));
    ZT_CHECK(strcmp(zt_cpu_blas_core(), core) == 0, "a second backend changed the kernels");
    if (again) zt_backend_destroy(again);
    zt_backend_destroy(be);
    return zt_test_finish("test_cpu_blas_kernels");
}
