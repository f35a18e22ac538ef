/* The byte-level BPE model: vocabulary and merge tables, encode and decode (docs/spec.md §3.3-3.5).
 *
 * The merge loop follows tokenizers' `Word::merge_all`, not GPT-2's "merge every occurrence of
 * the best pair, then look again": a heap ordered by (rank, position) applies the lowest-ranked
 * merge, leftmost first, and queues the pairs the merged symbol forms with its neighbours. For a
 * merges list where every merged token is built by earlier merges (all real ones) the two give
 * the same tokens; the heap is O(n log n) where GPT-2's loop is O(n^2) on long pieces. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"
#include "text/text_internal.h"

/* ---- hashing --------------------------------------------------------------------------------- */

static uint64_t hash_bytes(const char *text, size_t len) {
    uint64_t hash = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        hash ^= (uint8_t)text[i];
        hash *= 1099511628211ull;
    }
    return hash;
}

static uint64_t hash_pair(uint64_t pair) {
    pair ^= pair >> 33; /* a 64-bit finalizer: the ids are small, so spread their bits */
    pair *= 0xff51afd7ed558ccdull;
    pair ^= pair >> 33;
    pair *= 0xc4ceb9fe1a85ec53ull;
    pair ^= pair >> 33;
    return pair;
}

static size_t table_size_for(size_t n_items) {
    size_t size = 16;
    while (size < n_items * 2)
        size *= 2; /* load factor at most 1/2 */
    return size;
}

static uint64_t pair_key(int32_t left, int32_t right) {
    return ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
}

/* ---- building -------------------------------------------------------------------------------- */

zt_status zt_tokenizer_create_empty(zt_tokenizer **out) {
    *out = NULL;
    zt_tokenizer *tok = zt_calloc(1, sizeof *tok);
    if (!tok) return zt_fail(ZT_ERR_NOMEM, "tokenizer: out of memory");
    tok->bos_id = -1;
    tok->unk_id = -1;
    tok->use_regex = true;
    for (int byte = 0; byte < 256; byte++) {
        tok->byte_token_id[byte] = -1;
        tok->byte_text_len[byte] =
            (uint8_t)zt_utf8_put(zt_byte_to_unicode((uint8_t)byte), tok->byte_text[byte]);
    }
    for (uint32_t code_point = 0; code_point < ZT_BYTE_MAP_CODE_POINTS; code_point++)
        tok->char_to_byte[code_point] = (int16_t)zt_unicode_to_byte(code_point);
    *out = tok;
    return ZT_OK;
}

/* The id tables are dense, so one stray id of 2e9 in a file of a few bytes would cost gigabytes;
 * real vocabularies stay far below this (OPT 50265, the largest about 2^18). */
enum { TOKENIZER_MAX_ID = (1 << 24) - 1 };

zt_status zt_tokenizer_reserve(zt_tokenizer *tok, int32_t max_id, size_t n_tokens) {
    if (max_id < 0 || max_id > TOKENIZER_MAX_ID)
        return zt_fail(ZT_ERR_FORMAT, "tokenizer: largest id %d is out of range [0, %d]",
                       (int)max_id, TOKENIZER_MAX_ID);
    size_t id_count = (size_t)max_id + 1;
    tok->id_count = (int32_t)id_count;
    tok->token_text = zt_calloc(id_count, sizeof *tok->token_text);
    tok->token_len = zt_calloc(id_count, sizeof *tok->token_len);
    tok->is_special = zt_calloc(id_count, 1);
    size_t slots = table_size_for(n_tokens);
    tok->vocab_slots = zt_malloc(slots * sizeof *tok->vocab_slots);
    if (!tok->token_text || !tok->token_len || !tok->is_special || !tok->vocab_slots)
        return zt_fail(ZT_ERR_NOMEM, "tokenizer: out of memory for %zu ids", id_count);
    memset(tok->vocab_slots, 0xFF, slots * sizeof *tok->vocab_slots); /* all -1 */
    tok->vocab_mask = slots - 1;
    return ZT_OK;
}

/* Slot holding `text`, or the empty slot where it would go. */
static size_t vocab_find_slot(const zt_tokenizer *tok, const char *text, size_t len) {
    size_t slot = (size_t)hash_bytes(text, len) & tok->vocab_mask;
    for (;;) {
        int32_t id = tok->vocab_slots[slot];
        if (id < 0) return slot;
        if (tok->token_len[id] == len && memcmp(tok->token_text[id], text, len) == 0) return slot;
        slot = (slot + 1) & tok->vocab_mask;
    }
}

