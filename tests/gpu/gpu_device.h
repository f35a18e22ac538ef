/* What every gpu-suite test does first: whether this machine can run it. Only a machine without
 * a GPU skips (no driver installed, or the driver sees no device); a driver older than the
 * runtime, or any other error, fails, so a broken setup cannot read like a pass. */
#ifndef ZT_TESTS_GPU_DEVICE_H
#define ZT_TESTS_GPU_DEVICE_H

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zt_test.h"

/* Prints the driver and runtime versions; 0 with *n_devices set when the test can run, else the
 * exit status to return (ZT_SKIP_EXIT, or 1 on an error). */
static inline int zt_gpu_test_devices(const char *test, int *n_devices) {
    int driver_version = 0, runtime_version = 0;
    cudaDriverGetVersion(&driver_version);
    cudaRuntimeGetVersion(&runtime_version);
    printf("%s: CUDA driver API %d.%d, runtime %d.%d\n", test, driver_version / 1000,
           driver_version % 1000 / 10, runtime_version / 1000, runtime_version % 1000 / 10);
    *n_devices = 0;
    const cudaError_t err = cudaGetDeviceCount(n_devices);
    if (driver_version == 0 || err == cudaErrorNoDevice ||
        (err == cudaSuccess && *n_devices == 0)) {
        printf("%s: skipped: no CUDA device (%s)\n", test,
               driver_version == 0 ? "no driver installed" : "the driver sees none");
        return ZT_SKIP_EXIT;
    }
    if (err != cudaSuccess) {
        printf("%s: FAILED: cudaGetDeviceCount: %s (%s); the build needs a driver that supports "
               "CUDA %d.%d\n",
               test, cudaGetErrorName(err), cudaGetErrorString(err), runtime_version / 1000,
               runtime_version % 1000 / 10);
        return 1;
    }
    return 0;
}

/* The options of a test that takes only --device N; 0, or 2 after printing the usage. */
static inline int zt_gpu_test_device_option(int argc, char **argv, int *device) {
    *device = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
            *device = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--device N]\n", argv[0]);
            return 2;
        }
    }
    return 0;
}

#endif
