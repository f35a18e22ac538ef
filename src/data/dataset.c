/* Loading task JSONL (docs/tasks.md): text records tokenized MeZO's way, or pre-tokenized ids. */
#include "data/dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "core/status.h"
#include "io/jsonl.h"
#include "text/bpe.h"

typedef struct reader {
    const zt_jsonl *in;
    const zt_tokenizer *tok;
    int vocab, max_positions;
    const char *path;
    int line;
} reader;

static zt_status check_ids(const reader *r, const char *key, const int32_t *ids, int n,
                           int allow_ignore) {
    for (int i = 0; i < n; i++) {
        if (allow_ignore && ids[i] == -100) continue;
        if (ids[i] < 0 || ids[i] >= r->vocab)
            return zt_fail(ZT_ERR_FORMAT, "%s:%d: %s[%d] = %d outside [0, %d)%s", r->path, r->line,
                           key, i, ids[i], r->vocab, allow_ignore ? " and not -100" : "");
    }
    return ZT_OK;
}

static const char *text_field(const cJSON *o, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

/* A copy of s without leading and trailing spaces (only ' ', as Python's strip(' ')). */
static char *strip_spaces(const char *s) {
    while (*s == ' ')
        s++;
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == ' ')
        n--;
    char *out = zt_malloc(n + 1);
    if (out) {
        memcpy(out, s, n);
        out[n] = '\0';
    }
    return out;
}

static zt_status encode(const reader *r, const char *text, int32_t **ids, int *n) {
    if (!r->tok)
        return zt_fail(ZT_ERR_MISSING,
                       "%s:%d: text records need a tokenizer (tokenizer.json or vocab.json + "
                       "merges.txt in the model directory)",
                       r->path, r->line);
    char *stripped = strip_spaces(text);
    if (!stripped) return zt_fail(ZT_ERR_NOMEM, "%s:%d: text", r->path, r->line);
    zt_status s = zt_tokenizer_encode(r->tok, stripped, strlen(stripped), 1, ids, n);
    free(stripped);
    if (s != ZT_OK) return zt_fail_context(s, "%s:%d: ", r->path, r->line);
    /* A failed encode hands back nothing: callers that bail out with ZT_TRY own no ids. */
    s = check_ids(r, "token", *ids, *n, 0);
    if (s != ZT_OK) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return s;
}

/* MeZO's option rule: the sequence is encode(prompt + suffix) and its option the tokens past
 * encode(prompt)'s length (BOS on both sides cancels). Over-long sequences keep BOS and their
 * last max_positions - 1 tokens. */
static zt_status encode_with_option(const reader *r, const char *prompt, const char *suffix,
                                    int32_t **seq, int *length, int *option_length) {
    int32_t *prefix = NULL;
    int n_prefix = 0;
    ZT_TRY(encode(r, prompt, &prefix, &n_prefix));
    free(prefix);
    size_t a = strlen(prompt), b = strlen(suffix);
    char *joined = zt_malloc(a + b + 1);
    if (!joined) return zt_fail(ZT_ERR_NOMEM, "%s:%d: text", r->path, r->line);
    memcpy(joined, prompt, a);
    memcpy(joined + a, suffix, b + 1);
    zt_status s = encode(r, joined, seq, length);
    free(joined);
    ZT_TRY(s);
    *option_length = *length - n_prefix;
    if (*option_length < 1)
        return zt_fail(ZT_ERR_FORMAT, "%s:%d: the candidate/completion \"%s\" adds no token",
                       r->path, r->line, suffix);
    if (*option_length >= r->max_positions)
        return zt_fail(ZT_ERR_FORMAT,
                       "%s:%d: the candidate/completion alone has %d tokens, the "
                       "model takes %d",
                       r->path, r->line, *option_length, r->max_positions);
    if (*length > r->max_positions) {
        int drop = *length - r->max_positions;
        memmove(*seq + 1, *seq + 1 + drop, (size_t)(r->max_positions - 1) * sizeof(int32_t));
        *length = r->max_positions;
    }
    return ZT_OK;
}

static zt_status labels_for_option(const reader *r, zt_example *e, int option_length) {
    e->labels = zt_malloc((size_t)e->length * sizeof(int32_t));
    if (!e->labels) return zt_fail(ZT_ERR_NOMEM, "%s:%d: labels", r->path, r->line);
    for (int t = 0; t < e->length; t++)
        e->labels[t] = t >= e->length - option_length ? e->input_ids[t] : -100;
    return ZT_OK;
}