int32_t zt_tokenizer_lookup(const zt_tokenizer *tok, const char *text, size_t len) {
    return tok->vocab_slots[vocab_find_slot(tok, text, len)];
}

static zt_status vocab_grow(zt_tokenizer *tok) {
    size_t old_size = tok->vocab_mask + 1;
    int32_t *old_slots = tok->vocab_slots;
    size_t new_size = old_size * 2;
    tok->vocab_slots = zt_malloc(new_size * sizeof *tok->vocab_slots);
    if (!tok->vocab_slots) {
        tok->vocab_slots = old_slots;
        return zt_fail(ZT_ERR_NOMEM, "tokenizer: out of memory growing the vocabulary table");
    }
    memset(tok->vocab_slots, 0xFF, new_size * sizeof *tok->vocab_slots);
    tok->vocab_mask = new_size - 1;
    for (size_t slot = 0; slot < old_size; slot++) {
        int32_t id = old_slots[slot];
        if (id >= 0)
            tok->vocab_slots[vocab_find_slot(tok, tok->token_text[id], tok->token_len[id])] = id;
    }
    free(old_slots);
    return ZT_OK;
}

zt_status zt_tokenizer_add_token(zt_tokenizer *tok, const char *text, size_t len, int32_t id,
                                 const char *where) {
    if (id < 0 || id >= tok->id_count)
        return zt_fail(ZT_ERR_FORMAT, "%s: id %d of \"%.*s\" is out of range", where, (int)id,
                       (int)len, text);
    if (len == 0) return zt_fail(ZT_ERR_FORMAT, "%s: empty token (id %d)", where, (int)id);
    if (len > UINT32_MAX) return zt_fail(ZT_ERR_FORMAT, "%s: token of id %d too long", where, id);
    /* Decoding walks spellings as UTF-8 (and tokenizers' JSON cannot hold anything else). */
    if (zt_utf8_valid_prefix((const uint8_t *)text, len) != len)
        return zt_fail(ZT_ERR_FORMAT, "%s: token of id %d is not valid UTF-8", where, (int)id);
    size_t slot = vocab_find_slot(tok, text, len);
    int32_t existing = tok->vocab_slots[slot];
    if (existing >= 0)
        return zt_fail(ZT_ERR_FORMAT, "%s: token \"%.*s\" appears twice (ids %d and %d)", where,
                       (int)len, text, (int)existing, (int)id);
    if (tok->token_text[id])
        return zt_fail(ZT_ERR_FORMAT, "%s: duplicate id %d, given to \"%s\" and \"%.*s\"", where,
                       (int)id, tok->token_text[id], (int)len, text);
    char *copy = zt_malloc(len + 1);
    if (!copy) return zt_fail(ZT_ERR_NOMEM, "tokenizer: out of memory");
    memcpy(copy, text, len);
    copy[len] = '\0';
    tok->token_text[id] = copy;
    tok->token_len[id] = (uint32_t)len;
    tok->vocab_slots[slot] = id;
    tok->vocab_used++;
    if (tok->vocab_used * 2 > tok->vocab_mask + 1) return vocab_grow(tok);
    return ZT_OK;
}

static zt_merge_slot *merge_find_slot(const zt_tokenizer *tok, uint64_t pair) {
    size_t slot = (size_t)hash_pair(pair) & tok->merge_mask;
    for (;;) {
        zt_merge_slot *entry = &tok->merge_slots[slot];
        if (entry->rank < 0 || entry->pair == pair) return entry;
        slot = (slot + 1) & tok->merge_mask;
    }
}

static const zt_merge_slot *merge_lookup(const zt_tokenizer *tok, int32_t left, int32_t right) {
    if (!tok->merge_slots) return NULL;
    const zt_merge_slot *entry = merge_find_slot(tok, pair_key(left, right));
    return entry->rank >= 0 ? entry : NULL;
}

