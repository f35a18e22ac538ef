/* The host executor's own semantics: block and warp barriers, shared memory (static and dynamic),
 * shuffles with widths, votes, atomics across concurrently running blocks, and the launch
 * failures it must report (a barrier some threads skip, threads at different barriers, a host
 * pointer passed to a kernel, too much shared memory, an access past the end of device memory, a
 * bad configuration, a copy in the wrong direction), and that a launch after a failure runs
 * normally. */
#include "cudaemu.h"

#include <stdio.h>
#include <string.h>

#include "zt_test.h"

static bool launch_failed(const char *expected_text) {
    cudaError_t err = cudaGetLastError();
    const char *text = cudaGetErrorString(err);
    bool ok = err != cudaSuccess && strstr(text, expected_text) != nullptr;
    printf("  expected failure: %s\n", text);
    return ok;
}

// ---- kernels ----

/* Reverses each block's slice through static shared memory; a 2-D block of 8 x 5 threads, so
 * the linear index and the last, partial warp (40 = 32 + 8) both matter. */
static __global__ void reverse_k(int *out, const int *in) {
    __shared__ int tile[40];
    const int t = threadIdx.x + threadIdx.y * blockDim.x;
    const int n = blockDim.x * blockDim.y;
    tile[t] = in[blockIdx.x * n + t];
    __syncthreads();
    out[blockIdx.x * n + t] = tile[n - 1 - t];
}

/* Each thread writes its index into dynamic shared memory, then reads its right neighbour's. */
static __global__ void neighbour_k(float *out, int n) {
    float *buffer = zt_dynamic_shared<float>();
    buffer[threadIdx.x] = (float)threadIdx.x;
    __syncthreads();
    out[blockIdx.x * n + threadIdx.x] = buffer[(threadIdx.x + 1) % n];
}

/* neighbour_k with static shared memory beside the dynamic (2,176 bytes, as attention.cu's general
 * kernel declares), so that the limits must count both. */
static __global__ void static_neighbour_k(float *out, int n) {
    __shared__ float fixed[544];
    float *buffer = zt_dynamic_shared<float>();
    fixed[threadIdx.x] = 1.0f;
    buffer[threadIdx.x] = (float)threadIdx.x;
    __syncthreads();
    out[blockIdx.x * n + threadIdx.x] =
        buffer[(threadIdx.x + 1) % n] * fixed[(threadIdx.x + 1) % n];
}

/* Every shuffle flavour; results per thread: [xor 1, xor 16, down 3 (width 8), up 2 (width 8),
 * idx 5 (width 16), ballot(odd), all(lane < 64), any(lane == 7), warp sum]. */
static __global__ void shuffle_k(int *out) {
    const int lane = threadIdx.x % 32;
    int *mine = out + threadIdx.x * 9;
    mine[0] = __shfl_xor_sync(0xffffffffu, lane, 1);
    mine[1] = __shfl_xor_sync(0xffffffffu, lane, 16);
    mine[2] = __shfl_down_sync(0xffffffffu, lane, 3, 8);
    mine[3] = __shfl_up_sync(0xffffffffu, lane, 2, 8);
    mine[4] = __shfl_sync(0xffffffffu, lane, 5, 16);
    mine[5] = (int)__ballot_sync(0xffffffffu, lane & 1);
    mine[6] = __all_sync(0xffffffffu, lane < 64);
    mine[7] = __any_sync(0xffffffffu, lane == 7);
    float sum = (float)lane;
    for (int offset = 16; offset > 0; offset /= 2)
        sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    mine[8] = (int)sum;
}

static __global__ void atomics_k(int *count, float *total, int *smallest) {
    atomicAdd(count, 1);
    atomicAdd(total, 0.5f);
    atomicMin(smallest, (int)(blockIdx.x * blockDim.x + threadIdx.x) - 1000);
}

/* Broken on purpose: half the threads leave before the barrier. */
static __global__ void divergent_barrier_k(int *out) {
    if (threadIdx.x % 2) return;
    __syncthreads();
    out[threadIdx.x] = 1;
}

/* Broken on purpose: the two halves of the block wait at different barriers. */
static __global__ void split_barrier_k(int *out) {
    if (threadIdx.x < 16) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1;
}

/* Broken on purpose: lane 31 leaves, the others shuffle with a full mask. */
static __global__ void exited_lane_k(int *out) {
    if (threadIdx.x == 31) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 1);
}

static __global__ void touch_k(int *out) {
    out[threadIdx.x] = (int)threadIdx.x;
}

/* Broken on purpose: writes n elements past the end of out. */
static __global__ void overrun_k(int *out, int n) {
    out[threadIdx.x + n] = 1;
}

// ---- checks ----

static void *device_alloc(size_t n_bytes) {
    void *p = nullptr;
    ZT_CHECK(cudaMalloc(&p, n_bytes) == cudaSuccess, "cudaMalloc %zu", n_bytes);
    return p;
}