static zt_status parse_lm_fields(const reader *r, const cJSON *o, zt_example *e) {
    const char *text = text_field(o, "text"), *prompt = text_field(o, "prompt");
    const char *completion = text_field(o, "completion");
    if (text) {
        ZT_TRY(encode(r, text, &e->input_ids, &e->length));
        if (e->length > r->max_positions) e->length = r->max_positions; /* keep the start */
        return labels_for_option(r, e, e->length - 1);
    }
    if (prompt && completion) {
        int option = 0;
        ZT_TRY(encode_with_option(r, prompt, completion, &e->input_ids, &e->length, &option));
        return labels_for_option(r, e, option);
    }
    ZT_TRY(zt_jsonl_int_array(r->in, o, "input_ids", &e->input_ids, &e->length));
    if (e->length < 2)
        return zt_fail(ZT_ERR_FORMAT, "%s:%d: input_ids needs at least 2 tokens", r->path, r->line);
    if (cJSON_HasObjectItem(o, "labels")) {
        int n = 0;
        ZT_TRY(zt_jsonl_int_array(r->in, o, "labels", &e->labels, &n));
        if (n != e->length)
            return zt_fail(ZT_ERR_FORMAT, "%s:%d: %d labels for %d input_ids", r->path, r->line, n,
                           e->length);
    } else {
        e->labels = zt_malloc((size_t)e->length * sizeof(int32_t));
        if (!e->labels) return zt_fail(ZT_ERR_NOMEM, "%s:%d: labels", r->path, r->line);
        memcpy(e->labels, e->input_ids, (size_t)e->length * sizeof(int32_t));
    }
    ZT_TRY(check_ids(r, "input_ids", e->input_ids, e->length, 0));
    if (e->length > r->max_positions)
        return zt_fail(ZT_ERR_FORMAT, "%s:%d: %d tokens exceed max_position_embeddings %d", r->path,
                       r->line, e->length, r->max_positions);
    return check_ids(r, "labels", e->labels, e->length, 1);
}

/* A record must give the loss something to average: a label past the first position (the first
 * token has nothing before it to be predicted from) that is not -100. Found here, with its line,
 * rather than as an empty batch in the middle of training. */
static zt_status parse_lm(const reader *r, const cJSON *o, zt_example *e) {
    ZT_TRY(parse_lm_fields(r, o, e));
    for (int t = 1; t < e->length; t++)
        if (e->labels[t] != -100) return ZT_OK;
    return zt_fail(ZT_ERR_FORMAT,
                   "%s:%d: no token to predict (a record needs a label other than -100 past its "
                   "first token)",
                   r->path, r->line);
}

static zt_status parse_gold(const reader *r, const cJSON *o, zt_example *e) {
    const cJSON *label = cJSON_GetObjectItemCaseSensitive(o, "label");
    int n = cJSON_IsArray(label) ? cJSON_GetArraySize(label) : 1;
    e->gold = zt_malloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    if (!e->gold) return zt_fail(ZT_ERR_NOMEM, "%s:%d: labels", r->path, r->line);
    for (int i = 0; i < n; i++) {
        const cJSON *item = cJSON_IsArray(label) ? cJSON_GetArrayItem(label, i) : label;
        if (!cJSON_IsNumber(item) || item->valuedouble != (double)item->valueint ||
            item->valueint < 0 || item->valueint >= e->n_candidates)
            return zt_fail(ZT_ERR_FORMAT,
                           "%s:%d: \"label\" must be an integer in [0, %d) or a non-empty list of "
                           "them",
                           r->path, r->line, e->n_candidates);
        e->gold[e->n_gold++] = item->valueint;
    }
    if (e->n_gold == 0)
        return zt_fail(ZT_ERR_FORMAT, "%s:%d: \"label\" is an empty list", r->path, r->line);
    e->label = e->gold[0];
    return ZT_OK;
}

