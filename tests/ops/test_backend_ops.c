/* zt_backend_check_ops (kernels/backend.c), which zt_backend_create runs on every backend it
 * makes: the CPU backend's table passes; a copy of it with any one required slot NULL fails with
 * ZT_ERR_INTERNAL and a message naming that slot; the optional slot may be NULL.
 */
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "zt_test.h"

/* `incomplete` has `slot` NULL: the check must fail, naming the slot and the backend. */
static void check_missing_slot(const zt_backend_ops *incomplete, const char *slot) {
    char expected[160];
    snprintf(expected, sizeof expected, "backend '%s': op table slot '%s' is NULL",
             incomplete->name, slot);
    zt_status status = zt_backend_check_ops(incomplete);
    ZT_CHECK(status == ZT_ERR_INTERNAL, "slot %s NULL -> %s", slot, zt_status_name(status));
    ZT_CHECK(strcmp(zt_last_error(), expected) == 0, "slot %s NULL: message \"%s\", want \"%s\"",
             slot, zt_last_error(), expected);
}

int main(void) {
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_backend_create("cpu", 1, &be));
    const zt_backend_ops *real = be->ops;
    ZT_CHECK_OK(zt_backend_check_ops(real));

    /* Each required slot in turn, on a fresh copy of the real table. */
    int n_required = 0;
#define ZT_TEST_NULL_SLOT(slot)                                                                    \
    {                                                                                              \
        zt_backend_ops copy = *real;                                                               \
        ZT_CHECK(copy.slot != NULL, "the cpu table leaves " #slot " NULL");                        \
        copy.slot = NULL;                                                                          \
        check_missing_slot(&copy, #slot);                                                          \
        n_required++;                                                                              \
    }
    ZT_BACKEND_REQUIRED_OPS(ZT_TEST_NULL_SLOT)
#undef ZT_TEST_NULL_SLOT
    ZT_CHECK(n_required == 21, "%d required slots, expected 21", n_required);

    /* Two missing slots are both named. */
    zt_backend_ops two_missing = *real;
    two_missing.linear = NULL;
    two_missing.update = NULL;
    ZT_CHECK(zt_backend_check_ops(&two_missing) == ZT_ERR_INTERNAL, "linear and update NULL");
    ZT_CHECK(strcmp(zt_last_error(), "backend 'cpu': op table slots 'linear', 'update' are NULL") ==
                 0,
             "message \"%s\"", zt_last_error());

    /* A table without a name cannot be named in the message: the slot is. */
    zt_backend_ops unnamed = *real;
    unnamed.name = NULL;
    ZT_CHECK(zt_backend_check_ops(&unnamed) == ZT_ERR_INTERNAL, "name NULL");
    ZT_CHECK(strcmp(zt_last_error(), "backend op table slot 'name' is NULL") == 0, "message \"%s\"",
             zt_last_error());

    /* set_gemm_precision is optional (NULL = f32 only). */
    zt_backend_ops f32_only = *real;
    f32_only.set_gemm_precision = NULL;
    ZT_CHECK_OK(zt_backend_check_ops(&f32_only));

    /* The backward group: the CPU has it whole; all NULL is a backend without backprop (which
     * zt_backend_require_backward names); one NULL is refused, naming it. */
    ZT_CHECK_OK(zt_backend_require_backward(be, "grad"));
    zt_backend_ops no_backward = *real;
    int n_backward = 0;
#define ZT_TEST_CLEAR_SLOT(slot)                                                                   \
    ZT_CHECK(no_backward.slot != NULL, "the cpu table leaves " #slot " NULL");                     \
    no_backward.slot = NULL;                                                                       \
    n_backward++;
    ZT_BACKEND_BACKWARD_OPS(ZT_TEST_CLEAR_SLOT)
#undef ZT_TEST_CLEAR_SLOT
    ZT_CHECK(n_backward == 5, "%d backward slots, expected 5", n_backward);
    ZT_CHECK_OK(zt_backend_check_ops(&no_backward));
    zt_backend without = *be;
    without.ops = &no_backward;
    ZT_CHECK(zt_backend_require_backward(&without, "grad") == ZT_ERR_UNAVAILABLE,
             "no backward ops: not refused");
    ZT_CHECK(strcmp(zt_last_error(),
                    "grad needs backprop, which the cpu backend does not have yet") == 0,
             "message \"%s\"", zt_last_error());
    zt_backend_ops one_backward_missing = *real;
    one_backward_missing.attention_backward = NULL;
    ZT_CHECK(zt_backend_check_ops(&one_backward_missing) == ZT_ERR_INTERNAL,
             "attention_backward alone NULL");
    ZT_CHECK(strcmp(zt_last_error(), "backend 'cpu': the backward ops are all set or all NULL, "
                                     "but 'attention_backward' is NULL") == 0,
             "message \"%s\"", zt_last_error());

    /* The half-activation group: the CPU has it whole; all NULL is a backend whose model rounds
     * in every linear (zt_backend_has_half_activations says so); one NULL is refused. */
    ZT_CHECK(zt_backend_has_half_activations(be), "the cpu backend lacks the half activations");
    zt_backend_ops no_half = *real;
    int n_half = 0;
#define ZT_TEST_CLEAR_SLOT(slot)                                                                   \
    ZT_CHECK(no_half.slot != NULL, "the cpu table leaves " #slot " NULL");                         \
    no_half.slot = NULL;                                                                           \
    n_half++;
    ZT_BACKEND_HALF_ACTIVATION_OPS(ZT_TEST_CLEAR_SLOT)
#undef ZT_TEST_CLEAR_SLOT
    ZT_CHECK(n_half == 4, "%d half-activation slots, expected 4", n_half);
    ZT_CHECK_OK(zt_backend_check_ops(&no_half));
    zt_backend without_half = *be;
    without_half.ops = &no_half;
    ZT_CHECK(!zt_backend_has_half_activations(&without_half), "no half ops: reported present");
    zt_backend_ops one_half_missing = *real;
    one_half_missing.layernorm_half = NULL;
    ZT_CHECK(zt_backend_check_ops(&one_half_missing) == ZT_ERR_INTERNAL, "layernorm_half NULL");
    ZT_CHECK(strcmp(zt_last_error(), "backend 'cpu': the half-activation ops are all set or all "
                                     "NULL, but 'layernorm_half' is NULL") == 0,
             "message \"%s\"", zt_last_error());

    /* The first-order update pair: both or neither. */
    ZT_CHECK_OK(zt_backend_require_fo_update(be, "train --optimizer adamw"));
    zt_backend_ops one_fo_missing = *real;
    one_fo_missing.grad_sumsq = NULL;
    ZT_CHECK(zt_backend_check_ops(&one_fo_missing) == ZT_ERR_INTERNAL, "grad_sumsq alone NULL");
    ZT_CHECK(strcmp(zt_last_error(), "backend 'cpu': the first-order update ops are both set or "
                                     "both NULL, but 'grad_sumsq' is NULL") == 0,
             "message \"%s\"", zt_last_error());
    zt_backend_ops no_fo = *real;
    no_fo.grad_sumsq = NULL;
    no_fo.fo_update = NULL;
    ZT_CHECK_OK(zt_backend_check_ops(&no_fo));
    zt_backend without_fo = *be;
    without_fo.ops = &no_fo;
    ZT_CHECK(zt_backend_require_fo_update(&without_fo, "train") == ZT_ERR_UNAVAILABLE,
             "no first-order ops: not refused");

    zt_backend_destroy(be);
    return zt_test_finish("test_backend_ops");
}
