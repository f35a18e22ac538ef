/* The OPT family's table (models/arch.h): config.json, the tensor table in HF's registration
 * order (docs/spec.md §1.2, §1.4), and what `zotune info` shows of the architecture. The layer
 * code is in opt_layers.c. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "core/status.h"
#include "opt/opt_internal.h"

typedef struct table_builder {
    zt_tensor_info *tensors;
    int count, capacity;
    int out_of_memory;
} table_builder;

static int table_add(table_builder *tb, const char *name, int64_t rows, int64_t cols,
                     int no_decay) {
    if (tb->out_of_memory) return -1;
    if (tb->count == tb->capacity) {
        int capacity = tb->capacity ? tb->capacity * 2 : 64;
        zt_tensor_info *grown = zt_realloc(tb->tensors, (size_t)capacity * sizeof *grown);
        if (!grown) {
            tb->out_of_memory = 1;
            return -1;
        }
        tb->tensors = grown;
        tb->capacity = capacity;
    }
    zt_tensor_info *t = &tb->tensors[tb->count];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "model.decoder.%s", name);
    t->n_dims = cols > 0 ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols > 0 ? cols : 0;
    t->n_elems = (size_t)rows * (size_t)(cols > 0 ? cols : 1);
    t->no_decay = no_decay;
    return tb->count++;
}

/* The registration order fixes the tensor ids, which address z. */
static zt_status build_table(zt_model *m, zt_opt_family *fam) {
    const zt_opt_config *c = &fam->cfg;
    table_builder tb = {0};
    int h = c->hidden_size, e = c->word_embed_proj_dim, f = c->ffn_dim;
    int bias = c->enable_bias, affine = c->layer_norm_elementwise_affine;
    char name[ZT_TENSOR_NAME_MAX];

    fam->project_out = fam->project_in = fam->final_ln_g = fam->final_ln_b = -1;
    m->embed_tokens = m->lm_head = table_add(&tb, "embed_tokens.weight", c->vocab_size, e, 0);
    fam->embed_positions =
        table_add(&tb, "embed_positions.weight", (int64_t)c->max_position_embeddings + 2, h, 0);
    if (e != h) {
        fam->project_out = table_add(&tb, "project_out.weight", e, h, 0);
        fam->project_in = table_add(&tb, "project_in.weight", h, e, 0);
    }
    if (c->do_layer_norm_before && !c->remove_final_layer_norm && affine) {
        fam->final_ln_g = table_add(&tb, "final_layer_norm.weight", h, 0, 1);
        fam->final_ln_b = table_add(&tb, "final_layer_norm.bias", h, 0, 1);
    }
    fam->layers = zt_calloc((size_t)c->num_hidden_layers, sizeof *fam->layers);
    if (!fam->layers) {
        free(tb.tensors);
        return zt_fail(ZT_ERR_NOMEM, "allocating the layer table");
    }
    for (int i = 0; i < c->num_hidden_layers; i++) {
        zt_opt_layer_ids *L = &fam->layers[i];
#define ADD(field, suffix, rows, cols, no_decay)                                                   \
    do {                                                                                           \
        snprintf(name, sizeof name, "layers.%d.%s", i, suffix);                                    \
        L->field = table_add(&tb, name, rows, cols, no_decay);                                     \
    } while (0)
#define ADD_LINEAR(w, b, prefix, out_f, in_f)                                                      \
    do {                                                                                           \
        ADD(w, prefix ".weight", out_f, in_f, 0);                                                  \
        if (bias)                                                                                  \
            ADD(b, prefix ".bias", out_f, 0, 1);                                                   \
        else                                                                                       \
            L->b = -1;                                                                             \
    } while (0)
#define ADD_LN(g, b, prefix)                                                                       \
    do {                                                                                           \
        if (affine) {                                                                              \
            ADD(g, prefix ".weight", h, 0, 1);                                                     \
            ADD(b, prefix ".bias", h, 0, 1);                                                       \
        } else {                                                                                   \
            L->g = L->b = -1;                                                                      \
        }                                                                                          \
    } while (0)
        ADD_LINEAR(k_w, k_b, "self_attn.k_proj", h, h);
        ADD_LINEAR(v_w, v_b, "self_attn.v_proj", h, h);
        ADD_LINEAR(q_w, q_b, "self_attn.q_proj", h, h);
        ADD_LINEAR(out_w, out_b, "self_attn.out_proj", h, h);
        ADD_LN(attn_ln_g, attn_ln_b, "self_attn_layer_norm");
        ADD_LINEAR(fc1_w, fc1_b, "fc1", f, h);
        ADD_LINEAR(fc2_w, fc2_b, "fc2", h, f);
        ADD_LN(ffn_ln_g, ffn_ln_b, "final_layer_norm");
#undef ADD_LN
#undef ADD_LINEAR
#undef ADD
    }
    m->tensors = tb.tensors;
    m->n_tensors = tb.count;
    if (tb.out_of_memory) return zt_fail(ZT_ERR_NOMEM, "allocating the tensor table");
    return ZT_OK;
}

