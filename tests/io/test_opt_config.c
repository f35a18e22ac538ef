/* config.json: the two released layer-norm layouts, HF defaults, every refusal, write-read. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "opt/opt_config.h"
#include "zt_test.h"

static char temp_dir[64];
static char config_path[128];

static void write_text(const char *path, const char *text) {
    FILE *stream = fopen(path, "wb");
    if (!stream || fputs(text, stream) < 0 || fclose(stream) != 0) {
        fprintf(stderr, "FATAL: cannot write %s\n", path);
        exit(1);
    }
}

/* Shaped like the hub's facebook/opt-125m config.json. */
static const char opt_125m[] = "{\n"
                               "  \"_name_or_path\": \"facebook/opt-125m\",\n"
                               "  \"activation_dropout\": 0.0,\n"
                               "  \"activation_function\": \"relu\",\n"
                               "  \"architectures\": [\"OPTForCausalLM\"],\n"
                               "  \"attention_dropout\": 0.0,\n"
                               "  \"bos_token_id\": 2,\n"
                               "  \"do_layer_norm_before\": true,\n"
                               "  \"dropout\": 0.1,\n"
                               "  \"eos_token_id\": 2,\n"
                               "  \"ffn_dim\": 3072,\n"
                               "  \"hidden_size\": 768,\n"
                               "  \"init_std\": 0.02,\n"
                               "  \"layerdrop\": 0.0,\n"
                               "  \"max_position_embeddings\": 2048,\n"
                               "  \"model_type\": \"opt\",\n"
                               "  \"num_attention_heads\": 12,\n"
                               "  \"num_hidden_layers\": 12,\n"
                               "  \"pad_token_id\": 1,\n"
                               "  \"prefix\": \"</s>\",\n"
                               "  \"torch_dtype\": \"float16\",\n"
                               "  \"transformers_version\": \"4.21.0.dev0\",\n"
                               "  \"use_cache\": true,\n"
                               "  \"vocab_size\": 50272,\n"
                               "  \"word_embed_proj_dim\": 768\n"
                               "}\n";

/* 350m: post-LN and a 512-wide embedding projected to 1024; optional keys left out. */
static const char opt_350m[] = "{\"vocab_size\": 50272, \"hidden_size\": 1024, "
                               "\"num_hidden_layers\": 24, \"num_attention_heads\": 16, "
                               "\"ffn_dim\": 4096, \"max_position_embeddings\": 2048, "
                               "\"word_embed_proj_dim\": 512, \"do_layer_norm_before\": false}";

