/* Batch invariance of the CUDA kernels on the host executor (tests/model/batch_invariance.h):
 * linear.cu gives each GEMM one block of gemm_row_block rows on all three of its paths (f32
 * operands; an f16/bf16 weight widened chunk by chunk under --gemm f32; activations rounded to
 * half in chunks under --gemm half, which the executor's small chunk size cuts several ways), and
 * the other kernels compute each row alone, so a record's log-probabilities carry the same bits in
 * any batch. The executor's cuBLASLt runs OpenBLAS, whose bits depend on the rows of the call
 * (docs/distributed.md), so an unblocked GEMM would show here. */
#include "batch_invariance.h"
#include "cudaemu_backend.h"

int main(void) {
    static const struct {
        const char *fixture, *gemm, *label;
    } cases[] = {
        {"opt-pre", "f32", "cuda (executor), f32 weights, --gemm f32"},
        {"opt-pre-f16", "f32", "cuda (executor), f16 weights widened, --gemm f32"},
        {"opt-pre-f16", "half", "cuda (executor), f16 weights, --gemm half"},
        {"opt-pre-bf16", "half", "cuda (executor), bf16 weights, --gemm half"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        zt_backend *be = NULL;
        ZT_REQUIRE_OK(zt_cudaemu_backend_create(0, &be));
        zt_gemm_precision precision;
        ZT_REQUIRE_OK(zt_gemm_precision_parse(cases[i].gemm, "--gemm", &precision));
        ZT_REQUIRE_OK(zt_backend_set_gemm_precision(be, precision));
        check_batch_invariance(be, cases[i].fixture, cases[i].label);
        zt_backend_destroy(be);
    }
    return zt_test_finish("test_cuda_batch_invariant_emu");
}
