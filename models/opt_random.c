/* An OPT model with freshly initialised weights, built in memory: benchmarks and tests get a
 * model of any size without a checkpoint on disk (a 125m f16 checkpoint is 250 MB).
 *
 * The initialisation is OPT's _init_weights with init_std = 0.02: matrices (linear weights,
 * token and position embeddings, projections) ~ N(0, 0.02^2), the padding row of embed_tokens
 * zeroed (nn.Embedding's padding_idx), layer-norm gammas 1, biases and betas 0. The normals come
 * from the project's Philox addressing (kernels/common/perturb_rng.h) with the model seed as the
 * step seed, so element j of tensor T is a pure function of (seed, T, j): the same seed gives
 * the same model on any machine and backend. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/perturb_rng.h"
#include "core/status.h"
#include "opt_internal.h"

enum {
    RANDOM_WEIGHT_ALIGN = 64,          /* as the loader: every tensor starts on a cache line */
    RANDOM_CHUNK_ELEMS = 1 << 20,      /* host staging per upload, a multiple of 4 (one block) */
};

static const float OPT_INIT_STD = 0.02f;

typedef enum init_kind { INIT_NORMAL, INIT_ONES, INIT_ZEROS } init_kind;

static int ends_with(const char *text, const char *suffix) {
    size_t n = strlen(text), m = strlen(suffix);
    return n >= m && strcmp(text + n - m, suffix) == 0;
}

/* OPT's rule by tensor: a 2-D tensor is a matrix; a 1-D ".weight" is a layer-norm gamma; every
 * other 1-D tensor is a bias or a beta. */
static init_kind tensor_init_kind(const zt_tensor_info *t) {
    if (t->n_dims == 2) return INIT_NORMAL;
    return ends_with(t->name, ".weight") ? INIT_ONES : INIT_ZEROS;
}

static zt_status check_config(const zt_opt_config *c) {
    const struct {
        const char *key;
        int value;
    } sizes[] = {
        {"vocab_size", c->vocab_size},
        {"hidden_size", c->hidden_size},
        {"num_hidden_layers", c->num_hidden_layers},
        {"num_attention_heads", c->num_attention_heads},
        {"ffn_dim", c->ffn_dim},
        {"max_position_embeddings", c->max_position_embeddings},
        {"word_embed_proj_dim", c->word_embed_proj_dim},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].value <= 0)
            return zt_fail(ZT_ERR_INVALID_ARG, "random model: %s must be positive, got %d",
                           sizes[i].key, sizes[i].value);
    if (c->hidden_size % c->num_attention_heads != 0)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "random model: hidden_size %d is not divisible by num_attention_heads %d",
                       c->hidden_size, c->num_attention_heads);
    if (c->pad_token_id < 0 || c->pad_token_id >= c->vocab_size)
        return zt_fail(ZT_ERR_INVALID_ARG, "random model: pad_token_id %d is outside [0, %d)",
                       c->pad_token_id, c->vocab_size);
    return ZT_OK;
}

static void store_f32(void *dst, zt_dtype dtype, size_t i, float value) {
    if (dtype == ZT_F32) ((float *)dst)[i] = value;
    else if (dtype == ZT_F16) ((uint16_t *)dst)[i] = zt_f32_to_f16(value);
    else ((uint16_t *)dst)[i] = zt_f32_to_bf16(value);
}

/* Elements [first, first + n) of tensor `id`, in f32 before the cast to storage. first is a
 * multiple of 4, so whole Philox blocks line up with the chunk. Elements of row zero_row (the
 * embedding's padding row; -1 for none) are zeroed. */