static void test_released_layouts(void) {
    zt_opt_config cfg;
    write_text(config_path, opt_125m);
    ZT_REQUIRE_OK(zt_opt_config_load(config_path, &cfg));
    ZT_CHECK(cfg.vocab_size == 50272 && cfg.hidden_size == 768 && cfg.num_hidden_layers == 12 &&
                 cfg.num_attention_heads == 12 && cfg.ffn_dim == 3072 &&
                 cfg.max_position_embeddings == 2048,
             "125m sizes");
    ZT_CHECK(cfg.word_embed_proj_dim == 768, "125m word_embed_proj_dim %d",
             cfg.word_embed_proj_dim);
    ZT_CHECK(cfg.do_layer_norm_before == 1 && cfg.enable_bias == 1 &&
                 cfg.layer_norm_elementwise_affine == 1 && cfg.remove_final_layer_norm == 0,
             "125m flags");
    ZT_CHECK(cfg.bos_token_id == 2 && cfg.eos_token_id == 2 && cfg.pad_token_id == 1,
             "125m tokens");
    ZT_CHECK(strcmp(cfg.torch_dtype, "float16") == 0, "125m torch_dtype %s", cfg.torch_dtype);

    write_text(config_path, opt_350m);
    ZT_REQUIRE_OK(zt_opt_config_load(config_path, &cfg));
    ZT_CHECK(cfg.hidden_size == 1024 && cfg.num_hidden_layers == 24 &&
                 cfg.num_attention_heads == 16 && cfg.ffn_dim == 4096,
             "350m sizes");
    ZT_CHECK(cfg.word_embed_proj_dim == 512, "350m word_embed_proj_dim %d",
             cfg.word_embed_proj_dim);
    ZT_CHECK(cfg.do_layer_norm_before == 0, "350m is post-LN");
    ZT_CHECK(cfg.enable_bias == 1 && cfg.layer_norm_elementwise_affine == 1 &&
                 cfg.remove_final_layer_norm == 0,
             "350m default flags");
    ZT_CHECK(cfg.bos_token_id == 2 && cfg.eos_token_id == 2 && cfg.pad_token_id == 1,
             "350m default tokens");
    ZT_CHECK(cfg.torch_dtype[0] == '\0', "absent torch_dtype reads as \"\": %s", cfg.torch_dtype);

    /* null means "same as hidden_size" in HF. */
    write_text(config_path, "{\"vocab_size\": 100, \"hidden_size\": 64, \"num_hidden_layers\": 2, "
                            "\"num_attention_heads\": 4, \"ffn_dim\": 256, "
                            "\"max_position_embeddings\": 32, \"word_embed_proj_dim\": null, "
                            "\"_remove_final_layer_norm\": true, \"enable_bias\": false, "
                            "\"layer_norm_elementwise_affine\": false, \"dtype\": \"bfloat16\", "
                            "\"bos_token_id\": 0, \"pad_token_id\": 99}");
    ZT_REQUIRE_OK(zt_opt_config_load(config_path, &cfg));
    ZT_CHECK(cfg.word_embed_proj_dim == 64, "null word_embed_proj_dim -> %d",
             cfg.word_embed_proj_dim);
    ZT_CHECK(cfg.remove_final_layer_norm == 1 && cfg.enable_bias == 0 &&
                 cfg.layer_norm_elementwise_affine == 0,
             "explicit flags");
    ZT_CHECK(strcmp(cfg.torch_dtype, "bfloat16") == 0, "\"dtype\" key: %s", cfg.torch_dtype);
    ZT_CHECK(cfg.bos_token_id == 0 && cfg.pad_token_id == 99, "explicit tokens");
}

/* A small valid config with one key replaced (or, with replacement NULL, removed). */
static void write_variant(const char *key, const char *replacement) {
    const char *keys[] = {"vocab_size",          "hidden_size", "num_hidden_layers",
                          "num_attention_heads", "ffn_dim",     "max_position_embeddings"};
    const char *values[] = {"100", "64", "2", "4", "256", "32"};
    char text[1024] = "{";
    int n_keys = (int)(sizeof keys / sizeof keys[0]);
    bool first = true;
    for (int i = 0; i < n_keys; i++) {
        const char *value = values[i];
        if (strcmp(keys[i], key) == 0) {
            if (!replacement) continue;
            value = replacement;
        }
        snprintf(text + strlen(text), sizeof text - strlen(text), "%s\"%s\": %s", first ? "" : ", ",
                 keys[i], value);
        first = false;
    }
    bool listed = false;
    for (int i = 0; i < n_keys; i++)
        listed |= strcmp(keys[i], key) == 0;
    if (!listed && replacement)
        snprintf(text + strlen(text), sizeof text - strlen(text), ", \"%s\": %s", key, replacement);
    strcat(text, "}");
    write_text(config_path, text);
}

static void expect_failure(const char *case_name, zt_status status, const char *fragment1,
                           const char *fragment2) {
    zt_opt_config cfg;
    zt_status got = zt_opt_config_load(config_path, &cfg);
    const char *message = zt_last_error();
    ZT_CHECK(got == status, "%s: status %s, want %s (%s)", case_name, zt_status_name(got),
             zt_status_name(status), message);
    ZT_CHECK(strstr(message, config_path) != NULL, "%s: message lacks the path: %s", case_name,
             message);
    ZT_CHECK(strstr(message, fragment1) != NULL, "%s: message lacks \"%s\": %s", case_name,
             fragment1, message);
    ZT_CHECK(!fragment2 || strstr(message, fragment2) != NULL, "%s: message lacks \"%s\": %s",
             case_name, fragment2, message);
}

