/* The OPT sizes Meta published (facebook/opt-125m ... opt-66b, docs/spec.md §1.1) as configs:
 * what `zotune bench memory --plot` draws memory against. Only the shape comes from the table;
 * vocabulary, positions and token ids are the caller's model's, so the curves answer "this
 * model's setting at every size". */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"
#include "opt/opt.h"
#include "opt_internal.h"

static const zt_opt_published_shape published[ZT_OPT_N_PUBLISHED_SIZES] = {
    {"125m", 768, 12, 12, 3072, 768, 1, 125239296LL},
    {"350m", 1024, 24, 16, 4096, 512, 0, 331196416LL},
    {"1.3b", 2048, 24, 32, 8192, 2048, 1, 1315758080LL},
    {"2.7b", 2560, 32, 32, 10240, 2560, 1, 2651596800LL},
    {"6.7b", 4096, 32, 32, 16384, 4096, 1, 6658473984LL},
    {"13b", 5120, 40, 40, 20480, 5120, 1, 12853473280LL},
    {"30b", 7168, 48, 56, 28672, 7168, 1, 29974540288LL},
    {"66b", 9216, 64, 72, 36864, 9216, 1, 65719701504LL},
};

const zt_opt_published_shape *zt_opt_published_shapes(void) {
    return published;
}

const zt_opt_published_shape *zt_opt_find_published_shape(const char *name) {
    if (strncmp(name, "opt-", 4) == 0) name += 4;
    for (int i = 0; i < ZT_OPT_N_PUBLISHED_SIZES; i++)
        if (strcmp(published[i].name, name) == 0) return &published[i];
    return NULL;
}

zt_status zt_opt_published_size(const zt_model *like, int index, void **config, const char **name) {
    *config = NULL;
    if (index < 0 || index >= ZT_OPT_N_PUBLISHED_SIZES)
        return zt_fail(ZT_ERR_MISSING, "OPT has %d published sizes, not a size %d",
                       ZT_OPT_N_PUBLISHED_SIZES, index);
    const zt_opt_published_shape *z = &published[index];
    zt_opt_config *c = zt_malloc(sizeof *c);
    if (!c) return zt_fail(ZT_ERR_NOMEM, "the config of opt-%s", z->name);
    *c = *zt_opt_config_of(like);
    c->hidden_size = z->hidden;
    c->num_hidden_layers = z->layers;
    c->num_attention_heads = z->heads;
    c->ffn_dim = z->ffn;
    c->word_embed_proj_dim = z->embed_proj;
    c->do_layer_norm_before = z->pre_layer_norm;
    /* the published configs' values, whatever the model's own */
    c->enable_bias = 1;
    c->layer_norm_elementwise_affine = 1;
    c->remove_final_layer_norm = 0;
    const zt_status s = zt_opt_config_validate(z->name, c, ZT_ERR_INVALID_ARG);
    if (s != ZT_OK) {
        free(c);
        return s;
    }
    *config = c;
    *name = z->name;
    return ZT_OK;
}
