/* zt_model_open_published_size: OPT's eight published sizes built from an opt-125m-shaped model
 * have the parameter counts Meta published (docs/spec.md §1.1, bench/bench_common.h) and the
 * same weights and memory plan as a config.json of that size opened from disk; from a tiny model
 * they keep its vocabulary and positions (again equal to a config.json written with them); and
 * indices outside the table are refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../bench/bench_common.h"
#include "backend.h"
#include "model.h"
#include "zt_test.h"

static char tmp_dir[] = "/tmp/zt_published_sizes_XXXXXX";

/* config.json of size z with the given vocabulary and positions; returns its path. */
static const char *write_config(const bench_opt_size *z, int vocab, int positions) {
    static char path[256];
    snprintf(path, sizeof path, "%s/config.json", tmp_dir);
    FILE *f = fopen(path, "w");
    ZT_REQUIRE(f != NULL, "%s", path);
    fprintf(f,
            "{\"model_type\": \"opt\", \"vocab_size\": %d, \"hidden_size\": %d, "
            "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"ffn_dim\": %d, "
            "\"max_position_embeddings\": %d, \"word_embed_proj_dim\": %d, "
            "\"do_layer_norm_before\": %s}\n",
            vocab, z->hidden, z->layers, z->heads, z->ffn, positions, z->embed_proj,
            z->pre_layer_norm ? "true" : "false");
    fclose(f);
    return path;
}

static size_t plan_total(const zt_model *m) {
    const zt_workspace_shape shape = {2, 16, 1, 1, 0};
    zt_memory_plan plan;
    zt_model_plan_memory(m, &shape, &plan);
    return plan.total_bytes;
}

/* Every size from `like` (f16) against the same size read from disk. */
static void check_sizes_of(const zt_model *like, int vocab, int positions, int published,
                           zt_backend *be) {
    ZT_CHECK(zt_model_published_sizes(like) == BENCH_OPT_N_SIZES, "%d sizes",
             zt_model_published_sizes(like));
    for (int i = 0; i < BENCH_OPT_N_SIZES; i++) {
        const bench_opt_size *z = &bench_opt_sizes()[i];
        zt_model *sized = NULL, *read = NULL;
        const char *name = NULL;
        ZT_CHECK_OK(zt_model_open_published_size(like, i, ZT_F16, be, &sized, &name));
        ZT_CHECK_OK(zt_model_open_config(write_config(z, vocab, positions), ZT_F16, be, &read));
        if (!sized || !read) {
            zt_model_free(sized);
            zt_model_free(read);
            continue;
        }
        const size_t params = zt_model_parameter_count(sized);
        ZT_CHECK(name && strcmp(name, z->name) == 0, "size %d is %s, not %s", i, name, z->name);
        if (published)
            ZT_CHECK(params == (size_t)z->spec_params, "opt-%s: %zu parameters, published %lld",
                     z->name, params, z->spec_params);
        ZT_CHECK(params == zt_model_parameter_count(read),
                 "opt-%s (vocab %d): %zu parameters, "
                 "from config.json %zu",
                 z->name, vocab, params, zt_model_parameter_count(read));
        ZT_CHECK(sized->weights_bytes == read->weights_bytes && sized->n_tensors == read->n_tensors,
                 "opt-%s: %zu weight bytes in %d tensors, from config.json %zu in %d", z->name,
                 sized->weights_bytes, sized->n_tensors, read->weights_bytes, read->n_tensors);
        ZT_CHECK(plan_total(sized) == plan_total(read), "opt-%s: plan %zu, from config.json %zu",
                 z->name, plan_total(sized), plan_total(read));
        ZT_CHECK(sized->dims.vocab_size == vocab && sized->dims.max_positions == positions,
                 "opt-%s: vocab %d, positions %d", z->name, sized->dims.vocab_size,
                 sized->dims.max_positions);
        zt_model_free(sized);
        zt_model_free(read);
    }
}

int main(void) {
    ZT_REQUIRE(mkdtemp(tmp_dir) != NULL, "mkdtemp");
    zt_backend *be = NULL;
    ZT_REQUIRE_OK(zt_backend_open("cpu", 1, "f32", &be));
    const bench_opt_size *opt_125m = bench_find_opt_size("125m");
    zt_model *like = NULL;
    ZT_REQUIRE_OK(zt_model_open_config(write_config(opt_125m, BENCH_OPT_VOCAB, BENCH_OPT_POSITIONS),
                                       -1, be, &like));
    check_sizes_of(like, BENCH_OPT_VOCAB, BENCH_OPT_POSITIONS, 1, be);
    zt_model_free(like);

    /* a tiny post-LN model's vocabulary and positions carry over */
    const bench_opt_size tiny = {"tiny", 32, 2, 4, 64, 16, 0, 0};
    ZT_REQUIRE_OK(zt_model_open_config(write_config(&tiny, 504, 32), -1, be, &like));
    check_sizes_of(like, 504, 32, 0, be);

    zt_model *none = NULL;
    const char *name = NULL;
    ZT_CHECK(zt_model_open_published_size(like, BENCH_OPT_N_SIZES, ZT_F16, be, &none, &name) ==
                     ZT_ERR_MISSING &&
                 !none && strstr(zt_last_error(), "8 published sizes"),
             "size 8: %s", zt_last_error());
    ZT_CHECK(zt_model_open_published_size(like, -1, ZT_F16, be, &none, &name) == ZT_ERR_MISSING,
             "size -1 accepted");
    zt_model_free(like);
    zt_backend_destroy(be);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
    return zt_test_finish("test_published_sizes");
}
