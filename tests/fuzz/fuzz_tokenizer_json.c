/* HF's tokenizer.json. An accepted file gives a tokenizer that passes fuzz_check_tokenizer: its
 * spellings and ids agree, encoding never fails, and decode(encode(x)) == x wherever the
 * vocabulary makes the byte-level BPE lossless. */
#include "fuzz_common.h"
#include "fuzz_tokenizer_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fuzz_put("tokenizer.json", data, size, path, sizeof path);
    zt_tokenizer *tok = NULL;
    fuzz_expect_begin();
    zt_status s = zt_tokenizer_load_json(path, &tok);
    fuzz_check_loaded(s, tok, "zt_tokenizer_load_json");
    return 0;
}