static void check_reverse() {
    const int n_blocks = 3, n = 40;
    int host_in[n_blocks * n], host_out[n_blocks * n];
    for (int i = 0; i < n_blocks * n; i++)
        host_in[i] = i * 7;
    int *in = static_cast<int *>(device_alloc(sizeof host_in));
    int *out = static_cast<int *>(device_alloc(sizeof host_out));
    cudaMemcpy(in, host_in, sizeof host_in, cudaMemcpyHostToDevice);
    ZT_LAUNCH_KERNEL(reverse_k, n_blocks, dim3(8, 5), 0, nullptr, out, in);
    ZT_CHECK(cudaGetLastError() == cudaSuccess, "reverse_k launch");
    cudaMemcpy(host_out, out, sizeof host_out, cudaMemcpyDeviceToHost);
    int wrong = 0;
    for (int b = 0; b < n_blocks; b++)
        for (int t = 0; t < n; t++)
            wrong += host_out[b * n + t] != host_in[b * n + n - 1 - t];
    ZT_CHECK(wrong == 0, "reverse_k: %d wrong", wrong);
    cudaFree(in);
    cudaFree(out);
}

static void check_dynamic_shared() {
    const int n_blocks = 5, n = 96;
    float host[n_blocks * n];
    float *out = static_cast<float *>(device_alloc(sizeof host));
    ZT_LAUNCH_KERNEL(neighbour_k, n_blocks, n, n * sizeof(float), nullptr, out, n);
    ZT_CHECK(cudaGetLastError() == cudaSuccess, "neighbour_k launch");
    cudaMemcpy(host, out, sizeof host, cudaMemcpyDeviceToHost);
    int wrong = 0;
    for (int b = 0; b < n_blocks; b++)
        for (int t = 0; t < n; t++)
            wrong += host[b * n + t] != (float)((t + 1) % n);
    ZT_CHECK(wrong == 0, "neighbour_k: %d wrong", wrong);
    cudaFree(out);
}

static void check_shuffles() {
    const int n = 64;
    int host[n * 9];
    int *out = static_cast<int *>(device_alloc(sizeof host));
    ZT_LAUNCH_KERNEL(shuffle_k, 1, n, 0, nullptr, out);
    ZT_CHECK(cudaGetLastError() == cudaSuccess, "shuffle_k launch");
    cudaMemcpy(host, out, sizeof host, cudaMemcpyDeviceToHost);
    int wrong = 0;
    for (int t = 0; t < n; t++) {
        const int lane = t % 32, *r = host + t * 9;
        const int expected[9] = {
            lane ^ 1,
            lane ^ 16,
            lane % 8 + 3 < 8 ? lane + 3 : lane,
            lane % 8 < 2 ? lane : lane - 2,
            (lane & ~15) + 5,
            (int)0xaaaaaaaau,
            1,
            1,
            31 * 32 / 2,
        };
        for (int k = 0; k < 9; k++) {
            if (r[k] == expected[k]) continue;
            if (wrong++ < 5)
                fprintf(stderr, "    thread %d result %d: %d, want %d\n", t, k, r[k], expected[k]);
        }
    }
    ZT_CHECK(wrong == 0, "shuffle_k: %d wrong", wrong);
    cudaFree(out);
}

static void check_atomics() {
    struct {
        int count;
        float total;
        int smallest;
    } host = {0, 0.0f, 0};
    int *count = static_cast<int *>(device_alloc(sizeof(int)));
    float *total = static_cast<float *>(device_alloc(sizeof(float)));
    int *smallest = static_cast<int *>(device_alloc(sizeof(int)));
    cudaMemcpy(count, &host.count, sizeof(int), cudaMemcpyHostToDevice);
    cudaMemcpy(total, &host.total, sizeof(float), cudaMemcpyHostToDevice);
    cudaMemcpy(smallest, &host.smallest, sizeof(int), cudaMemcpyHostToDevice);
    ZT_LAUNCH_KERNEL(atomics_k, 64, 128, 0, nullptr, count, total, smallest);
    ZT_CHECK(cudaGetLastError() == cudaSuccess, "atomics_k launch");
    cudaMemcpy(&host.count, count, sizeof(int), cudaMemcpyDeviceToHost);
    cudaMemcpy(&host.total, total, sizeof(float), cudaMemcpyDeviceToHost);
    cudaMemcpy(&host.smallest, smallest, sizeof(int), cudaMemcpyDeviceToHost);
    ZT_CHECK(host.count == 64 * 128, "atomicAdd int: %d", host.count);
    ZT_CHECK(host.total == 0.5f * 64 * 128, "atomicAdd float: %g", host.total);
    ZT_CHECK(host.smallest == -1000, "atomicMin: %d", host.smallest);
    cudaFree(count);
    cudaFree(total);
    cudaFree(smallest);
}

