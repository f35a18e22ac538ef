#include "backend.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

#define ZT_COUNT_SLOT(slot) +1
enum { ZT_N_REQUIRED_OPS = 0 ZT_BACKEND_REQUIRED_OPS(ZT_COUNT_SLOT) };
#undef ZT_COUNT_SLOT
#define ZT_COUNT_SLOT(slot) +1
enum { ZT_N_BACKWARD_OPS = 0 ZT_BACKEND_BACKWARD_OPS(ZT_COUNT_SLOT) };
enum { ZT_N_FO_OPS = 0 ZT_BACKEND_FO_OPS(ZT_COUNT_SLOT) };
enum { ZT_N_HALF_ACTIVATION_OPS = 0 ZT_BACKEND_HALF_ACTIVATION_OPS(ZT_COUNT_SLOT) };
#undef ZT_COUNT_SLOT
/* Every member is a pointer (so there is no padding): `name`, the optional linear_batched,
 * target_logprobs_fold, set_gemm_precision, vouch_indices and describe, the backward, first-order
 * and half-activation groups, and the required slots. A slot added to the table must join
 * ZT_BACKEND_REQUIRED_OPS or a group or be documented optional (and counted here), or this fails.
 */
enum { ZT_N_OPTIONAL_OPS = 5 + ZT_N_BACKWARD_OPS + ZT_N_FO_OPS + ZT_N_HALF_ACTIVATION_OPS };
_Static_assert(sizeof(zt_backend_ops) ==
                   sizeof(const char *) +
                       (ZT_N_REQUIRED_OPS + ZT_N_OPTIONAL_OPS) * sizeof(void (*)(void)),
               "zt_backend_ops has a slot that ZT_BACKEND_REQUIRED_OPS does not list");