static zt_status merges_resize(zt_tokenizer *tok, size_t new_size) {
    zt_merge_slot *old_slots = tok->merge_slots;
    size_t old_size = old_slots ? tok->merge_mask + 1 : 0;
    zt_merge_slot *slots = zt_malloc(new_size * sizeof *slots);
    if (!slots) return zt_fail(ZT_ERR_NOMEM, "tokenizer: out of memory for the merge table");
    for (size_t i = 0; i < new_size; i++)
        slots[i].rank = -1;
    tok->merge_slots = slots;
    tok->merge_mask = new_size - 1;
    for (size_t i = 0; i < old_size; i++)
        if (old_slots[i].rank >= 0) *merge_find_slot(tok, old_slots[i].pair) = old_slots[i];
    free(old_slots);
    return ZT_OK;
}

zt_status zt_tokenizer_add_merge(zt_tokenizer *tok, const char *left, size_t left_len,
                                 const char *right, size_t right_len, const char *where) {
    int32_t left_id = zt_tokenizer_lookup(tok, left, left_len);
    if (left_id < 0)
        return zt_fail(ZT_ERR_FORMAT, "%s: merge symbol \"%.*s\" is not in the vocabulary", where,
                       (int)left_len, left);
    int32_t right_id = zt_tokenizer_lookup(tok, right, right_len);
    if (right_id < 0)
        return zt_fail(ZT_ERR_FORMAT, "%s: merge symbol \"%.*s\" is not in the vocabulary", where,
                       (int)right_len, right);
    char stack_buffer[256];
    char *merged =
        left_len + right_len <= sizeof stack_buffer ? stack_buffer : zt_malloc(left_len + right_len);
    if (!merged) return zt_fail(ZT_ERR_NOMEM, "tokenizer: out of memory");
    memcpy(merged, left, left_len);
    memcpy(merged + left_len, right, right_len);
    int32_t merged_id = zt_tokenizer_lookup(tok, merged, left_len + right_len);
    zt_status status = ZT_OK;
    if (merged_id < 0)
        status = zt_fail(ZT_ERR_FORMAT, "%s: merged token \"%.*s\" is not in the vocabulary", where,
                         (int)(left_len + right_len), merged);
    if (merged != stack_buffer) free(merged);
    if (status != ZT_OK) return status;
    if (tok->merge_count >= INT32_MAX) return zt_fail(ZT_ERR_FORMAT, "%s: too many merges", where);
    if (!tok->merge_slots || (tok->merge_count + 1) * 2 > tok->merge_mask + 1)
        ZT_TRY(merges_resize(tok, tok->merge_slots ? (tok->merge_mask + 1) * 2 : 1024));
    zt_merge_slot *entry = merge_find_slot(tok, pair_key(left_id, right_id));
    /* A repeated pair keeps its last rank, as tokenizers' HashMap and GPT-2's dict do. */
    entry->pair = pair_key(left_id, right_id);
    entry->rank = (int32_t)tok->merge_count++;
    entry->merged_id = merged_id;
    return ZT_OK;
}

zt_status zt_tokenizer_add_added_token(zt_tokenizer *tok, int32_t id, bool special,
                                       const char *where) {
    if (id < 0 || id >= tok->id_count || !tok->token_text[id])
        return zt_fail(ZT_ERR_FORMAT, "%s: added token id %d has no spelling", where, (int)id);
    for (int i = 0; i < tok->added_count; i++) {
        if (tok->added[i].id == id) {
            tok->is_special[id] |= special;
            return ZT_OK;
        }
    }
    if (tok->added_count == tok->added_capacity) {
        int capacity = tok->added_capacity ? tok->added_capacity * 2 : 8;
        zt_added_token *grown = zt_realloc(tok->added, (size_t)capacity * sizeof *grown);
        if (!grown) return zt_fail(ZT_ERR_NOMEM, "tokenizer: out of memory");
        tok->added = grown;
        tok->added_capacity = capacity;
    }
    tok->added[tok->added_count++] =
        (zt_added_token){.text = tok->token_text[id], .len = tok->token_len[id], .id = id};
    tok->added_first_byte[(uint8_t)tok->token_text[id][0]] = 1;
    tok->is_special[id] = special;
    return ZT_OK;
}

