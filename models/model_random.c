/* A model with freshly initialised weights, built in memory: benchmarks and tests get a model of
 * any size without a checkpoint on disk (a 125m f16 checkpoint is 250 MB).
 *
 * The initialisation is HF's _init_weights with the family's init_std (OPT: 0.02): matrices
 * (linear weights, token and position embeddings, projections) ~ N(0, init_std^2), the padding
 * row of the token table zeroed (nn.Embedding's padding_idx), norm gains 1, biases and shifts 0.
 * The normals come from the project's Philox addressing (kernels/common/perturb_rng.h) with the
 * model seed as the step seed, so element j of tensor T is a pure function of (seed, T, j): the
 * same seed gives the same model on any machine and backend. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/perturb_rng.h"
#include "cpu/rng_blocks.h"
#include "core/alloc.h"
#include "core/status.h"
#include "arch.h"

enum {
    RANDOM_CHUNK_ELEMS = 1 << 20, /* host staging per upload, a multiple of 4 (one block) */
};

typedef enum init_kind { INIT_NORMAL, INIT_ONES, INIT_ZEROS } init_kind;

static int ends_with(const char *text, const char *suffix) {
    size_t n = strlen(text), m = strlen(suffix);
    return n >= m && strcmp(text + n - m, suffix) == 0;
}

/* HF's rule by tensor: a 2-D tensor is a matrix; a 1-D ".weight" is a layer-norm gamma; every
 * other 1-D tensor is a bias or a beta. */
static init_kind tensor_init_kind(const zt_tensor_info *t) {
    if (t->n_dims == 2) return INIT_NORMAL;
    return ends_with(t->name, ".weight") ? INIT_ONES : INIT_ZEROS;
}

/* Elements [first, first + n) of tensor `id`, in f32 before the cast to storage. first is a
 * multiple of 4, so whole Philox blocks line up with the chunk. Elements of row zero_row (the
 * embedding's padding row; -1 for none) are zeroed. */
static void fill_chunk(void *dst, zt_dtype dtype, const zt_tensor_info *t, uint32_t id,
                       uint64_t seed, float std, size_t first, size_t n, int64_t zero_row) {
    init_kind kind = tensor_init_kind(t);
    if (kind != INIT_NORMAL) {
        float value = kind == INIT_ONES ? 1.0f : 0.0f;
        for (size_t i = 0; i < n; i++)
            zt_store_rne(dst, dtype, i, value);
        return;
    }
    uint64_t key = zt_tensor_key(seed, id);
    /* The host's fastest z path (the same bits on every path), a run of blocks at a time. */
    enum { RUN_BLOCKS = 256 };
    float z[4 * RUN_BLOCKS];
    const zt_cpu_rng_path path = zt_cpu_rng_active_path();
    for (size_t i = 0; i < n; i += 4 * RUN_BLOCKS) {
        const size_t count = n - i < 4 * RUN_BLOCKS ? n - i : 4 * RUN_BLOCKS;
        zt_cpu_gauss_blocks(path, key, (first + i) / 4, (count + 3) / 4, z);
        for (size_t k = 0; k < count; k++)
            zt_store_rne(dst, dtype, i + k, std * z[k]);
    }
    if (zero_row < 0) return;
    /* The padding row's slice of this chunk, if any. */
    size_t cols = (size_t)t->shape[1];
    size_t row_begin = (size_t)zero_row * cols, row_end = row_begin + cols;
    size_t begin = row_begin > first ? row_begin : first;
    size_t end = row_end < first + n ? row_end : first + n;
    for (size_t j = begin; j < end; j++)
        zt_store_rne(dst, dtype, j - first, 0.0f);
}

static zt_status upload_tensor(zt_model *m, int id, uint64_t seed, void *host_chunk) {
    const zt_tensor_info *t = &m->tensors[id];
    size_t elem_size = zt_dtype_size(t->dtype);
    int64_t zero_row = id == m->embed_tokens ? m->dims.pad_token_id : -1;
    for (size_t first = 0; first < t->n_elems; first += RANDOM_CHUNK_ELEMS) {
        size_t left = t->n_elems - first;
        size_t n = left < RANDOM_CHUNK_ELEMS ? left : RANDOM_CHUNK_ELEMS;
        fill_chunk(host_chunk, t->dtype, t, (uint32_t)id, seed, m->dims.init_std, first, n,
                   zero_row);
        void *dst = (char *)m->weights + t->offset + first * elem_size;
        zt_status s = m->be->ops->upload(m->be, dst, host_chunk, n * elem_size);
        if (s != ZT_OK) return zt_fail_context(s, "random model, tensor %s: ", t->name);
    }
    return ZT_OK;
}

zt_status zt_model_create_random(const zt_arch *arch, const void *config, zt_dtype dtype,
                                 uint64_t seed, zt_backend *be, zt_model **out) {
    *out = NULL;
    if (dtype != ZT_F32 && dtype != ZT_F16 && dtype != ZT_BF16)
        return zt_fail(ZT_ERR_INVALID_ARG, "random model: unknown dtype %d", (int)dtype);
    zt_model *m = zt_calloc(1, sizeof *m);
    if (!m) return zt_fail(ZT_ERR_NOMEM, "allocating the model");
    m->be = be;
    m->arch = arch;
    zt_status s = arch->build(m, config);

    size_t offset = 0;
    for (int i = 0; s == ZT_OK && i < m->n_tensors; i++) {
        zt_tensor_info *t = &m->tensors[i];
        t->dtype = dtype;
        offset = (offset + ZT_WEIGHT_ALIGN - 1) / ZT_WEIGHT_ALIGN * ZT_WEIGHT_ALIGN;
        t->offset = offset;
        offset += t->n_elems * zt_dtype_size(dtype);
    }
    m->weights_bytes = offset;
    if (s == ZT_OK) s = be->ops->alloc(be, m->weights_bytes, ZT_MEM_WEIGHTS, &m->weights);

    /* Untracked host staging: one bounded chunk, not parameter-sized. */
    void *host_chunk = s == ZT_OK ? zt_malloc((size_t)RANDOM_CHUNK_ELEMS * sizeof(float)) : NULL;
    if (s == ZT_OK && !host_chunk)
        s = zt_fail(ZT_ERR_NOMEM, "random model: allocating the upload chunk");
    for (int i = 0; s == ZT_OK && i < m->n_tensors; i++)
        s = upload_tensor(m, i, seed, host_chunk);
    free(host_chunk);
    if (s != ZT_OK) {
        zt_model_free(m);
        return s;
    }
    *out = m;
    return ZT_OK;
}
