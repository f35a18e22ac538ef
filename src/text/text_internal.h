/* Pieces shared by the tokenizer's source files; not part of the text API (bpe.h). */
#ifndef ZT_TEXT_INTERNAL_H
#define ZT_TEXT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "zotune.h"

/* ---- Unicode classes of the pre-tokenization regex (unicode_classes.c, generated) ------------ */

typedef struct zt_code_point_range {
    uint32_t first, last; /* inclusive */
} zt_code_point_range;

extern const zt_code_point_range zt_unicode_letter_ranges[]; /* \p{L} */
extern const size_t zt_unicode_letter_ranges_count;
extern const zt_code_point_range zt_unicode_number_ranges[]; /* \p{N} */
extern const size_t zt_unicode_number_ranges_count;
extern const zt_code_point_range zt_unicode_space_ranges[]; /* \s */
extern const size_t zt_unicode_space_ranges_count;

/* ---- UTF-8 (utf8.c) -------------------------------------------------------------------------- */

/* Length of the longest valid UTF-8 prefix of text[0..len). */
size_t zt_utf8_valid_prefix(const uint8_t *text, size_t len);

/* Copies text[0..len) into a new NUL-terminated buffer, each maximal subpart of an ill-formed
 * sequence replaced by U+FFFD: the rule of Python's bytes.decode("utf-8", "replace") and Rust's
 * String::from_utf8_lossy. */
zt_status zt_utf8_repair(const uint8_t *text, size_t len, char **out, size_t *out_len);

/* Decodes one code point of VALID UTF-8 at text[*pos], advancing *pos. */
uint32_t zt_utf8_next(const uint8_t *text, size_t *pos);

/* Writes code_point as UTF-8 into out (room for 4) and returns the byte count. */
int zt_utf8_put(uint32_t code_point, uint8_t *out);

/* ---- Pre-tokenization (pretokenize.c) -------------------------------------------------------- */

typedef struct zt_pretokenizer zt_pretokenizer;

/* Compiles the GPT-2 split regex (docs/spec.md §3.3) with explicit Unicode classes. */
zt_status zt_pretokenizer_create(zt_pretokenizer **out);
void zt_pretokenizer_free(zt_pretokenizer *pretokenizer);

/* Called for each piece, in order; the pieces tile the text. Nonzero return aborts the split
 * and is passed on as the status. */
typedef zt_status (*zt_piece_fn)(const uint8_t *piece, size_t len, void *user);

/* Splits VALID UTF-8 text into pieces. Thread-safe on a shared pretokenizer. */
zt_status zt_pretokenize(const zt_pretokenizer *pretokenizer, const uint8_t *text, size_t len,
                         zt_piece_fn on_piece, void *user);

/* ---- The tokenizer (bpe.c holds the model, bpe_load.c the file formats) ---------------------- */

#include <stdbool.h>

#include "text/bpe.h"

/* One BPE merge: the pair (left id << 32 | right id), its rank (lower merges first) and the id
 * of the merged token. rank < 0 marks an empty hash slot. */
typedef struct zt_merge_slot {
    uint64_t pair;
    int32_t rank;
    int32_t merged_id;
} zt_merge_slot;

typedef struct zt_added_token {
    const char *text; /* points into the tokenizer's token_text */
    size_t len;
    int32_t id;
} zt_added_token;

enum { ZT_BYTE_MAP_CODE_POINTS = 0x144 }; /* the byte map's image lies below U+0144 */

struct zt_tokenizer {
    /* id -> spelling; holes (ids no token has) are NULL */
    int32_t id_count;
    char **token_text;
    uint32_t *token_len;
    uint8_t *is_special;
    /* spelling -> id: open addressing over ids, -1 = empty */
    int32_t *vocab_slots;
    size_t vocab_mask;
    size_t vocab_used;
    /* (left, right) -> merge */
    zt_merge_slot *merge_slots;
    size_t merge_mask;
    size_t merge_count;
    /* byte b -> id of the one-character token spelling it (-1 if missing), and its spelling */
    int32_t byte_token_id[256];
    uint8_t byte_text[256][2];
    uint8_t byte_text_len[256];
    int16_t char_to_byte[ZT_BYTE_MAP_CODE_POINTS]; /* -1: no byte */
    /* added tokens, cut out of text before pre-tokenization (longest match first) */
    zt_added_token *added;
    int added_count;
    int added_capacity;
    uint8_t added_first_byte[256];
    int32_t bos_id;
    /* options of tokenizer.json (vocab.json + merges.txt: GPT-2's fixed choices) */
    int32_t unk_id; /* unknown characters become this, or are dropped when -1 */
    bool fuse_unk;
    bool ignore_merges;    /* a piece that is itself in the vocabulary skips the merges */
    bool add_prefix_space; /* a space goes before each text segment not starting with one */
    bool use_regex;        /* false: each segment is one piece */
    zt_pretokenizer *pretokenizer;
};

/* Building a tokenizer (bpe.c). `where` names the file position for error messages. */
zt_status zt_tokenizer_create_empty(zt_tokenizer **out);
/* Sizes the tables for ids 0..max_id and about n_tokens spellings; call once, before adding. */
zt_status zt_tokenizer_reserve(zt_tokenizer *tok, int32_t max_id, size_t n_tokens);
zt_status zt_tokenizer_add_token(zt_tokenizer *tok, const char *text, size_t len, int32_t id,
                                 const char *where);
/* Merges are ranked in the order added; a repeated pair takes its last rank (as tokenizers). */
zt_status zt_tokenizer_add_merge(zt_tokenizer *tok, const char *left, size_t left_len,
                                 const char *right, size_t right_len, const char *where);
/* Registers an existing token as an added token, cut out of text literally. */
zt_status zt_tokenizer_add_added_token(zt_tokenizer *tok, int32_t id, bool special,
                                       const char *where);
/* After all tokens and merges: byte tables, default BOS, the regex. */
zt_status zt_tokenizer_finish(zt_tokenizer *tok, const char *where);
int32_t zt_tokenizer_lookup(const zt_tokenizer *tok, const char *text, size_t len);

#endif