zt_status zt_tokenizer_finish(zt_tokenizer *tok, const char *where) {
    for (int byte = 0; byte < 256; byte++)
        tok->byte_token_id[byte] =
            zt_tokenizer_lookup(tok, (const char *)tok->byte_text[byte], tok->byte_text_len[byte]);
    tok->bos_id = zt_tokenizer_token_id(tok, ZT_TOKENIZER_BOS_OPT);
    zt_status status = zt_pretokenizer_create(&tok->pretokenizer);
    if (status != ZT_OK) return zt_fail_context(status, "%s: ", where);
    return ZT_OK;
}

void zt_tokenizer_free(zt_tokenizer *tok) {
    if (!tok) return;
    if (tok->token_text)
        for (int32_t id = 0; id < tok->id_count; id++)
            free(tok->token_text[id]);
    free(tok->token_text);
    free(tok->token_len);
    free(tok->is_special);
    free(tok->vocab_slots);
    free(tok->merge_slots);
    free(tok->added);
    zt_pretokenizer_free(tok->pretokenizer);
    free(tok);
}

/* ---- accessors ------------------------------------------------------------------------------- */

int32_t zt_tokenizer_token_id(const zt_tokenizer *tok, const char *token) {
    if (!tok || !token || !tok->vocab_slots) return -1;
    return zt_tokenizer_lookup(tok, token, strlen(token));
}

const char *zt_tokenizer_token(const zt_tokenizer *tok, int32_t id) {
    if (!tok || id < 0 || id >= tok->id_count) return NULL;
    return tok->token_text[id];
}

int zt_tokenizer_is_special(const zt_tokenizer *tok, int32_t id) {
    if (!tok || id < 0 || id >= tok->id_count) return 0;
    return tok->is_special[id];
}

int zt_tokenizer_vocab_size(const zt_tokenizer *tok) {
    return tok ? tok->id_count : 0;
}

zt_status zt_tokenizer_set_bos_id(zt_tokenizer *tok, int32_t id) {
    if (!tok) return zt_fail(ZT_ERR_INVALID_ARG, "tokenizer: NULL tokenizer");
    if (id < 0 || id >= tok->id_count || !tok->token_text[id])
        return zt_fail(ZT_ERR_INVALID_ARG, "tokenizer: BOS id %d is not in the vocabulary",
                       (int)id);
    tok->bos_id = id;
    return ZT_OK;
}

zt_status zt_tokenizer_set_bos(zt_tokenizer *tok, const char *token) {
    if (!tok || !token) return zt_fail(ZT_ERR_INVALID_ARG, "tokenizer: NULL argument");
    int32_t id = zt_tokenizer_token_id(tok, token);
    if (id < 0)
        return zt_fail(ZT_ERR_INVALID_ARG, "tokenizer: BOS token \"%s\" is not in the vocabulary",
                       token);
    tok->bos_id = id;
    return ZT_OK;
}

int32_t zt_tokenizer_bos_id(const zt_tokenizer *tok) {
    return tok ? tok->bos_id : -1;
}

/* ---- encoding -------------------------------------------------------------------------------- */

typedef struct symbol {
    int32_t id;
    int32_t prev, next; /* neighbours in the linked word, -1 at the ends */
    int32_t alive;      /* 0 once merged into its left neighbour */
} symbol;

typedef struct merge_candidate {
    int32_t rank;
    int32_t pos; /* left symbol of the pair */
    int32_t merged_id;
} merge_candidate;

typedef struct encoder {
    const zt_tokenizer *tok;
    int32_t *ids;
    size_t n_ids, ids_capacity;
    symbol *symbols;
    merge_candidate *heap;
    size_t scratch_capacity; /* symbols for this many bytes; heap three times as many */
    uint8_t *text;           /* a piece spelled in byte-map characters (ignore_merges) */
    size_t text_capacity;
} encoder;

static zt_status emit_id(encoder *enc, int32_t id) {
    if (enc->n_ids == enc->ids_capacity) {
        size_t capacity = enc->ids_capacity ? enc->ids_capacity * 2 : 64;
        if (capacity > INT_MAX) capacity = INT_MAX;
        if (enc->n_ids >= capacity)
            return zt_fail(ZT_ERR_INVALID_ARG, "tokenizer: text encodes to over %d ids", INT_MAX);
        int32_t *grown = zt_realloc(enc->ids, capacity * sizeof *grown);
        if (!grown) return zt_fail(ZT_ERR_NOMEM, "tokenizer: out of memory for ids");
        enc->ids = grown;
        enc->ids_capacity = capacity;
    }
    enc->ids[enc->n_ids++] = id;
    return ZT_OK;
}

