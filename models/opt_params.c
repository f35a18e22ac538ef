/* Which tensors train, and writing a model back as a HuggingFace checkpoint. */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/path.h"
#include "core/status.h"
#include "io/safetensors.h"
#include "opt.h"
#include "zo/engine.h"

/* A pattern matches the canonical name or the name without "model.decoder.". */
static int pattern_matches(const char *pattern, const char *name) {
    const char *short_name = name + strlen("model.decoder.");
    return fnmatch(pattern, name, 0) == 0 || fnmatch(pattern, short_name, 0) == 0;
}

zt_status zt_model_select(const zt_model *m, const char *patterns, uint8_t *selected, int *count) {
    *count = 0;
    int all = !patterns || !*patterns || patterns[0] == '!';
    for (int i = 0; i < m->n_tensors; i++) selected[i] = (uint8_t)all;
    char *copy = patterns ? strdup(patterns) : NULL;
    if (patterns && !copy) return zt_fail(ZT_ERR_NOMEM, "copying patterns");
    zt_status s = ZT_OK;
    char *save = NULL;
    for (char *tok = copy ? strtok_r(copy, ",", &save) : NULL; tok && s == ZT_OK;
         tok = strtok_r(NULL, ",", &save)) {
        int exclude = tok[0] == '!';
        int hits = 0;
        for (int i = 0; i < m->n_tensors; i++)
            if (pattern_matches(tok + exclude, m->tensors[i].name)) {
                selected[i] = (uint8_t)!exclude;
                hits++;
            }
        if (hits == 0)
            s = zt_fail(ZT_ERR_INVALID_ARG,
                        "--trainable: pattern '%s' matches no tensor (names look like "
                        "'layers.0.fc1.weight' or 'model.decoder.embed_tokens.weight')",
                        tok + exclude);
    }
    free(copy);
    for (int i = 0; i < m->n_tensors; i++) *count += selected[i];
    if (s == ZT_OK && *count == 0)
        s = zt_fail(ZT_ERR_INVALID_ARG, "--trainable '%s' leaves no tensor to train", patterns);
    return s;
}

zt_status zt_model_param_set(zt_model *m, const uint8_t *selected, zt_param_set *ps) {
    memset(ps, 0, sizeof *ps);
    ps->be = m->be;
    ps->params = calloc((size_t)m->n_tensors, sizeof *ps->params);
    if (!ps->params) return zt_fail(ZT_ERR_NOMEM, "allocating the parameter set");
    for (int i = 0; i < m->n_tensors; i++) {
        if (selected && !selected[i]) continue;
        zt_param *p = &ps->params[ps->n_params++];
        const zt_tensor_info *t = &m->tensors[i];
        p->name = t->name;
        p->data = (char *)m->weights + t->offset;
        p->dtype = t->dtype;
        p->n_elems = t->n_elems;
        p->tensor_id = (uint32_t)i;
        p->no_decay = t->no_decay;
        ps->n_elems += t->n_elems;
    }
    return ZT_OK;
}

void zt_model_param_set_free(zt_param_set *ps) {
    free(ps->params);
    memset(ps, 0, sizeof *ps);
}

static const char *st_dtype(zt_dtype d) { return d == ZT_F32 ? "F32" : d == ZT_F16 ? "F16" : "BF16"; }

zt_status zt_model_save(const zt_model *m, const char *dir) {
    ZT_TRY(zt_make_dirs(dir));
    void *host = malloc(m->weights_bytes ? m->weights_bytes : 1);
    zt_st_write_tensor *tensors = calloc((size_t)m->n_tensors, sizeof *tensors);
    if (!host || !tensors) {
        free(host);
        free(tensors);
        return zt_fail(ZT_ERR_NOMEM, "%s: staging %zu bytes of weights", dir, m->weights_bytes);
    }
    zt_status s = m->be->ops->download(m->be, host, m->weights, m->weights_bytes);
    for (int i = 0; s == ZT_OK && i < m->n_tensors; i++) {
        const zt_tensor_info *t = &m->tensors[i];
        tensors[i] = (zt_st_write_tensor){t->name, st_dtype(t->dtype), t->n_dims, t->shape,
                                          (char *)host + t->offset};
    }
    char path[4096];
    static const char *const metadata[] = {"format", "pt"};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (s == ZT_OK) s = zt_st_write(path, tensors, m->n_tensors, metadata, 1);
    zt_opt_config cfg = m->cfg;
    snprintf(cfg.torch_dtype, sizeof cfg.torch_dtype, "%s",
             m->tensors[m->embed_tokens].dtype == ZT_F32   ? "float32"
             : m->tensors[m->embed_tokens].dtype == ZT_F16 ? "float16"
                                                           : "bfloat16");
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (s == ZT_OK) s = zt_opt_config_write(path, &cfg);
    free(host);
    free(tensors);
    return s;
}