static zt_status opt_read_config(const char *path, void **config) {
    *config = NULL;
    zt_opt_config *cfg = zt_malloc(sizeof *cfg);
    if (!cfg) return zt_fail(ZT_ERR_NOMEM, "%s: allocating the config", path);
    zt_status s = zt_opt_config_load(path, cfg);
    if (s != ZT_OK) {
        free(cfg);
        return s;
    }
    *config = cfg;
    return ZT_OK;
}

static zt_status opt_build(zt_model *m, const void *config) {
    /* a caller-built config (a random model) meets the rules a loaded one met */
    ZT_TRY(zt_opt_config_validate("OPT config", config, ZT_ERR_INVALID_ARG));
    zt_opt_family *fam = zt_calloc(1, sizeof *fam);
    if (!fam) return zt_fail(ZT_ERR_NOMEM, "allocating the model's OPT state");
    fam->cfg = *(const zt_opt_config *)config;
    m->family = fam;
    const zt_opt_config *c = &fam->cfg;
    m->dims = (zt_model_dims){.vocab_size = c->vocab_size,
                              .hidden_size = c->hidden_size,
                              .n_heads = c->num_attention_heads,
                              .head_input_size = c->word_embed_proj_dim,
                              .n_layers = c->num_hidden_layers,
                              .max_positions = c->max_position_embeddings,
                              .bos_token_id = c->bos_token_id,
                              .eos_token_id = c->eos_token_id,
                              .pad_token_id = c->pad_token_id,
                              .init_std = 0.02f};
    return build_table(m, fam);
}

static void opt_release(zt_model *m) {
    zt_opt_family *fam = m->family;
    if (fam) free(fam->layers);
    free(fam);
    m->family = NULL;
}

/* The table is built layer after layer, each layer's tensors together (build_table), with the
 * embeddings, projections and final norm before them. */
static int opt_tensor_layer(const zt_model *m, int id) {
    const zt_opt_family *fam = zt_opt_family_of(m);
    const int n_layers = fam->cfg.num_hidden_layers;
    const int first = n_layers > 0 ? fam->layers[0].k_w : m->n_tensors;
    if (id < first)
        return id == fam->project_out || id == fam->final_ln_g || id == fam->final_ln_b
                   ? ZT_ARCH_AFTER_LAYERS
                   : ZT_ARCH_BEFORE_LAYERS;
    const int per_layer = n_layers > 1 ? fam->layers[1].k_w - first : m->n_tensors - first;
    const int layer = (id - first) / per_layer;
    return layer < n_layers ? layer : ZT_ARCH_AFTER_LAYERS;
}

/* torch_dtype follows the weights, as save_pretrained records it. */
static zt_status opt_write_config(const zt_model *m, const char *path) {
    zt_opt_config cfg = zt_opt_family_of(m)->cfg;
    snprintf(cfg.torch_dtype, sizeof cfg.torch_dtype, "%s",
             zt_opt_torch_dtype_name(m->tensors[m->embed_tokens].dtype));
    return zt_opt_config_write(path, &cfg);
}

