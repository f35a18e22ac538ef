/* The slow-tokenizer files, vocab.json and merges.txt, cut from one input at FUZZ_SEPARATOR
 * (no separator: an empty merges.txt). An accepted pair gives a tokenizer that passes
 * fuzz_check_tokenizer, as tokenizer.json does. */
#include "fuzz_common.h"
#include "fuzz_tokenizer_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *parts[2];
    size_t sizes[2];
    fuzz_split(data, size, parts, sizes, 2);
    char vocab[512], merges[512];
    fuzz_put("vocab.json", parts[0], sizes[0], vocab, sizeof vocab);
    fuzz_put("merges.txt", parts[1], sizes[1], merges, sizeof merges);
    zt_tokenizer *tok = NULL;
    fuzz_expect_begin();
    zt_status s = zt_tokenizer_load_files(vocab, merges, &tok);
    fuzz_check_loaded(s, tok, "zt_tokenizer_load_files");
    return 0;
}
