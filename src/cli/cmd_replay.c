/* zotune replay: base weights + step log -> the fine-tuned weights, with no forward pass. */
#include <stdio.h>
#include <stdlib.h>

#include "backend.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "core/status.h"
#include "opt.h"
#include "zo/engine.h"
#include "zo/steplog.h"

static zt_status replay(const char *base, const char *log_path, const char *out, const char *device,
                        int threads, int *n_applied) {
    zt_steplog_header header;
    zt_step_record *records = NULL;
    int n = 0, torn = 0;
    ZT_TRY(zt_steplog_read(log_path, &header, &records, &n, &torn));
    if (torn) fprintf(stderr, "zotune replay: %s: ignoring a torn last line\n", log_path);
    zt_backend *be = NULL;
    zt_model *model = NULL;
    uint8_t *selected = NULL;
    zt_param_set ps = {0};
    int count = 0;
    zt_status s = zt_backend_create(device, threads, &be);
    if (s == ZT_OK) s = zt_model_load(base, be, &model);
    if (s == ZT_OK) {
        selected = calloc((size_t)model->n_tensors, 1);
        s = selected ? zt_model_select(model, header.trainable, selected, &count)
                     : zt_fail(ZT_ERR_NOMEM, "selection");
    }
    if (s == ZT_OK) s = zt_model_param_set(model, selected, &ps);
    if (s == ZT_OK) s = zt_param_set_alloc_state(&ps, header.state_copies);
    for (int i = 0; s == ZT_OK && i < n; i++) {
        if (records[i].step != i)
            s = zt_fail(ZT_ERR_FORMAT, "%s: record %d is for step %d (a log must start at step 0)",
                        log_path, i, records[i].step);
        else
            s = zt_zo_apply_update(&ps, &records[i]);
    }
    if (s == ZT_OK) s = zt_model_save(model, out);
    *n_applied = n;
    if (model) zt_param_set_free_state(&ps, header.state_copies);
    zt_model_param_set_free(&ps);
    free(selected);
    free(records);
    zt_model_free(model);
    zt_backend_destroy(be);
    return s;
}

int zt_cmd_replay(int argc, char **argv) {
    const char *device = "cpu";
    int threads = 0;
    const zt_arg_option options[] = {
        {"device", ZT_ARG_STRING, &device, "DEV", "cpu (default) or cuda[:N]"},
        {"threads", ZT_ARG_INT, &threads, "N", "CPU threads (default all cores)"},
    };
    const zt_arg_spec spec = {
        "zotune replay", "zotune replay BASE_DIR STEPLOG OUT_DIR [options]",
        "Rebuilds fine-tuned weights from the base model and a step log (steplog.jsonl of a\n"
        "`zotune train` run), bit for bit, without any forward pass; writes HF safetensors.",
        options, (int)(sizeof options / sizeof options[0]), 3, 3};
    const char *positional[3];
    int n_positional = 0;
    int r = zt_args_parse(&spec, argc, argv, 2, positional, &n_positional);
    if (r != ZT_ARGS_OK) return r == ZT_ARGS_HELP ? 0 : 2;
    int n = 0;
    zt_status s = replay(positional[0], positional[1], positional[2], device, threads, &n);
    if (s != ZT_OK) return zt_cli_report("replay", s);
    fprintf(stderr, "replayed %d steps into %s\n", n, positional[2]);
    return 0;
}