static void opt_describe(const zt_model *m, FILE *out) {
    const zt_opt_config *c = zt_opt_config_of(m);
    fprintf(out, "architecture   OPT, %s layer norm%s\n", c->do_layer_norm_before ? "pre" : "post",
            c->word_embed_proj_dim != c->hidden_size ? ", project_in/project_out" : "");
    fprintf(out, "layers         %d\n", c->num_hidden_layers);
    fprintf(out, "hidden         %d (heads %d x %d), ffn %d\n", c->hidden_size,
            c->num_attention_heads, c->hidden_size / c->num_attention_heads, c->ffn_dim);
    fprintf(out, "embedding      vocab %d x %d, positions %d\n", c->vocab_size,
            c->word_embed_proj_dim, c->max_position_embeddings);
}

static void opt_describe_json(const zt_model *m, cJSON *root) {
    const zt_opt_config *c = zt_opt_config_of(m);
    cJSON_AddNumberToObject(root, "layers", c->num_hidden_layers);
    cJSON_AddNumberToObject(root, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(root, "heads", c->num_attention_heads);
    cJSON_AddNumberToObject(root, "ffn_dim", c->ffn_dim);
    cJSON_AddNumberToObject(root, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(root, "word_embed_proj_dim", c->word_embed_proj_dim);
    cJSON_AddNumberToObject(root, "max_position_embeddings", c->max_position_embeddings);
    cJSON_AddBoolToObject(root, "do_layer_norm_before", c->do_layer_norm_before);
}

const zt_opt_config *zt_opt_config_of(const zt_model *m) {
    return &zt_opt_family_of(m)->cfg;
}

int zt_opt_position_table(const zt_model *m) {
    return zt_opt_family_of(m)->embed_positions;
}

size_t zt_opt_parameter_count(const zt_opt_config *c) {
    size_t h = (size_t)c->hidden_size, e = (size_t)c->word_embed_proj_dim, f = (size_t)c->ffn_dim;
    size_t bias = c->enable_bias ? 1 : 0, ln = c->layer_norm_elementwise_affine ? 2 * h : 0;
    size_t total = (size_t)c->vocab_size * e + ((size_t)c->max_position_embeddings + 2) * h;
    if (e != h) total += 2 * h * e;
    if (c->do_layer_norm_before && !c->remove_final_layer_norm) total += ln;
    size_t per_layer = 4 * (h * h + bias * h) + (h * f + bias * f) + (f * h + bias * h) + 2 * ln;
    return total + (size_t)c->num_hidden_layers * per_layer;
}

static const char *const opt_ignored_names[] = {"decoder.version", "model.decoder.version", NULL};

static int opt_named_dtype(const void *config) {
    const zt_opt_config *c = config;
    for (int d = ZT_F32; d <= ZT_BF16; d++)
        if (strcmp(c->torch_dtype, zt_opt_torch_dtype_name((zt_dtype)d)) == 0) return d;
    return -1;
}

const zt_arch zt_opt_arch = {
    .model_type = "opt",
    .display_name = "OPT",
    .short_prefix = "model.decoder.",
    .short_example = "layers.0.fc1.weight",
    .optional_prefix = "model.",
    .tied_head_name = "lm_head.weight",
    .ignored_names = opt_ignored_names,
    /* HF's OPTLearnedPositionalEmbedding reads row position + 2; padding reads row 1 */
    .position_row_offset = 2,
    .lora_modules = "q_proj,k_proj,v_proj,out_proj",
    .shared_input_linears = 3,
    .read_config = opt_read_config,
    .build = opt_build,
    .release = opt_release,
    .tensor_layer = opt_tensor_layer,
    .write_config = opt_write_config,
    .describe = opt_describe,
    .describe_json = opt_describe_json,
    .named_dtype = opt_named_dtype,
    .plan_buffers = zt_opt_plan_buffers,
    .scratch_bytes = zt_opt_scratch_bytes,
    .embed = zt_opt_embed,
    .layer = zt_opt_decoder_layer,
    .head_input = zt_opt_head_input,
    .grad_area_floats = zt_opt_grad_area_floats,
    .grad_scratch_bytes = zt_opt_grad_scratch_bytes,
    .grad = zt_opt_grad,
    .n_published_sizes = ZT_OPT_N_PUBLISHED_SIZES,
    .published_size = zt_opt_published_size,
};