static zt_status parse_classification(const reader *r, const cJSON *o, zt_example *e) {
    const cJSON *cands = cJSON_GetObjectItemCaseSensitive(o, "candidates");
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(o, "prompt");
    if (!cJSON_IsArray(cands) || cJSON_GetArraySize(cands) < 2)
        return zt_fail(ZT_ERR_FORMAT, "%s:%d: \"candidates\" must be an array of >= 2 entries",
                       r->path, r->line);
    e->n_candidates = cJSON_GetArraySize(cands);
    e->candidates = zt_calloc((size_t)e->n_candidates, sizeof *e->candidates);
    e->candidate_length = zt_calloc((size_t)e->n_candidates, sizeof(int));
    e->option_length = zt_calloc((size_t)e->n_candidates, sizeof(int));
    if (!e->candidates || !e->candidate_length || !e->option_length)
        return zt_fail(ZT_ERR_NOMEM, "%s:%d: candidates", r->path, r->line);
    int32_t *prompt_ids = NULL;
    int n_prompt = 0;
    if (!cJSON_IsString(prompt)) {
        ZT_TRY(zt_jsonl_int_array(r->in, o, "prompt", &prompt_ids, &n_prompt));
        zt_status s = n_prompt < 1
                          ? zt_fail(ZT_ERR_FORMAT, "%s:%d: prompt is empty", r->path, r->line)
                          : check_ids(r, "prompt", prompt_ids, n_prompt, 0);
        if (s != ZT_OK) {
            free(prompt_ids);
            return s;
        }
    }
    zt_status s = ZT_OK;
    for (int c = 0; s == ZT_OK && c < e->n_candidates; c++) {
        const cJSON *cand = cJSON_GetArrayItem(cands, c);
        if (cJSON_IsString(prompt)) {
            if (!cJSON_IsString(cand))
                s = zt_fail(ZT_ERR_FORMAT, "%s:%d: candidate %d must be a string", r->path, r->line,
                            c);
            else
                s = encode_with_option(r, prompt->valuestring, cand->valuestring, &e->candidates[c],
                                       &e->candidate_length[c], &e->option_length[c]);
            continue;
        }
        /* pre-tokenized: full sequence = prompt ids + candidate ids */
        cJSON *wrap = cJSON_CreateObject();
        cJSON_AddItemReferenceToObject(wrap, "candidate", (cJSON *)cand);
        int32_t *ids = NULL;
        int n = 0;
        s = zt_jsonl_int_array(r->in, wrap, "candidate", &ids, &n);
        cJSON_Delete(wrap);
        if (s == ZT_OK && n < 1)
            s = zt_fail(ZT_ERR_FORMAT, "%s:%d: candidate %d is empty", r->path, r->line, c);
        if (s == ZT_OK) s = check_ids(r, "candidate", ids, n, 0);
        if (s == ZT_OK && n_prompt + n > r->max_positions)
            s = zt_fail(ZT_ERR_FORMAT, "%s:%d: %d tokens exceed max_position_embeddings %d",
                        r->path, r->line, n_prompt + n, r->max_positions);
        if (s == ZT_OK) {
            e->candidates[c] = zt_malloc((size_t)(n_prompt + n) * sizeof(int32_t));
            if (!e->candidates[c])
                s = zt_fail(ZT_ERR_NOMEM, "%s:%d: candidate", r->path, r->line);
            else {
                memcpy(e->candidates[c], prompt_ids, (size_t)n_prompt * sizeof(int32_t));
                memcpy(e->candidates[c] + n_prompt, ids, (size_t)n * sizeof(int32_t));
                e->candidate_length[c] = n_prompt + n;
                e->option_length[c] = n;
            }
        }
        free(ids);
    }
    free(prompt_ids);
    ZT_TRY(s);
    return parse_gold(r, o, e);
}

static zt_status parse_generation(const reader *r, const cJSON *o, zt_example *e) {
    /* BOS and at least one generated token */
    if (r->max_positions < 2)
        return zt_fail(ZT_ERR_FORMAT,
                       "%s:%d: a generation record needs a model with at least 2 positions "
                       "(max_position_embeddings is %d)",
                       r->path, r->line, r->max_positions);
    const char *prompt = text_field(o, "prompt");
    const cJSON *answers = cJSON_GetObjectItemCaseSensitive(o, "answers");
    if (!prompt || !cJSON_IsArray(answers) || cJSON_GetArraySize(answers) < 1)
        return zt_fail(ZT_ERR_FORMAT,
                       "%s:%d: a generation record needs \"prompt\" (string) and \"answers\" "
                       "(non-empty list of strings)",
                       r->path, r->line);
    e->n_answers = cJSON_GetArraySize(answers);
    e->answers = zt_calloc((size_t)e->n_answers, sizeof *e->answers);
    if (!e->answers) return zt_fail(ZT_ERR_NOMEM, "%s:%d: answers", r->path, r->line);
    for (int i = 0; i < e->n_answers; i++) {
        const cJSON *a = cJSON_GetArrayItem(answers, i);
        if (!cJSON_IsString(a))
            return zt_fail(ZT_ERR_FORMAT, "%s:%d: answers[%d] is not a string", r->path, r->line,
                           i);
        e->answers[i] = zt_strdup(a->valuestring);
        if (!e->answers[i]) return zt_fail(ZT_ERR_NOMEM, "%s:%d: answers", r->path, r->line);
    }
    e->prompt_text = zt_strdup(prompt);
    if (!e->prompt_text) return zt_fail(ZT_ERR_NOMEM, "%s:%d: prompt", r->path, r->line);
    ZT_TRY(encode(r, prompt, &e->prompt, &e->prompt_length));
    if (e->prompt_length > r->max_positions - 1) {
        int drop = e->prompt_length - (r->max_positions - 1);
        memmove(e->prompt + 1, e->prompt + 1 + drop,
                (size_t)(r->max_positions - 2) * sizeof(int32_t));
        e->prompt_length = r->max_positions - 1;
    }
    const char *completion = text_field(o, "completion");
    char *fallback = NULL;
    if (!completion) {
        size_t n = strlen(e->answers[0]);
        fallback = zt_malloc(n + 2);
        if (!fallback) return zt_fail(ZT_ERR_NOMEM, "%s:%d: completion", r->path, r->line);
        fallback[0] = ' ';
        memcpy(fallback + 1, e->answers[0], n + 1);
        completion = fallback;
    }
    int option = 0;
    zt_status s = encode_with_option(r, prompt, completion, &e->input_ids, &e->length, &option);
    free(fallback);
    ZT_TRY(s);
    return labels_for_option(r, e, option);
}

