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
    (void)m;
    for (int i = 0; ds->kind == ZT_TASK_GENERATION && i < ds->n_examples; i++)
        if (ds->examples[i].prompt_length > seq_len) seq_len = ds->examples[i].prompt_length;
    return seq_len;
}

int zt_generation_cache_columns(int longest_prompt, int largest_max_new) {
    return largest_max_new > 0 ? longest_prompt + largest_max_new - 1 : longest_prompt;
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

static int32_t argmax(const float *logits, int vocab) {
    int32_t best = 0;
    for (int v = 1; v < vocab; v++)
        if (logits[v] > logits[best]) best = v;
    return best;
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
        int32_t best = argmax(logits, vocab);
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

/* Host buffers of one batched decoding. */
typedef struct decode_buffers {
    int32_t *ids, *mask; /* (n,P) the padded prompts */
    float *logits;       /* (n,V) */
    int32_t *next, *next_mask;
    uint8_t *live; /* (n) still growing */
} decode_buffers;

/* The loop on an allocated cache: prefill, then one token per live sequence per step. */
static zt_status decode(zt_model *m, zt_workspace *ws, const zt_variants *variants,
                        zt_kv_cache *cache, int n, const int32_t *const *prompts,
                        const int *prompt_lengths, const int *max_new, int longest,
                        const int32_t *stop_ids, int n_stop, int32_t **outputs, int *n_outputs,
                        decode_buffers *d) {
    const int32_t pad = m->dims.pad_token_id;
    const int vocab = m->dims.vocab_size;
    for (int i = 0; i < n; i++) {
        int skip = longest - prompt_lengths[i];
        for (int t = 0; t < longest; t++) {
            d->ids[(size_t)i * longest + t] = t < skip ? pad : prompts[i][t - skip];
            d->mask[(size_t)i * longest + t] = t >= skip;
        }
        d->live[i] = max_new[i] > 0;
    }
    ZT_TRY(zt_model_forward_cached(m, ws, cache, n, longest, d->ids, d->mask, variants, d->logits));
    for (;;) {
        int n_live = 0;
        for (int i = 0; i < n; i++) {
            /* a stopped sequence is fed padding: it takes no position and no one attends to it */
            d->next[i] = pad;
            d->next_mask[i] = 0;
            if (!d->live[i]) continue;
            int32_t best = argmax(d->logits + (size_t)i * vocab, vocab);
            for (int j = 0; j < n_stop; j++)
                if (best == stop_ids[j]) d->live[i] = 0;
            if (!d->live[i]) continue;
            outputs[i][n_outputs[i]++] = best;
            if (n_outputs[i] == max_new[i]) {
                d->live[i] = 0;
                continue;
            }
            d->next[i] = best;
            d->next_mask[i] = 1;
            n_live++;
        }
        if (n_live == 0) return ZT_OK;
        ZT_TRY(zt_model_forward_cached(m, ws, cache, n, 1, d->next, d->next_mask, variants,
                                       d->logits));
    }
}

zt_status zt_generate_greedy_batch(zt_model *m, zt_workspace *ws, const zt_variants *variants,
                                   int n, const int32_t *const *prompts, const int *prompt_lengths,
                                   const int *max_new, const int32_t *stop_ids, int n_stop,
                                   int32_t **outputs, int *n_outputs) {
    if (n <= 0) return zt_fail(ZT_ERR_INVALID_ARG, "generation: %d prompts", n);
    for (int i = 0; i < n; i++) {
        outputs[i] = NULL;
        n_outputs[i] = 0;
    }
    int longest = 0, largest = 0;
    for (int i = 0; i < n; i++) {
        if (prompt_lengths[i] < 1 || max_new[i] < 0)
            return zt_fail(ZT_ERR_INVALID_ARG,
                           "generation: prompt %d has %d tokens and a budget of %d (want >= 1 "
                           "and >= 0)",
                           i, prompt_lengths[i], max_new[i]);
        if (prompt_lengths[i] > longest) longest = prompt_lengths[i];
        if (max_new[i] > largest) largest = max_new[i];
    }
    const size_t tokens = (size_t)n * (size_t)longest;
    decode_buffers d = {zt_malloc(tokens * sizeof *d.ids),
                        zt_malloc(tokens * sizeof *d.mask),
                        zt_malloc((size_t)n * m->dims.vocab_size * sizeof *d.logits),
                        zt_malloc((size_t)n * sizeof *d.next),
                        zt_malloc((size_t)n * sizeof *d.next_mask),
                        zt_malloc((size_t)n)};
    zt_status s = d.ids && d.mask && d.logits && d.next && d.next_mask && d.live
                      ? ZT_OK
                      : zt_fail(ZT_ERR_NOMEM, "generation buffers for %d prompts", n);
    for (int i = 0; s == ZT_OK && i < n; i++) {
        outputs[i] = zt_xmalloc((size_t)(max_new[i] > 0 ? max_new[i] : 1) * sizeof(int32_t));
        if (!outputs[i]) s = zt_fail(ZT_ERR_NOMEM, "generation output %d", i);
    }
    zt_kv_cache *cache = NULL;
    if (s == ZT_OK && largest > 0)
        s = zt_kv_cache_create(m, n, zt_generation_cache_columns(longest, largest), &cache);
    if (s == ZT_OK && largest > 0)
        s = decode(m, ws, variants, cache, n, prompts, prompt_lengths, max_new, longest, stop_ids,
                   n_stop, outputs, n_outputs, &d);
    zt_kv_cache_free(cache);
    free(d.ids);
    free(d.mask);
    free(d.logits);
    free(d.next);
    free(d.next_mask);
    free(d.live);
    if (s != ZT_OK)
        for (int i = 0; i < n; i++) {
            free(outputs[i]);
            outputs[i] = NULL;
            n_outputs[i] = 0;
        }
    return s;
}

zt_status zt_generate_answers(zt_model *m, zt_workspace *ws, const zt_variants *variants,
                              const zt_tokenizer *tok, const zt_example *const *examples, int n,
                              int batch, const int32_t *stop_ids, int n_stop, char **texts) {
    for (int i = 0; i < n; i++)
        texts[i] = NULL;
    if (batch <= 0) return zt_fail(ZT_ERR_INVALID_ARG, "generation: batch size %d", batch);
    const int per_chunk = n < batch ? n : batch;
    const int32_t **prompts = zt_xmalloc((size_t)per_chunk * sizeof *prompts);
    int *lengths = zt_xmalloc((size_t)per_chunk * 3 * sizeof *lengths);
    int32_t **ids = zt_xcalloc((size_t)per_chunk, sizeof *ids);
    zt_status s =
        prompts && lengths && ids ? ZT_OK : zt_fail(ZT_ERR_NOMEM, "generation of %d answers", n);
    for (int first = 0; s == ZT_OK && first < n; first += batch) {
        int count = n - first < batch ? n - first : batch;
        int *max_new = lengths + per_chunk, *n_ids = lengths + 2 * per_chunk;
        for (int i = 0; i < count; i++) {
            const zt_example *e = examples[first + i];
            prompts[i] = e->prompt;
            lengths[i] = e->prompt_length;
            max_new[i] = zt_generation_max_new(m, e->prompt_length);
        }
        s = zt_generate_greedy_batch(m, ws, variants, count, prompts, lengths, max_new, stop_ids,
                                     n_stop, ids, n_ids);
        for (int i = 0; i < count; i++) {
            if (s == ZT_OK) s = zt_tokenizer_decode(tok, ids[i], n_ids[i], 1, &texts[first + i]);
            free(ids[i]);
            ids[i] = NULL;
        }
    }
    free(prompts);
    free(lengths);
    free(ids);
    if (s != ZT_OK)
        for (int i = 0; i < n; i++) {
            free(texts[i]);
            texts[i] = NULL;
        }
    return s;
}