static void check_failures() {
    int *out = static_cast<int *>(device_alloc(64 * sizeof(int)));

    ZT_LAUNCH_KERNEL(divergent_barrier_k, 2, 64, 0, nullptr, out);
    ZT_CHECK(launch_failed("32 exited"), "a barrier half the block skips must fail the launch");

    ZT_LAUNCH_KERNEL(split_barrier_k, 1, 32, 0, nullptr, out);
    ZT_CHECK(launch_failed("__syncthreads at"), "threads at different barriers must fail");

    ZT_LAUNCH_KERNEL(exited_lane_k, 1, 32, 0, nullptr, out);
    ZT_CHECK(launch_failed("exited lanes 0x80000000"), "a shuffle naming an exited lane must fail");

    int host_array[64];
    ZT_LAUNCH_KERNEL(touch_k, 1, 64, 0, nullptr, host_array);
    ZT_CHECK(launch_failed("not device memory"), "a host pointer argument must fail the launch");

    ZT_LAUNCH_KERNEL(neighbour_k, 1, 64, 64 * 1024, nullptr, reinterpret_cast<float *>(out), 64);
    ZT_CHECK(launch_failed("cudaFuncSetAttribute"), "64 KiB of shared memory needs an opt-in");
    ZT_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void *>(neighbour_k),
                                  cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  64 * 1024) == cudaSuccess,
             "opt-in to 64 KiB");
    ZT_LAUNCH_KERNEL(neighbour_k, 1, 64, 64 * 1024, nullptr, reinterpret_cast<float *>(out), 64);
    ZT_CHECK(cudaGetLastError() == cudaSuccess, "64 KiB after the opt-in");

    /* The runtime's rules with static shared memory: 48 KiB less the static part without an
     * opt-in, and the opt-in limit less the static part at most. */
    const void *both = reinterpret_cast<const void *>(static_neighbour_k);
    const size_t fixed = 2176;
    cudaemu::declare_static_shared(both, fixed);
    cudaFuncAttributes attr;
    ZT_CHECK(cudaFuncGetAttributes(&attr, both) == cudaSuccess && attr.sharedSizeBytes == fixed &&
                 attr.maxDynamicSharedSizeBytes == (int)(48 * 1024 - fixed),
             "attributes: %zu static, %d dynamic", attr.sharedSizeBytes,
             attr.maxDynamicSharedSizeBytes);
    ZT_LAUNCH_KERNEL(static_neighbour_k, 1, 64, 47 * 1024, nullptr, reinterpret_cast<float *>(out),
                     64);
    ZT_CHECK(launch_failed("2176 static"), "47 KiB beside 2,176 static bytes needs an opt-in");
    int optin = 0;
    ZT_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0) ==
                 cudaSuccess,
             "the opt-in limit");
    ZT_CHECK(cudaFuncSetAttribute(both, cudaFuncAttributeMaxDynamicSharedMemorySize, optin) ==
                 cudaErrorInvalidValue,
             "an opt-in to the whole limit leaves no room for the static part");
    (void)cudaGetLastError();
    ZT_CHECK(cudaFuncSetAttribute(both, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  optin - (int)fixed) == cudaSuccess,
             "opt-in to the limit less the static part");
    ZT_CHECK(cudaFuncGetAttributes(&attr, both) == cudaSuccess &&
                 attr.maxDynamicSharedSizeBytes == optin - (int)fixed,
             "attributes after the opt-in: %d dynamic", attr.maxDynamicSharedSizeBytes);
    ZT_LAUNCH_KERNEL(static_neighbour_k, 1, 64, 47 * 1024, nullptr, reinterpret_cast<float *>(out),
                     64);
    ZT_CHECK(cudaGetLastError() == cudaSuccess, "47 KiB beside the static part after the opt-in");

    ZT_LAUNCH_KERNEL(overrun_k, 2, 64, 0, nullptr, out, 64);
    ZT_CHECK(launch_failed("0 bytes past the end of a 256-byte device block"),
             "a write past the end of device memory must fail the launch");

    ZT_LAUNCH_KERNEL(touch_k, 1, 2048, 0, nullptr, out);
    ZT_CHECK(launch_failed("invalid configuration"), "2048 threads per block must fail");

    ZT_CHECK(cudaMemcpy(out, host_array, sizeof host_array, cudaMemcpyDeviceToHost) ==
                 cudaErrorInvalidValue,
             "a device-to-host copy into device memory must fail");
    (void)cudaGetLastError();
    ZT_CHECK(cudaMemcpy(out, host_array, 65 * sizeof(int), cudaMemcpyHostToDevice) ==
                 cudaErrorInvalidValue,
             "a copy overrunning its device block must fail");
    (void)cudaGetLastError();

    /* After all that, fibers abandoned mid-kernel were reset: a plain launch works. */
    ZT_LAUNCH_KERNEL(touch_k, 3, 64, 0, nullptr, out);
    ZT_CHECK(cudaGetLastError() == cudaSuccess, "a launch after failures");
    int host[64];
    cudaMemcpy(host, out, sizeof host, cudaMemcpyDeviceToHost);
    ZT_CHECK(host[63] == 63 && host[0] == 0, "touch_k after failures: %d %d", host[0], host[63]);
    cudaFree(out);
}

int main() {
    check_reverse();
    check_dynamic_shared();
    check_shuffles();
    check_atomics();
    check_failures();
    check_reverse(); /* still sound after the failures */
    return zt_test_finish("test_cudaemu_core");
}