static void example_free(zt_example *e) {
    free(e->input_ids);
    free(e->labels);
    free(e->prompt);
    free(e->prompt_text);
    for (int c = 0; c < e->n_candidates && e->candidates; c++)
        free(e->candidates[c]);
    free(e->candidates);
    free(e->candidate_length);
    free(e->option_length);
    free(e->gold);
    for (int i = 0; i < e->n_answers && e->answers; i++)
        free(e->answers[i]);
    free(e->answers);
}

static int example_longest(zt_task_kind kind, const zt_example *e) {
    if (kind != ZT_TASK_CLASSIFICATION) return e->length;
    int longest = 0;
    for (int c = 0; c < e->n_candidates; c++)
        if (e->candidate_length[c] > longest) longest = e->candidate_length[c];
    return longest;
}

static const char *kind_name(zt_task_kind kind) {
    return kind == ZT_TASK_LM               ? "language-model"
           : kind == ZT_TASK_CLASSIFICATION ? "classification"
                                            : "generation";
}

zt_status zt_dataset_load(const char *path, const zt_tokenizer *tok, int vocab, int max_positions,
                          zt_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    snprintf(ds->path, sizeof ds->path, "%s", path);
    zt_jsonl *in = NULL;
    ZT_TRY(zt_jsonl_open(path, &in));
    reader r = {in, tok, vocab, max_positions, path, 0};
    zt_status s = ZT_OK;
    int capacity = 0;
    for (;;) {
        cJSON *o = NULL;
        s = zt_jsonl_next(in, &o);
        if (s != ZT_OK || !o) break;
        zt_example e;
        memset(&e, 0, sizeof e);
        e.line = r.line = zt_jsonl_line(in);
        zt_task_kind kind = cJSON_HasObjectItem(o, "candidates") ? ZT_TASK_CLASSIFICATION
                            : cJSON_HasObjectItem(o, "answers")  ? ZT_TASK_GENERATION
                                                                 : ZT_TASK_LM;
        if (ds->n_examples > 0 && kind != ds->kind)
            s = zt_fail(ZT_ERR_FORMAT, "%s:%d: a %s record in a file of %s records", path, e.line,
                        kind_name(kind), kind_name(ds->kind));
        ds->kind = kind;
        if (s == ZT_OK)
            s = kind == ZT_TASK_LM               ? parse_lm(&r, o, &e)
                : kind == ZT_TASK_CLASSIFICATION ? parse_classification(&r, o, &e)
                                                 : parse_generation(&r, o, &e);
        cJSON_Delete(o);
        if (s == ZT_OK && ds->n_examples == capacity) {
            capacity = capacity ? 2 * capacity : 64;
            zt_example *grown = zt_realloc(ds->examples, (size_t)capacity * sizeof *grown);
            if (!grown)
                s = zt_fail(ZT_ERR_NOMEM, "%s: examples", path);
            else
                ds->examples = grown;
        }
        if (s != ZT_OK) {
            example_free(&e);
            break;
        }
        ds->examples[ds->n_examples++] = e;
        int longest = example_longest(kind, &e);
        if (longest > ds->max_sequence) ds->max_sequence = longest;
        if (e.n_candidates > ds->max_candidates) ds->max_candidates = e.n_candidates;
    }
    ds->fingerprint = zt_jsonl_fingerprint(in);
    zt_jsonl_close(in);
    if (s == ZT_OK && ds->n_examples == 0) s = zt_fail(ZT_ERR_FORMAT, "%s: no records", path);
    if (s != ZT_OK) zt_dataset_free(ds);
    return s;
}

void zt_dataset_free(zt_dataset *ds) {
    for (int i = 0; i < ds->n_examples; i++)
        example_free(&ds->examples[i]);
    free(ds->examples);
    ds->examples = NULL;
    ds->n_examples = 0;
}