static zt_status ensure_text_capacity(encoder *enc, size_t needed) {
    if (needed <= enc->text_capacity) return ZT_OK;
    size_t capacity = needed * 2;
    uint8_t *grown = zt_realloc(enc->text, capacity);
    if (!grown) return zt_fail(ZT_ERR_NOMEM, "tokenizer: out of memory");
    enc->text = grown;
    enc->text_capacity = capacity;
    return ZT_OK;
}

static zt_status ensure_scratch(encoder *enc, size_t n_bytes) {
    if (n_bytes <= enc->scratch_capacity) return ZT_OK;
    if (n_bytes > INT32_MAX / 4)
        return zt_fail(ZT_ERR_INVALID_ARG, "tokenizer: piece of %zu bytes is too long", n_bytes);
    size_t capacity = n_bytes < 64 ? 64 : n_bytes * 2;
    if (capacity > INT32_MAX / 4) capacity = INT32_MAX / 4;
    free(enc->symbols);
    free(enc->heap);
    enc->symbols = zt_malloc(capacity * sizeof *enc->symbols);
    /* Each merge queues at most two pairs on top of the n - 1 initial ones. */
    enc->heap = zt_malloc(3 * capacity * sizeof *enc->heap);
    enc->scratch_capacity = enc->symbols && enc->heap ? capacity : 0;
    if (!enc->scratch_capacity) return zt_fail(ZT_ERR_NOMEM, "tokenizer: out of memory for BPE");
    return ZT_OK;
}