static void test_errors(void) {
    const zt_status F = ZT_ERR_FORMAT;
    write_variant("none", NULL);
    zt_opt_config cfg;
    ZT_REQUIRE_OK(zt_opt_config_load(config_path, &cfg));

    unlink(config_path);
    expect_failure("absent file", ZT_ERR_MISSING, "cannot open", NULL);
    ZT_CHECK(zt_opt_config_load(temp_dir, &cfg) != ZT_OK, "a directory loads as a config");

    write_text(config_path, "{\n  \"vocab_size\": 100,\n  \"hidden_size\": \n}\n");
    expect_failure("invalid JSON", F, ":4: invalid JSON", NULL);
    write_variant("hidden_size", "64, \"hidden_size\": 128");
    expect_failure("duplicate key", F, "key \"hidden_size\" appears twice", NULL);
    write_text(config_path, "[1, 2]");
    expect_failure("array", F, "not a JSON object", NULL);

    const char *required[] = {"vocab_size",          "hidden_size", "num_hidden_layers",
                              "num_attention_heads", "ffn_dim",     "max_position_embeddings"};
    for (int i = 0; i < 6; i++) {
        write_variant(required[i], NULL);
        expect_failure("missing key", ZT_ERR_MISSING, "missing required key", required[i]);
        write_variant(required[i], "\"64\"");
        expect_failure("string size", F, required[i], "must be an integer, got a string");
        write_variant(required[i], "0");
        expect_failure("zero size", F, required[i], "must be positive");
        write_variant(required[i], "-3");
        expect_failure("negative size", F, required[i], "must be positive");
    }
    write_variant("hidden_size", "64.5");
    expect_failure("fractional", F, "hidden_size", "must be an integer");
    write_variant("hidden_size", "1e12");
    expect_failure("too large", F, "hidden_size", "out of range");
    write_variant("hidden_size", "null");
    expect_failure("null size", F, "hidden_size", "got null");
    write_variant("num_attention_heads", "5");
    expect_failure("indivisible heads", F, "hidden_size 64 is not divisible", "5");
    write_variant("word_embed_proj_dim", "0");
    expect_failure("zero projection", F, "word_embed_proj_dim", "must be positive");
    write_variant("word_embed_proj_dim", "\"512\"");
    expect_failure("string projection", F, "word_embed_proj_dim", "must be an integer");
    write_variant("do_layer_norm_before", "1");
    expect_failure("int as bool", F, "do_layer_norm_before", "must be true or false");
    write_variant("enable_bias", "\"true\"");
    expect_failure("string as bool", F, "enable_bias", "must be true or false");
    write_variant("activation_function", "\"gelu\"");
    expect_failure("gelu", F, "activation_function", "\"gelu\"");
    write_variant("activation_function", "7");
    expect_failure("activation not string", F, "activation_function", "must be a string");
    write_variant("model_type", "\"gpt2\"");
    expect_failure("model_type", F, "model_type", "\"gpt2\"");
    write_variant("torch_dtype", "\"float64\"");
    expect_failure("float64", F, "torch_dtype", "float64");
    write_variant("torch_dtype", "16");
    expect_failure("dtype not string", F, "torch_dtype", "must be a string");
    write_variant("pad_token_id", "100");
    expect_failure("pad outside vocab", F, "pad_token_id 100", "outside the vocabulary");
    write_variant("bos_token_id", "-1");
    expect_failure("negative bos", F, "bos_token_id -1", "outside the vocabulary");
    write_variant("eos_token_id", "\"2\"");
    expect_failure("eos as string", F, "eos_token_id", "must be an integer");
    write_text(config_path, "{\"vocab_size\": 100, \"hidden_size\": 64, \"hidden_size\": 32, "
                            "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                            "\"ffn_dim\": 256, \"max_position_embeddings\": 32}");
    expect_failure("duplicate key", F, "\"hidden_size\" appears twice", NULL);
}

