/* The head's grouped staging on the CUDA backend's own kernels run by the host executor
 * (tests/train/head_group_bits.h): a K-variant forward gives every variant the bits K forwards of
 * one variant each give (its perturb_variants kernel against its perturb kernel), on opt-pre,
 * opt-post (project_out in the head input) and opt-pre-bf16 under --gemm half. */
#include <stdio.h>

#include "backend.h"
#include "cudaemu_backend.h"
#include "zt_test.h"

#include "../train/head_group_bits.h"

int main(void) {
    zt_backend *emu = NULL;
    ZT_REQUIRE_OK(zt_cudaemu_backend_create(0, &emu));
    head_group_check_fixture(emu, "opt-pre", ZT_GEMM_F32);
    head_group_check_fixture(emu, "opt-post", ZT_GEMM_F32);
    head_group_check_fixture(emu, "opt-pre-bf16", ZT_GEMM_HALF);
    zt_backend_destroy(emu);
    return zt_test_finish("test_cuda_head_group_emu");
}
