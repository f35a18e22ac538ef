/* zotune info: what a model is and what it will cost to run. */
#include <stdio.h>

#include <cjson/cJSON.h>

#include "backend.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "core/alloc.h"
#include "opt.h"

static double mib(size_t n_bytes) { return (double)n_bytes / (1024.0 * 1024.0); }

static void print_text(const char *dir, const zt_model *m, const zt_opt_memory_plan *plan, int batch,
                       int seq_len) {
    const zt_opt_config *c = &m->cfg;
    printf("model          %s\n", dir);
    printf("architecture   OPT, %s layer norm%s\n", c->do_layer_norm_before ? "pre" : "post",
           c->word_embed_proj_dim != c->hidden_size ? ", project_in/project_out" : "");
    printf("layers         %d\n", c->num_hidden_layers);
    printf("hidden         %d (heads %d x %d), ffn %d\n", c->hidden_size, c->num_attention_heads,
           c->hidden_size / c->num_attention_heads, c->ffn_dim);
    printf("embedding      vocab %d x %d, positions %d\n", c->vocab_size, c->word_embed_proj_dim,
           c->max_position_embeddings);
    printf("dtype          %s\n", zt_dtype_name(m->tensors[m->embed_tokens].dtype));
    printf("tensors        %d\n", m->n_tensors);
    printf("parameters     %zu\n", zt_model_parameter_count(m));
    printf("memory plan    batch %d x seq %d\n", batch, seq_len);
    printf("  weights      %10.2f MiB\n", mib(plan->weights_bytes));
    printf("  activations  %10.2f MiB\n", mib(plan->activation_bytes));
    printf("  total        %10.2f MiB\n", mib(plan->total_bytes));
}

static void print_json(const char *dir, const zt_model *m, const zt_opt_memory_plan *plan, int batch,
                       int seq_len) {
    const zt_opt_config *c = &m->cfg;
    cJSON *root = cJSON_CreateObject(), *p = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", dir);
    cJSON_AddNumberToObject(root, "layers", c->num_hidden_layers);
    cJSON_AddNumberToObject(root, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(root, "heads", c->num_attention_heads);
    cJSON_AddNumberToObject(root, "ffn_dim", c->ffn_dim);
    cJSON_AddNumberToObject(root, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(root, "word_embed_proj_dim", c->word_embed_proj_dim);
    cJSON_AddNumberToObject(root, "max_position_embeddings", c->max_position_embeddings);
    cJSON_AddBoolToObject(root, "do_layer_norm_before", c->do_layer_norm_before);
    cJSON_AddStringToObject(root, "dtype", zt_dtype_name(m->tensors[m->embed_tokens].dtype));
    cJSON_AddNumberToObject(root, "tensors", m->n_tensors);
    cJSON_AddNumberToObject(root, "parameters", (double)zt_model_parameter_count(m));
    cJSON_AddNumberToObject(p, "batch", batch);
    cJSON_AddNumberToObject(p, "seq_len", seq_len);
    cJSON_AddNumberToObject(p, "weights_bytes", (double)plan->weights_bytes);
    cJSON_AddNumberToObject(p, "activation_bytes", (double)plan->activation_bytes);
    cJSON_AddNumberToObject(p, "total_bytes", (double)plan->total_bytes);
    cJSON_AddItemToObject(root, "plan", p);
    char *text = cJSON_PrintUnformatted(root);
    if (text) puts(text);
    cJSON_free(text);
    cJSON_Delete(root);
}

int zt_cmd_info(int argc, char **argv) {
    int json = 0, batch = 16, seq_len = 256;
    const char *device = "cpu";
    const zt_arg_option options[] = {
        {"json", ZT_ARG_FLAG, &json, NULL, "print one JSON object"},
        {"batch-size", ZT_ARG_INT, &batch, "B", "batch size for the memory plan (default 16)"},
        {"seq-len", ZT_ARG_INT, &seq_len, "T", "sequence length for the memory plan (default 256)"},
        {"device", ZT_ARG_STRING, &device, "DEV", "cpu (default) or cuda[:N]"},
    };
    const zt_arg_spec spec = {"zotune info", "zotune info MODEL_DIR [options]",
                              "Loads an OPT model directory (config.json + safetensors) and prints "
                              "its configuration, parameter count and memory plan.",
                              options, (int)(sizeof options / sizeof options[0]), 1, 1};
    const char *positional[1];
    int n_positional = 0;
    int r = zt_args_parse(&spec, argc, argv, 2, positional, &n_positional);
    if (r != ZT_ARGS_OK) return r == ZT_ARGS_HELP ? 0 : 2;
    if (batch <= 0 || seq_len <= 0) {
        fprintf(stderr, "zotune info: --batch-size and --seq-len must be positive\n");
        return 2;
    }

    zt_backend *be = NULL;
    zt_model *model = NULL;
    zt_status s = zt_backend_create(device, 0, &be);
    if (s == ZT_OK) s = zt_model_load(positional[0], be, &model);
    if (s != ZT_OK) {
        zt_backend_destroy(be);
        return zt_cli_report("info", s);
    }
    zt_opt_memory_plan plan;
    zt_opt_workspace_shape shape = {batch, seq_len, 1, 0};
    zt_opt_plan_memory(&model->cfg, model->weights_bytes, &shape, &plan);
    if (json)
        print_json(positional[0], model, &plan, batch, seq_len);
    else
        print_text(positional[0], model, &plan, batch, seq_len);
    zt_model_free(model);
    zt_backend_destroy(be);
    return 0;
}