static bool configs_equal(const zt_opt_config *a, const zt_opt_config *b) {
    return a->vocab_size == b->vocab_size && a->hidden_size == b->hidden_size &&
           a->num_hidden_layers == b->num_hidden_layers &&
           a->num_attention_heads == b->num_attention_heads && a->ffn_dim == b->ffn_dim &&
           a->max_position_embeddings == b->max_position_embeddings &&
           a->word_embed_proj_dim == b->word_embed_proj_dim &&
           a->do_layer_norm_before == b->do_layer_norm_before && a->enable_bias == b->enable_bias &&
           a->layer_norm_elementwise_affine == b->layer_norm_elementwise_affine &&
           a->remove_final_layer_norm == b->remove_final_layer_norm &&
           a->bos_token_id == b->bos_token_id && a->eos_token_id == b->eos_token_id &&
           a->pad_token_id == b->pad_token_id && strcmp(a->torch_dtype, b->torch_dtype) == 0;
}

static void test_round_trip(void) {
    char written[160];
    snprintf(written, sizeof written, "%s/written.json", temp_dir);
    const char *sources[] = {opt_125m, opt_350m};
    for (int i = 0; i < 2; i++) {
        zt_opt_config original, reread;
        write_text(config_path, sources[i]);
        ZT_REQUIRE_OK(zt_opt_config_load(config_path, &original));
        ZT_REQUIRE_OK(zt_opt_config_write(written, &original));
        ZT_REQUIRE_OK(zt_opt_config_load(written, &reread));
        ZT_CHECK(configs_equal(&original, &reread), "round trip %d differs", i);
    }
    zt_opt_config custom;
    write_text(config_path, opt_125m);
    ZT_REQUIRE_OK(zt_opt_config_load(config_path, &custom));
    custom.remove_final_layer_norm = 1;
    custom.enable_bias = 0;
    custom.bos_token_id = 0;
    snprintf(custom.torch_dtype, sizeof custom.torch_dtype, "bfloat16");
    ZT_REQUIRE_OK(zt_opt_config_write(written, &custom));
    zt_opt_config reread;
    ZT_REQUIRE_OK(zt_opt_config_load(written, &reread));
    ZT_CHECK(configs_equal(&custom, &reread), "custom round trip differs");

    /* transformers needs these to pick OPTForCausalLM and its behaviour. */
    FILE *stream = fopen(written, "rb");
    char text[4096] = {0};
    size_t n = fread(text, 1, sizeof text - 1, stream);
    fclose(stream);
    ZT_CHECK(n > 0, "empty config written");
    const char *expected[] = {"\"model_type\": \"opt\"",
                              "\"OPTForCausalLM\"",
                              "\"activation_function\": \"relu\"",
                              "\"dropout\": 0.1",
                              "\"attention_dropout\": 0.0",
                              "\"init_std\": 0.02",
                              "\"layerdrop\": 0.0",
                              "\"use_cache\": true",
                              "\"prefix\": \"</s>\"",
                              "\"torch_dtype\": \"bfloat16\"",
                              "\"enable_bias\": false"};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        ZT_CHECK(strstr(text, expected[i]) != NULL, "written config lacks %s", expected[i]);
    char tmp_path[200];
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp", written);
    ZT_CHECK(access(tmp_path, F_OK) != 0, "%s left behind", tmp_path);

    custom.num_attention_heads = 7;
    ZT_CHECK(zt_opt_config_write(written, &custom) == ZT_ERR_INVALID_ARG, "invalid config written");
    ZT_CHECK(strstr(zt_last_error(), written) && strstr(zt_last_error(), "divisible"),
             "write refusal message: %s", zt_last_error());
    ZT_REQUIRE_OK(zt_opt_config_load(written, &reread));
    ZT_CHECK(reread.num_attention_heads == 12, "a refused write changed the file");
    unlink(written);
}

int main(void) {
    snprintf(temp_dir, sizeof temp_dir, "/tmp/zt_test_cfg_XXXXXX");
    if (!mkdtemp(temp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(config_path, sizeof config_path, "%s/config.json", temp_dir);
    test_released_layouts();
    test_errors();
    test_round_trip();
    unlink(config_path);
    rmdir(temp_dir);
    return zt_test_finish("test_opt_config");
}
