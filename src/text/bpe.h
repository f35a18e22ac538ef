/* The GPT-2 byte-level BPE tokenizer as OPT uses it (docs/spec.md §3), with id-for-id parity against
 * HuggingFace `tokenizers` (the fast tokenizer; tests/fixtures/tokenizer holds its golden ids).
 *
 * Encoding: invalid UTF-8 becomes U+FFFD per maximal subpart (as Python's
 * bytes.decode("utf-8", "replace")); added/special tokens ("</s>", "<pad>", ...) are cut out
 * first and map straight to their ids; the rest is split by the GPT-2 regex (with \p{L}, \p{N}
 * and \s pinned to tokenizers' Unicode tables, src/text/unicode_classes.c), each piece's bytes go
 * through the byte-to-unicode map and the BPE merges. Decoding reverses the byte map and repairs
 * invalid UTF-8 the same way.
 *
 * A loaded tokenizer is immutable except for the BOS setting; encode/decode on one tokenizer
 * may run from many threads at once. Arrays and strings returned are malloc'd: free() them. */
#ifndef ZT_TEXT_BPE_H
#define ZT_TEXT_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "zotune.h"

typedef struct zt_tokenizer zt_tokenizer;

/* The two BOS conventions of docs/spec.md §3.1 / §9 A1: OPT prepends "</s>" (id 2, the default);
 * MeZO sets bos_token_id = 0, i.e. "<s>", and reproducing its numbers needs that. */
#define ZT_TOKENIZER_BOS_OPT "</s>"
#define ZT_TOKENIZER_BOS_MEZO "<s>"

/* The slow-tokenizer files. "<s>", "<pad>", "</s>", "<unk>" (and GPT-2's "<|endoftext|>") that
 * appear in the vocabulary become special tokens: literal occurrences in text map to their ids.
 * Errors: ZT_ERR_MISSING (no such file), ZT_ERR_IO, ZT_ERR_FORMAT naming the file (invalid JSON,
 * non-integer or duplicate ids) or file:line (a merges line that is not two symbols, a symbol or
 * merged token missing from the vocabulary). */
zt_status zt_tokenizer_load_files(const char *vocab_json_path, const char *merges_txt_path,
                                  zt_tokenizer **out);

/* A checkpoint or tokenizer directory: DIR/tokenizer.json when present (HF's fast format: a
 * ByteLevel pre-tokenizer, a BPE model whose merges are "a b" strings or ["a", "b"] pairs, and
 * added_tokens), otherwise DIR/vocab.json + DIR/merges.txt. */
zt_status zt_tokenizer_load_dir(const char *dir, zt_tokenizer **out);
/* A model directory's tokenizer, the one place train and eval open it: *out is NULL (and the
 * status ZT_OK) when the directory has none, since such a model reads pre-tokenized data only.
 * bos_mezo makes "<s>" the BOS, MeZO's tokenizer fix (zt_tokenizer_set_bos). */
zt_status zt_tokenizer_open_model_dir(const char *dir, int bos_mezo, zt_tokenizer **out);
/* Just the tokenizer.json loader. */
zt_status zt_tokenizer_load_json(const char *tokenizer_json_path, zt_tokenizer **out);

void zt_tokenizer_free(zt_tokenizer *tok);

/* Encodes `len` bytes of `text` (need not be NUL-terminated or valid UTF-8). With add_bos the
 * BOS id (see zt_tokenizer_set_bos) comes first. *ids is malloc'd (non-NULL even when *n == 0). */
zt_status zt_tokenizer_encode(const zt_tokenizer *tok, const char *text, size_t len, int add_bos,
                              int32_t **ids, int *n);

/* Decodes ids to NUL-terminated UTF-8. Ids outside the vocabulary are skipped, as tokenizers
 * does (the model's embedding has more rows than the tokenizer has tokens); with skip_special,
 * special tokens are skipped too. The text may hold NUL bytes (the token for byte 0): use
 * zt_tokenizer_decode_bytes when that matters. */
zt_status zt_tokenizer_decode(const zt_tokenizer *tok, const int32_t *ids, int n, int skip_special,
                              char **text);
/* The same with the byte length of the text (excluding the terminating NUL). */
zt_status zt_tokenizer_decode_bytes(const zt_tokenizer *tok, const int32_t *ids, int n,
                                    int skip_special, char **text, size_t *text_len);

/* Id of a token given in its vocabulary spelling ("</s>", "Ġthe"), or -1 if absent. */
int32_t zt_tokenizer_token_id(const zt_tokenizer *tok, const char *token);
/* Vocabulary spelling of an id (NUL-terminated; byte-level spellings never contain NUL), or NULL
 * when the id is not in the vocabulary. */
const char *zt_tokenizer_token(const zt_tokenizer *tok, int32_t id);
/* 1 if `id` is a special token (cut out of text literally, dropped by skip_special). */
int zt_tokenizer_is_special(const zt_tokenizer *tok, int32_t id);
/* Size of the id space: largest id + 1 (50265 for OPT; the model has 50272 rows). */
int zt_tokenizer_vocab_size(const zt_tokenizer *tok);

/* Which token add_bos prepends: by spelling (ZT_TOKENIZER_BOS_OPT, ZT_TOKENIZER_BOS_MEZO) or by
 * id. Fails with ZT_ERR_INVALID_ARG when the token is not in the vocabulary. The default is
 * "</s>" when the vocabulary has it, else none (encode with add_bos then fails). */
zt_status zt_tokenizer_set_bos(zt_tokenizer *tok, const char *token);
zt_status zt_tokenizer_set_bos_id(zt_tokenizer *tok, int32_t id);
int32_t zt_tokenizer_bos_id(const zt_tokenizer *tok);

/* The GPT-2 byte-to-unicode map (docs/spec.md §3.2): the code point byte b is written as inside tokens
 * (0x20 -> U+0120 'Ġ', 0x0A -> U+010A 'Ċ', 'a' -> 'a'), and its inverse (-1 for a code point
 * that no byte maps to). */
uint32_t zt_byte_to_unicode(uint8_t byte);
int zt_unicode_to_byte(uint32_t code_point);

#endif