static int candidate_before(const merge_candidate *a, const merge_candidate *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(merge_candidate *heap, size_t *size, merge_candidate item) {
    size_t child = (*size)++;
    while (child > 0) {
        size_t parent = (child - 1) / 2;
        if (!candidate_before(&item, &heap[parent])) break;
        heap[child] = heap[parent];
        child = parent;
    }
    heap[child] = item;
}

static merge_candidate heap_pop(merge_candidate *heap, size_t *size) {
    merge_candidate top = heap[0];
    merge_candidate last = heap[--(*size)];
    size_t parent = 0;
    for (;;) {
        size_t child = 2 * parent + 1;
        if (child >= *size) break;
        if (child + 1 < *size && candidate_before(&heap[child + 1], &heap[child])) child++;
        if (!candidate_before(&heap[child], &last)) break;
        heap[parent] = heap[child];
        parent = child;
    }
    if (*size > 0) heap[parent] = last;
    return top;
}

static void queue_pair(const zt_tokenizer *tok, encoder *enc, size_t *heap_size, int32_t pos) {
    const symbol *left = &enc->symbols[pos];
    if (left->next < 0) return;
    const zt_merge_slot *merge = merge_lookup(tok, left->id, enc->symbols[left->next].id);
    if (merge)
        heap_push(
            enc->heap, heap_size,
            (merge_candidate){.rank = merge->rank, .pos = pos, .merged_id = merge->merged_id});
}

/* BPE on one pre-tokenized piece (raw bytes; each byte is one initial symbol). */
static zt_status encode_piece(const uint8_t *piece, size_t len, void *user) {
    encoder *enc = user;
    const zt_tokenizer *tok = enc->tok;
    if (tok->ignore_merges) {
        size_t spelled_len = 0;
        ZT_TRY(ensure_text_capacity(enc, 2 * len));
        for (size_t i = 0; i < len; i++) {
            memcpy(enc->text + spelled_len, tok->byte_text[piece[i]], tok->byte_text_len[piece[i]]);
            spelled_len += tok->byte_text_len[piece[i]];
        }
        int32_t whole = zt_tokenizer_lookup(tok, (const char *)enc->text, spelled_len);
        if (whole >= 0) return emit_id(enc, whole);
    }
    ZT_TRY(ensure_scratch(enc, len));
    symbol *symbols = enc->symbols;
    int32_t n = 0;
    int previous_was_unk = 0;
    for (size_t i = 0; i < len; i++) {
        int32_t id = tok->byte_token_id[piece[i]];
        int is_unk = id < 0;
        if (is_unk) {
            /* As tokenizers: an unknown character becomes unk_token, fused with an unknown
             * neighbour when fuse_unk, and vanishes when the model has no unk_token. */
            if (tok->unk_id < 0 || (tok->fuse_unk && previous_was_unk)) continue;
            id = tok->unk_id;
        }
        previous_was_unk = is_unk;
        symbols[n] = (symbol){.id = id, .prev = n - 1, .next = -1, .alive = 1};
        if (n > 0) symbols[n - 1].next = n;
        n++;
    }
    size_t heap_size = 0;
    for (int32_t pos = 0; pos + 1 < n; pos++)
        queue_pair(tok, enc, &heap_size, pos);
    while (heap_size > 0) {
        merge_candidate top = heap_pop(enc->heap, &heap_size);
        symbol *left = &symbols[top.pos];
        if (!left->alive || left->next < 0) continue;
        symbol *right = &symbols[left->next];
        /* Entries go stale when a neighbour merged since they were queued. */
        const zt_merge_slot *current = merge_lookup(tok, left->id, right->id);
        if (!current || current->merged_id != top.merged_id) continue;
        left->id = top.merged_id;
        right->alive = 0;
        left->next = right->next;
        if (right->next >= 0) symbols[right->next].prev = top.pos;
        if (left->prev >= 0) queue_pair(tok, enc, &heap_size, left->prev);
        queue_pair(tok, enc, &heap_size, top.pos);
    }
    for (int32_t pos = n > 0 ? 0 : -1; pos >= 0; pos = symbols[pos].next)
        ZT_TRY(emit_id(enc, symbols[pos].id));
    return ZT_OK;
}

/* A stretch of text between added tokens: optional prefix space, the regex split, BPE. */
static zt_status encode_segment(encoder *enc, const uint8_t *text, size_t len) {
    const zt_tokenizer *tok = enc->tok;
    if (len == 0) return ZT_OK;
    if (tok->add_prefix_space && text[0] != ' ') {
        /* A private copy: the piece callback reuses enc->text. */
        uint8_t *prefixed = zt_malloc(len + 1);
        if (!prefixed) return zt_fail(ZT_ERR_NOMEM, "tokenizer: out of memory");
        prefixed[0] = ' ';
        memcpy(prefixed + 1, text, len);
        zt_status status =
            tok->use_regex ? zt_pretokenize(tok->pretokenizer, prefixed, len + 1, encode_piece, enc)
                           : encode_piece(prefixed, len + 1, enc);
        free(prefixed);
        return status;
    }
    if (!tok->use_regex) return encode_piece(text, len, enc);
    return zt_pretokenize(tok->pretokenizer, text, len, encode_piece, enc);
}

/* Longest added token starting at text[pos], or NULL. */
static const zt_added_token *added_token_at(const zt_tokenizer *tok, const uint8_t *text,
                                            size_t len, size_t pos) {
    if (!tok->added_first_byte[text[pos]]) return NULL;
    const zt_added_token *best = NULL;
    for (int i = 0; i < tok->added_count; i++) {
        const zt_added_token *candidate = &tok->added[i];
        if (candidate->len <= len - pos && (!best || candidate->len > best->len) &&
            memcmp(text + pos, candidate->text, candidate->len) == 0)
            best = candidate;
    }
    return best;
}

zt_status zt_tokenizer_encode(const zt_tokenizer *tok, const char *text, size_t len, int add_bos,
                              int32_t **ids, int *n) {
    if (!tok || !ids || !n || (!text && len > 0))
        return zt_fail(ZT_ERR_INVALID_ARG, "tokenizer_encode: NULL argument");
    *ids = NULL;
    *n = 0;
    if (add_bos && tok->bos_id < 0)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "tokenizer_encode: BOS requested but the vocabulary has no \"%s\"; "
                       "choose one with zt_tokenizer_set_bos",
                       ZT_TOKENIZER_BOS_OPT);
    const uint8_t *input = (const uint8_t *)text;
    char *repaired = NULL;
    if (len > 0 && zt_utf8_valid_prefix(input, len) != len) {
        ZT_TRY(zt_utf8_repair(input, len, &repaired, &len));
        input = (const uint8_t *)repaired;
    }
    encoder enc = {.tok = tok};
    zt_status status = ZT_OK;
    if (add_bos) status = emit_id(&enc, tok->bos_id);
    size_t segment_start = 0;
    for (size_t pos = 0; pos < len && status == ZT_OK;) {
        const zt_added_token *added = added_token_at(tok, input, len, pos);
        if (!added) {
            pos++;
            continue;
        }
        status = encode_segment(&enc, input + segment_start, pos - segment_start);
        if (status == ZT_OK) status = emit_id(&enc, added->id);
        pos += added->len;
        segment_start = pos;
    }
    if (status == ZT_OK) status = encode_segment(&enc, input + segment_start, len - segment_start);
    if (status == ZT_OK && !enc.ids) { /* callers get a freeable array even for no ids */
        enc.ids = zt_malloc(sizeof *enc.ids);
        if (!enc.ids) status = zt_fail(ZT_ERR_NOMEM, "tokenizer: out of memory");
    }
    free(enc.symbols);
    free(enc.heap);
    free(enc.text);
    free(repaired);
    if (status != ZT_OK) {
        free(enc.ids);
        return status;
    }
    *ids = enc.ids;
    *n = (int)enc.n_ids;
    return ZT_OK;
}

