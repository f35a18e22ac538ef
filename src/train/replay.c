#include "train/replay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "core/alloc.h"
#include "core/dir_lock.h"
#include "core/fingerprint.h"
#include "core/path.h"
#include "core/status.h"
#include "lora.h"
#include "prompt.h"
#include "model.h"
#include "prefix.h"
#include "train/train_run.h"
#include "train/trainable.h"
#include "zo/engine.h"
#include "zo/steplog.h"

/* The adapter the run started from (--adapter): the log holds only its fingerprint, so replay
 * needs the directory (adapter_dir) and checks it against that fingerprint once loaded. */
static zt_status check_adapter(const zt_steplog_header *h, const char *log_path,
                               const char *adapter_dir) {
    const char *adapter = zt_steplog_run_value(h, "--adapter");
    const int started_from_one = adapter && strcmp(adapter, "none") != 0;
    if (started_from_one && !adapter_dir)
        return zt_fail(ZT_ERR_UNAVAILABLE,
                       "%s: the run started from --adapter (fingerprint %s), which the log does "
                       "not hold: pass that adapter's directory with --adapter DIR",
                       log_path, adapter);
    if (!started_from_one && adapter_dir)
        return zt_fail(ZT_ERR_INVALID_ARG,
                       "--adapter %s: the run of %s did not start from an adapter (its adapters "
                       "start from the run seed)",
                       adapter_dir, log_path);
    return ZT_OK;
}

/* The prompt-tuning configuration the log's header records. */
static zt_status logged_prompt(const zt_steplog_header *h, const char *log_path,
                               const char *adapter_dir, zt_prompt_options *prompt) {
    const char *n = zt_steplog_run_value(h, "--num-virtual-tokens");
    if (!n || atoi(n) <= 0)
        return zt_fail(ZT_ERR_FORMAT, "%s: the header's --peft prompt lacks --num-virtual-tokens",
                       log_path);
    ZT_TRY(check_adapter(h, log_path, adapter_dir));
    zt_prompt_options_default(prompt);
    prompt->n_virtual = atoi(n);
    prompt->init_seed = zt_prompt_init_seed(h->run_seed);
    prompt->adapter_dir = adapter_dir;
    return ZT_OK;
}

/* The prefix-tuning configuration the log's header records. */
static zt_status logged_prefix(const zt_steplog_header *h, const char *log_path,
                               const char *adapter_dir, zt_prefix_options *prefix) {
    const char *n = zt_steplog_run_value(h, "--num-prefix");
    if (!n || atoi(n) <= 0)
        return zt_fail(ZT_ERR_FORMAT, "%s: the header's --peft prefix lacks --num-prefix",
                       log_path);
    ZT_TRY(check_adapter(h, log_path, adapter_dir));
    zt_prefix_options_default(prefix);
    prefix->n_prefix = atoi(n);
    prefix->init_seed = zt_prefix_init_seed(h->run_seed);
    prefix->adapter_dir = adapter_dir;
    return ZT_OK;
}

/* The adapters the log's header records (peft's members NULL for a run without them). A run
 * started from --adapter needs that adapter, which the log does not hold. */
static zt_status logged_peft(const zt_steplog_header *h, const char *log_path,
                             const char *adapter_dir, zt_lora_options *lora,
                             zt_prompt_options *prompt, zt_prefix_options *prefix,
                             zt_peft_options *peft) {
    peft->lora = NULL;
    peft->prompt = NULL;
    peft->prefix = NULL;
    const char *kind = zt_steplog_run_value(h, "--peft");
    if (!kind || strcmp(kind, "none") == 0) return check_adapter(h, log_path, adapter_dir);
    if (strcmp(kind, "prefix") == 0) {
        ZT_TRY(logged_prefix(h, log_path, adapter_dir, prefix));
        peft->prefix = prefix;
        return ZT_OK;
    }
    if (strcmp(kind, "prompt") == 0) {
        ZT_TRY(logged_prompt(h, log_path, adapter_dir, prompt));
        peft->prompt = prompt;
        return ZT_OK;
    }
    const char *rank = zt_steplog_run_value(h, "--lora-rank");
    const char *alpha = zt_steplog_run_value(h, "--lora-alpha");
    const char *targets = zt_steplog_run_value(h, "--lora-targets");
    if (strcmp(kind, "lora") != 0 || !rank || !alpha || !targets ||
        strlen(targets) >= sizeof lora->targets)
        return zt_fail(ZT_ERR_FORMAT, "%s: the header's --peft %s lacks its LoRA options", log_path,
                       kind);
    ZT_TRY(check_adapter(h, log_path, adapter_dir));
    zt_lora_options_default(lora);
    lora->rank = atoi(rank);
    lora->alpha = strtod(alpha, NULL);
    snprintf(lora->targets, sizeof lora->targets, "%s", targets);
    lora->init_seed = zt_lora_init_seed(h->run_seed);
    lora->adapter_dir = adapter_dir;
    peft->lora = lora;
    return ZT_OK;
}

zt_status zt_replay(const char *base, const char *log_path, const char *out, const char *device,
                    int threads, int *n_applied) {
    return zt_replay_adapted(base, NULL, log_path, out, device, threads, n_applied);
}