static void fill_chunk(void *dst, zt_dtype dtype, const zt_tensor_info *t, uint32_t id,
                       uint64_t seed, size_t first, size_t n, int64_t zero_row) {
    init_kind kind = tensor_init_kind(t);
    if (kind != INIT_NORMAL) {
        float value = kind == INIT_ONES ? 1.0f : 0.0f;
        for (size_t i = 0; i < n; i++) store_f32(dst, dtype, i, value);
        return;
    }
    uint64_t key = zt_tensor_key(seed, id);
    for (size_t i = 0; i < n; i += 4) {
        zt_f32x4 z = zt_z_gauss_block4(key, (first + i) / 4);
        for (unsigned lane = 0; lane < 4 && i + lane < n; lane++)
            store_f32(dst, dtype, i + lane, OPT_INIT_STD * zt_f32x4_lane(z, lane));
    }
    if (zero_row < 0) return;
    /* The padding row's slice of this chunk, if any. */
    size_t cols = (size_t)t->shape[1];
    size_t row_begin = (size_t)zero_row * cols, row_end = row_begin + cols;
    size_t begin = row_begin > first ? row_begin : first;
    size_t end = row_end < first + n ? row_end : first + n;
    for (size_t j = begin; j < end; j++) store_f32(dst, dtype, j - first, 0.0f);
}

static zt_status upload_tensor(zt_model *m, int id, uint64_t seed, void *host_chunk) {
    const zt_tensor_info *t = &m->tensors[id];
    size_t elem_size = zt_dtype_size(t->dtype);
    int64_t zero_row = id == m->embed_tokens ? m->cfg.pad_token_id : -1;
    for (size_t first = 0; first < t->n_elems; first += RANDOM_CHUNK_ELEMS) {
        size_t left = t->n_elems - first;
        size_t n = left < RANDOM_CHUNK_ELEMS ? left : RANDOM_CHUNK_ELEMS;
        fill_chunk(host_chunk, t->dtype, t, (uint32_t)id, seed, first, n, zero_row);
        void *dst = (char *)m->weights + t->offset + first * elem_size;
        zt_status s = m->be->ops->upload(m->be, dst, host_chunk, n * elem_size);
        if (s != ZT_OK) return zt_fail_context(s, "random model, tensor %s: ", t->name);
    }
    return ZT_OK;
}

static const char *torch_dtype_name(zt_dtype dtype) {
    return dtype == ZT_F32 ? "float32" : dtype == ZT_F16 ? "float16" : "bfloat16";
}

zt_status zt_model_create_random(const zt_opt_config *cfg, zt_dtype dtype, uint64_t seed,
                                 zt_backend *be, zt_model **out) {
    *out = NULL;
    if (dtype != ZT_F32 && dtype != ZT_F16 && dtype != ZT_BF16)
        return zt_fail(ZT_ERR_INVALID_ARG, "random model: unknown dtype %d", (int)dtype);
    ZT_TRY(check_config(cfg));
    zt_model *m = calloc(1, sizeof *m);
    if (!m) return zt_fail(ZT_ERR_NOMEM, "allocating the model");
    m->be = be;
    m->cfg = *cfg;
    snprintf(m->cfg.torch_dtype, sizeof m->cfg.torch_dtype, "%s", torch_dtype_name(dtype));
    zt_status s = zt_opt_build_table(m);

    size_t offset = 0;
    for (int i = 0; s == ZT_OK && i < m->n_tensors; i++) {
        zt_tensor_info *t = &m->tensors[i];
        t->dtype = dtype;
        offset = (offset + RANDOM_WEIGHT_ALIGN - 1) / RANDOM_WEIGHT_ALIGN * RANDOM_WEIGHT_ALIGN;
        t->offset = offset;
        offset += t->n_elems * zt_dtype_size(dtype);
    }
    m->weights_bytes = offset;
    if (s == ZT_OK) s = be->ops->alloc(be, m->weights_bytes, ZT_MEM_WEIGHTS, &m->weights);

    /* Untracked host staging: one bounded chunk, not parameter-sized. */
    void *host_chunk = s == ZT_OK ? malloc((size_t)RANDOM_CHUNK_ELEMS * sizeof(float)) : NULL;
    if (s == ZT_OK && !host_chunk)
        s = zt_fail(ZT_ERR_NOMEM, "random model: allocating the upload chunk");
    for (int i = 0; s == ZT_OK && i < m->n_tensors; i++) s = upload_tensor(m, i, seed, host_chunk);
    free(host_chunk);
    if (s != ZT_OK) {
        zt_model_free(m);
        return s;
    }
    *out = m;
    return ZT_OK;
}