zt_status zt_backend_check_ops(const zt_backend_ops *ops) {
    if (ops == NULL) return zt_fail(ZT_ERR_INTERNAL, "backend: no op table");
    if (ops->name == NULL) return zt_fail(ZT_ERR_INTERNAL, "backend op table slot 'name' is NULL");
    /* Every NULL slot is named, so a new backend learns all it misses at once. */
    char missing[512] = "";
    size_t length = 0;
    int n_missing = 0;
#define ZT_NOTE_IF_NULL(slot)                                                                      \
    if (ops->slot == NULL) {                                                                       \
        int written = snprintf(missing + length, sizeof missing - length, "%s'%s'",                \
                               n_missing > 0 ? ", " : "", #slot);                                  \
        if (written > 0) length += (size_t)written;                                                \
        if (length >= sizeof missing) length = sizeof missing - 1;                                 \
        n_missing++;                                                                               \
    }
    ZT_BACKEND_REQUIRED_OPS(ZT_NOTE_IF_NULL)
    if (n_missing > 0)
        return zt_fail(ZT_ERR_INTERNAL, "backend '%s': op table %s %s %s NULL", ops->name,
                       n_missing == 1 ? "slot" : "slots", missing, n_missing == 1 ? "is" : "are");
    int n_backward = 0;
#define ZT_COUNT_IF_SET(slot) n_backward += ops->slot != NULL;
    ZT_BACKEND_BACKWARD_OPS(ZT_COUNT_IF_SET)
#undef ZT_COUNT_IF_SET
    if (n_backward != 0 && n_backward != ZT_N_BACKWARD_OPS) {
        ZT_BACKEND_BACKWARD_OPS(ZT_NOTE_IF_NULL)
        return zt_fail(ZT_ERR_INTERNAL,
                       "backend '%s': the backward ops are all set or all NULL, but %s %s NULL",
                       ops->name, missing, n_missing == 1 ? "is" : "are");
    }
    int n_half = 0;
#define ZT_COUNT_IF_SET(slot) n_half += ops->slot != NULL;
    ZT_BACKEND_HALF_ACTIVATION_OPS(ZT_COUNT_IF_SET)
#undef ZT_COUNT_IF_SET
    if (n_half != 0 && n_half != ZT_N_HALF_ACTIVATION_OPS) {
        ZT_BACKEND_HALF_ACTIVATION_OPS(ZT_NOTE_IF_NULL)
        return zt_fail(ZT_ERR_INTERNAL,
                       "backend '%s': the half-activation ops are all set or all NULL, but %s %s "
                       "NULL",
                       ops->name, missing, n_missing == 1 ? "is" : "are");
    }
    int n_fo = 0;
#define ZT_COUNT_IF_SET(slot) n_fo += ops->slot != NULL;
    ZT_BACKEND_FO_OPS(ZT_COUNT_IF_SET)
#undef ZT_COUNT_IF_SET
    if (n_fo == 0 || n_fo == ZT_N_FO_OPS) return ZT_OK;
    ZT_BACKEND_FO_OPS(ZT_NOTE_IF_NULL)
#undef ZT_NOTE_IF_NULL
    return zt_fail(ZT_ERR_INTERNAL,
                   "backend '%s': the first-order update ops are both set or both NULL, but %s "
                   "is NULL",
                   ops->name, missing);
}

int zt_backend_has_half_activations(const zt_backend *be) {
    return be->ops->round_half != NULL;
}

zt_status zt_backend_require_fo_update(const zt_backend *be, const char *what) {
    if (be->ops->fo_update != NULL) return ZT_OK;
    return zt_fail(ZT_ERR_UNAVAILABLE,
                   "%s needs first-order updates, which the %s backend does not have yet", what,
                   be->ops->name);
}

int zt_fo_state_rows(const zt_fo_update *u) {
    switch (u->rule) {
    case ZT_FO_SGD:
        return u->momentum != 0.0f;
    case ZT_FO_ADAM:
        return 2;
    case ZT_FO_ADAMM:
        return 3;
    default:
        return 0;
    }
}

zt_status zt_backend_require_backward(const zt_backend *be, const char *what) {
    if (be->ops->linear_backward != NULL) return ZT_OK;
    return zt_fail(ZT_ERR_UNAVAILABLE, "%s needs backprop, which the %s backend does not have yet",
                   what, be->ops->name);
}

void zt_backend_destroy(zt_backend *be) {
    if (be) be->ops->destroy(be);
}

zt_status zt_backend_set_gemm_precision(zt_backend *be, zt_gemm_precision precision) {
    if ((unsigned)precision > ZT_GEMM_HALF)
        return zt_fail(ZT_ERR_INVALID_ARG, "gemm precision %d: unknown", (int)precision);
    if (be->ops->set_gemm_precision) {
        ZT_TRY(be->ops->set_gemm_precision(be, precision));
    } else if (precision != ZT_GEMM_F32) {
        return zt_fail(ZT_ERR_UNAVAILABLE,
                       "--gemm %s: the %s backend computes every GEMM in f32 (use --gemm f32, or "
                       "--device cuda for tensor-core modes)",
                       zt_gemm_precision_name(precision), be->ops->name);
    }
    be->gemm = precision;
    return ZT_OK;
}

const char *zt_gemm_precision_name(zt_gemm_precision precision) {
    switch (precision) {
    case ZT_GEMM_F32:
        return "f32";
    case ZT_GEMM_TF32:
        return "tf32";
    case ZT_GEMM_HALF:
        return "half";
    }
    return "unknown";
}

zt_status zt_gemm_precision_parse(const char *text, const char *option, zt_gemm_precision *out) {
    static const zt_gemm_precision all[] = {ZT_GEMM_F32, ZT_GEMM_TF32, ZT_GEMM_HALF};
    for (size_t i = 0; text && i < sizeof all / sizeof all[0]; i++)
        if (strcmp(text, zt_gemm_precision_name(all[i])) == 0) {
            *out = all[i];
            return ZT_OK;
        }
    return zt_fail(ZT_ERR_INVALID_ARG, "%s %s: expected auto, f32, tf32 or half", option,
                   text ? text : "(missing)");
}

zt_dtype zt_backend_stage_dtype(const zt_backend *be, zt_dtype stored) {
    if (be->gemm == ZT_GEMM_HALF && (stored == ZT_F16 || stored == ZT_BF16)) return stored;
    return ZT_F32;
}

zt_status zt_backend_set_batch_invariant(zt_backend *be, int on) {
    if (on && !be->offers_batch_invariance)
        return zt_fail(ZT_ERR_UNAVAILABLE,
                       "backend '%s' has no batch-invariant GEMMs (what data-parallel runs and "
                       "--grad-accum need)",
                       be->ops->name);
    be->batch_invariant = on != 0;
    return ZT_OK;
}

zt_status zt_backend_open(const char *device, int n_threads, const char *gemm, zt_backend **out) {
    zt_gemm_precision precision = ZT_GEMM_F32;
    int automatic = gemm == NULL || strcmp(gemm, "auto") == 0;
    if (!automatic) ZT_TRY(zt_gemm_precision_parse(gemm, "--gemm", &precision));
    ZT_TRY(zt_backend_create(device, n_threads, out));
    if (automatic)
        precision = strncmp((*out)->ops->name, "cuda", 4) == 0 ? ZT_GEMM_HALF : ZT_GEMM_F32;
    zt_status s = zt_backend_set_gemm_precision(*out, precision);
    if (s != ZT_OK) {
        zt_backend_destroy(*out);
        *out = NULL;
    }
    return s;
}

zt_status zt_pending_apply_alone(zt_backend *be, zt_pending_update *pu, int id, void *theta,
                                 zt_dtype dtype, size_t n_elems) {
    if (!zt_pending_waits(pu, id)) return ZT_OK;
    const zt_update u = zt_pending_update_of(pu, id);
    ZT_TRY(be->ops->update(be, theta, dtype, (uint32_t)id, n_elems, pu->state[id], &u));
    pu->waiting[id] = 0;
    return ZT_OK;
}