zt_status zt_replay_adapted(const char *base, const char *adapter_dir, const char *log_path,
                            const char *out, const char *device, int threads, int *n_applied) {
    const char *inputs[] = {base, log_path};
    const char *input_options[] = {"BASE_DIR", "STEPLOG"};
    ZT_TRY(zt_check_output_apart(out, "OUT_DIR", inputs, input_options, 2));
    zt_steplog_header header;
    zt_step_record *records = NULL;
    int n = 0, torn = 0;
    ZT_TRY(zt_steplog_read(log_path, &header, &records, &n, &torn));
    if (torn) fprintf(stderr, "zotune replay: %s: ignoring a torn last line\n", log_path);
    zt_status layout = zt_steplog_check_z_layout(&header, records, n, log_path);
    if (layout != ZT_OK) {
        free(records);
        return layout;
    }
    zt_backend *be = NULL;
    zt_model *model = NULL;
    uint8_t *selected = NULL;
    zt_param_set ps = {0};
    int count = 0;
    zt_status s = zt_backend_create(device, threads, &be);
    zt_lora_options lora;
    zt_prompt_options prompt;
    zt_prefix_options prefix;
    zt_peft_options peft = {NULL, NULL, NULL};
    if (s == ZT_OK) s = logged_peft(&header, log_path, adapter_dir, &lora, &prompt, &prefix, &peft);
    if (s == ZT_OK) s = zt_model_load_adapted(base, be, &peft, &model);
    const char *adapter_fingerprint = zt_steplog_run_value(&header, "--adapter");
    if (s == ZT_OK && adapter_dir) {
        uint64_t loaded = 0;
        char have[17];
        s = zt_run_adapter_fingerprint(model, &loaded);
        zt_fingerprint_hex(loaded, have);
        if (s == ZT_OK && strcmp(have, adapter_fingerprint) != 0)
            s = zt_fail(ZT_ERR_CONFLICT,
                        "--adapter %s: its adapters (fingerprint %s) are not the ones %s started "
                        "from (fingerprint %s)",
                        adapter_dir, have, log_path, adapter_fingerprint);
    }
    if (s == ZT_OK) {
        selected = zt_calloc((size_t)model->n_tensors, 1);
        if (!selected)
            s = zt_fail(ZT_ERR_NOMEM, "selection");
        else if (peft.lora || peft.prompt || peft.prefix)
            zt_peft_select(model, selected);
        else
            s = zt_model_select(model, header.trainable, selected, &count);
    }
    if (s == ZT_OK) s = zt_trainable_param_set(model, selected, &ps);
    if (s == ZT_OK) s = zt_param_set_alloc_state(&ps, header.state_copies);
    const char *base_fingerprint = zt_steplog_run_value(&header, "--model");
    if (s == ZT_OK && base_fingerprint) {
        char have[17];
        zt_fingerprint_hex(model->fingerprint, have);
        if (strcmp(have, base_fingerprint) != 0)
            s = zt_fail(ZT_ERR_CONFLICT,
                        "BASE_DIR %s: its weights (fingerprint %s) are not the base %s was trained "
                        "from (fingerprint %s)",
                        base, have, log_path, base_fingerprint);
    }
    /* Evaluations change nothing; a skipped step keeps its number and moves nothing. */
    int steps = 0;
    for (int i = 0; s == ZT_OK && i < n; i++) {
        if (records[i].kind == ZT_RECORD_EVAL || records[i].kind == ZT_RECORD_PHASE) continue;
        if (records[i].kind == ZT_RECORD_FO_STEP) {
            s = zt_fail(ZT_ERR_UNAVAILABLE,
                        "%s: step %d is a first-order (%s) step, whose gradient the log does not "
                        "hold: a backprop run is not replayable; its snapshot/ and final weights "
                        "are in its output directory",
                        log_path, records[i].step + 1, records[i].fo_name);
            break;
        }
        if (records[i].step != steps)
            s = zt_fail(ZT_ERR_FORMAT, "%s: record %d is for step %d where step %d was expected",
                        log_path, i, records[i].step, steps);
        else if (records[i].kind == ZT_RECORD_STEP)
            s = zt_zo_apply_update(&ps, &records[i]);
        steps++;
    }
    zt_dir_lock lock = {-1};
    if (s == ZT_OK) s = zt_make_dirs(out);
    if (s == ZT_OK) s = zt_dir_lock_acquire(out, "OUT_DIR", &lock);
    if (s == ZT_OK) s = zt_model_save(model, out);
    if (s == ZT_OK && peft.lora) s = zt_lora_save(model, out, base);
    if (s == ZT_OK && peft.prompt) s = zt_prompt_save(model, out, base);
    if (s == ZT_OK && peft.prefix) s = zt_prefix_save(model, out, base);
    zt_dir_lock_release(&lock);
    *n_applied = steps;
    if (model) zt_param_set_free_state(&ps, header.state_copies);
    zt_trainable_param_set_free(&ps);
    free(selected);
    free(records);
    zt_model_free(model);
    zt_backend_destroy(be);
    return s;
}