/* ---- decoding -------------------------------------------------------------------------------- */

typedef struct byte_buffer {
    uint8_t *data;
    size_t len, capacity;
} byte_buffer;

static int buffer_append(byte_buffer *buffer, const void *data, size_t len) {
    if (buffer->len + len > buffer->capacity) {
        size_t capacity = (buffer->capacity + len) * 2;
        uint8_t *grown = zt_realloc(buffer->data, capacity);
        if (!grown) return 0;
        buffer->data = grown;
        buffer->capacity = capacity;
    }
    memcpy(buffer->data + buffer->len, data, len);
    buffer->len += len;
    return 1;
}

/* Appends the bytes a token spells. A token with a character outside the byte map (an added
 * token such as "<pad>" is all inside it, but need not be) contributes its UTF-8 spelling
 * unchanged, as tokenizers' ByteLevel decoder does. */
static int append_token_bytes(const zt_tokenizer *tok, byte_buffer *buffer, int32_t id) {
    const uint8_t *text = (const uint8_t *)tok->token_text[id];
    size_t len = tok->token_len[id];
    size_t start = buffer->len;
    for (size_t pos = 0; pos < len;) {
        uint32_t code_point = zt_utf8_next(text, &pos);
        int byte = code_point < ZT_BYTE_MAP_CODE_POINTS ? tok->char_to_byte[code_point] : -1;
        if (byte < 0) {
            buffer->len = start;
            return buffer_append(buffer, text, len);
        }
        uint8_t value = (uint8_t)byte;
        if (!buffer_append(buffer, &value, 1)) return 0;
    }
    return 1;
}

zt_status zt_tokenizer_decode_bytes(const zt_tokenizer *tok, const int32_t *ids, int n,
                                    int skip_special, char **text, size_t *text_len) {
    if (!tok || !text || (n > 0 && !ids) || n < 0)
        return zt_fail(ZT_ERR_INVALID_ARG, "tokenizer_decode: bad argument");
    *text = NULL;
    byte_buffer bytes = {0};
    for (int i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tok->id_count || !tok->token_text[id]) continue;
        if (skip_special && tok->is_special[id]) continue;
        if (!append_token_bytes(tok, &bytes, id)) {
            free(bytes.data);
            return zt_fail(ZT_ERR_NOMEM, "tokenizer_decode: out of memory");
        }
    }
    if (zt_utf8_valid_prefix(bytes.data, bytes.len) == bytes.len) {
        uint8_t terminator = 0;
        if (!buffer_append(&bytes, &terminator, 1)) {
            free(bytes.data);
            return zt_fail(ZT_ERR_NOMEM, "tokenizer_decode: out of memory");
        }
        *text = (char *)bytes.data;
        if (text_len) *text_len = bytes.len - 1;
        return ZT_OK;
    }
    /* Tokens can split a character (or a model can emit a stray byte): repair as tokenizers
     * does with String::from_utf8_lossy. */
    size_t len = 0;
    zt_status status = zt_utf8_repair(bytes.data, bytes.len, text, &len);
    free(bytes.data);
    if (status == ZT_OK && text_len) *text_len = len;
    return status;
}

zt_status zt_tokenizer_decode(const zt_tokenizer *tok, const int32_t *ids, int n, int skip_special,
                              char **text) {
    return zt_tokenizer_decode_bytes(tok, ids, n, skip_special, text, NULL);
}
