/* config.json of the OPT family. An accepted config passes the validator the writer and random
 * models use, and survives the writer: loading what zt_opt_config_write wrote gives the same
 * config field for field. A refused one says why. */
#include <string.h>

#include "fuzz_common.h"
#include "opt/opt_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512], copy_path[512];
    fuzz_put("config.json", data, size, path, sizeof path);
    fuzz_path(copy_path, sizeof copy_path, "written.json");
    zt_opt_config cfg;
    memset(&cfg, 0xA5, sizeof cfg);
    fuzz_expect_begin();
    zt_status s = zt_opt_config_load(path, &cfg);
    fuzz_expect_reported(s, "zt_opt_config_load");
    if (s != ZT_OK) return 0;

    FUZZ_CHECK(zt_opt_config_validate("fuzz", &cfg, ZT_ERR_FORMAT) == ZT_OK,
               "the loader accepted a config its validator refuses");
    FUZZ_CHECK(cfg.hidden_size % cfg.num_attention_heads == 0 && cfg.vocab_size > 0 &&
                   cfg.pad_token_id < cfg.vocab_size,
               "an accepted config breaks the documented rules");
    fuzz_expect_begin();
    s = zt_opt_config_write(copy_path, &cfg);
    FUZZ_CHECK(s == ZT_OK, "the writer refuses an accepted config: %s", zt_last_error());
    zt_opt_config again;
    memset(&again, 0x5A, sizeof again);
    s = zt_opt_config_load(copy_path, &again);
    FUZZ_CHECK(s == ZT_OK, "the written config does not load: %s", zt_last_error());
    FUZZ_CHECK(memcmp(&cfg, &again, sizeof cfg) == 0, "the config changed through the writer");
    return 0;
}
