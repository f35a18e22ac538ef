/* The checks a freshly loaded tokenizer must pass, whichever file format it came from. */
#ifndef ZT_FUZZ_TOKENIZER_CHECK_H
#define ZT_FUZZ_TOKENIZER_CHECK_H

#include "text/bpe.h"

/* Every spelling looks up to its own id and decodes to valid UTF-8; encoding never fails and
 * gives ids that exist; and when the tokenizer is lossless by construction (a token for every
 * byte, no prefix space, added tokens that decode to their own spelling) decode(encode(x)) == x
 * for valid UTF-8 x. */
void fuzz_check_tokenizer(const zt_tokenizer *tok);

/* After a load: a failure is reported and hands out nothing; a success passes
 * fuzz_check_tokenizer. Frees the tokenizer. */
void fuzz_check_loaded(zt_status status, zt_tokenizer *tok, const char *call);

/* Whether decode(encode(x)) == x must hold for every valid UTF-8 x. */
int fuzz_tokenizer_lossless(const zt_tokenizer *tok);

/* Encodes text (with and without BOS), checks the ids and decodes them back: valid UTF-8
 * always, and the text itself when it is valid UTF-8 and `lossless`. */
void fuzz_check_roundtrip(const zt_tokenizer *tok, const uint8_t *text, size_t len, int lossless);

#endif
