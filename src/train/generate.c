#include "train/generate.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"
#include "text/bpe.h"

int zt_generation_max_new(const zt_model *m, int prompt_length) {
    int max_new = m->dims.max_positions - prompt_length;
    return max_new < ZT_GENERATION_MAX_NEW ? max_new : ZT_GENERATION_MAX_NEW;
}

int zt_generation_seq_len(const zt_dataset *ds, const zt_model *m, int seq_len) {
    for (int i = 0; ds->kind == ZT_TASK_GENERATION && i < ds->n_examples; i++) {
        int need =
            ds->examples[i].prompt_length + zt_generation_max_new(m, ds->examples[i].prompt_length);
        if (need > seq_len) seq_len = need;
    }
    return seq_len;
}

zt_status zt_generation_stop_ids(const zt_tokenizer *tok, const zt_model *m, int32_t *stop,
                                 int *n_stop) {
    int32_t *newline = NULL;
    int n = 0;
    ZT_TRY(zt_tokenizer_encode(tok, "\n", 1, 0, &newline, &n));
    stop[0] = m->dims.eos_token_id;
    stop[1] = n > 0 ? newline[n - 1] : -1;
    *n_stop = n > 0 ? 2 : 1;
    free(newline);
    return ZT_OK;
}

zt_status zt_generate_greedy(zt_model *m, zt_workspace *ws, const zt_variants *variants,
                             const int32_t *prompt, int n_prompt, int max_new,
                             const int32_t *stop_ids, int n_stop, int32_t **out, int *n_out) {
    *out = NULL;
    *n_out = 0;
    int vocab = m->dims.vocab_size, capacity = n_prompt + max_new;
    int32_t *seq = zt_malloc((size_t)capacity * sizeof *seq);
    int32_t *mask = zt_malloc((size_t)capacity * sizeof *mask);
    float *logits = zt_malloc((size_t)vocab * sizeof *logits);
    if (!seq || !mask || !logits) {
        free(seq);
        free(mask);
        free(logits);
        return zt_fail(ZT_ERR_NOMEM, "generation buffers");
    }
    memcpy(seq, prompt, (size_t)n_prompt * sizeof *seq);
    for (int t = 0; t < capacity; t++)
        mask[t] = 1;
    zt_status s = ZT_OK;
    int length = n_prompt;
    while (length < capacity) {
        /* one target row, the last token; its id is irrelevant, only the logits are read */
        int32_t row = length - 1, dummy = 0;
        float logprob;
        zt_batch b = {1, length, seq, mask, 1, &row, &dummy};
        s = zt_model_forward(m, ws, &b, variants, &logprob, logits);
        if (s != ZT_OK) break;
        int32_t best = 0;
        for (int v = 1; v < vocab; v++)
            if (logits[v] > logits[best]) best = v;
        int stop = 0;
        for (int i = 0; i < n_stop; i++)
            stop |= best == stop_ids[i];
        if (stop) break;
        seq[length++] = best;
    }
    free(mask);
    free(logits);
    if (s != ZT_OK) {
        free(seq);
        return s;
    }
    *n_out = length - n_prompt;
    *out = zt_malloc((size_t)(*n_out > 0 ? *n_out : 1) * sizeof(int32_t));
    if (!*out) {
        free(seq);
        return zt_fail(ZT_ERR_NOMEM, "generation output");
    }
    memcpy(*out, seq + n_prompt, (size_t)*n_out * sizeof(int32_t));
    free(seq);
    return ZT_OK;
}

zt_status zt_generate_answer(zt_model *m, zt_workspace *ws, const zt_variants *variants,
                             const zt_tokenizer *tok, const zt_example *e, const int32_t *stop_ids,
                             int n_stop, char **text) {
    *text = NULL;
    int32_t *ids = NULL;
    int n = 0;
    ZT_TRY(zt_generate_greedy(m, ws, variants, e->prompt, e->prompt_length,
                              zt_generation_max_new(m, e->prompt_length), stop_ids, n_stop, &ids,
                              &n));
    zt_status s = zt_tokenizer_decode(tok, ids, n, 1, text);
    free(ids);
    return s;
}
