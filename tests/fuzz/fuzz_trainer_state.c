/* A snapshot's trainer state: trainer.json (next step, the policy's state as hex) and
 * optimizer.safetensors (per-parameter state copies), cut from one input at FUZZ_SEPARATOR;
 * the first byte picks the optimizer restoring it (no state, 1 copy, 3 copies, AS2P's gamma
 * window). An accepted snapshot must restore exactly what it holds: a step that can be resumed
 * (>= 0), a policy state that saves back to the same bytes, state tensors equal to the file's. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "io/safetensors.h"
#include "train/snapshot.h"

static const char *const optimizers[] = {"mezo", "zo-sgd-mmt", "zo-adamm", "as2p"};
static const char *const files[] = {"trainer.json", "optimizer.safetensors"};
enum { N_PARAMS = 2, TOTAL_STEPS = 40 };

static zt_backend *backend;
static zt_param params[N_PARAMS] = {{.name = "model.decoder.layers.0.fc1.weight", .n_elems = 6},
                                    {.name = "model.decoder.layers.0.fc1.bias", .n_elems = 3}};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (zt_backend_create("cpu", 1, &backend) != ZT_OK) abort();
    return 0;
}

/* The policy state saved back is the hex the file gave, byte for byte. */
static void check_policy_state(const zt_optimizer *opt, const uint8_t *json, size_t size) {
    cJSON *root = cJSON_ParseWithLength((const char *)json, size);
    const cJSON *hex = cJSON_GetObjectItemCaseSensitive(root, "policy_state");
    FUZZ_CHECK(cJSON_IsString(hex), "an accepted trainer.json without policy_state");
    void *blob = NULL;
    size_t n = 0;
    FUZZ_CHECK(zt_optimizer_save_state(opt, &blob, &n) == ZT_OK, "save_state");
    const char *given = hex->valuestring;
    FUZZ_CHECK(strlen(given) == 2 * n, "%zu hex digits restored %zu bytes", strlen(given), n);
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < 2 * n; i++) {
        unsigned byte = ((const unsigned char *)blob)[i / 2];
        char want = digits[i % 2 ? byte & 15 : byte >> 4];
        FUZZ_CHECK(tolower((unsigned char)given[i]) == want,
                   "policy_state digit %zu is '%c' but restored as '%c'", i, given[i], want);
    }
    free(blob);
    cJSON_Delete(root);
}

static void check_tensors(const zt_param_set *ps, int copies) {
    char path[512];
    fuzz_path(path, sizeof path, files[1]);
    zt_safetensors *st = NULL;
    FUZZ_CHECK(zt_st_open(path, &st) == ZT_OK, "restored from a file that does not open");
    for (int i = 0; i < ps->n_params; i++) {
        const zt_st_tensor *t = zt_st_find(st, ps->params[i].name);
        size_t bytes = (size_t)copies * ps->params[i].n_elems * sizeof(float);
        float *host = malloc(bytes);
        FUZZ_CHECK(t && t->n_bytes == bytes &&
                       backend->ops->download(backend, host, ps->params[i].state, bytes) == ZT_OK &&
                       !memcmp(host, t->data, bytes),
                   "state of %s is not the file's", ps->params[i].name);
        free(host);
    }
    zt_st_close(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t *parts[2];
    size_t sizes[2];
    int n_parts = fuzz_split(data + 1, size - 1, parts, sizes, 2);
    fuzz_remove(files, 2);
    for (int i = 0; i < n_parts; i++)
        fuzz_put(files[i], parts[i], sizes[i], NULL, 0);
    const char *name = optimizers[data[0] % 4];
    zt_zo_hparams hp;
    zt_zo_hparams_default(&hp);
    zt_optimizer *opt = NULL;
    zt_param_set ps = {.be = backend, .params = params, .n_params = N_PARAMS, .n_elems = 9};
    int copies = zt_optimizer_find(name)->state_copies;
    if (zt_optimizer_create(name, &hp, TOTAL_STEPS, ps.n_elems, &opt) != ZT_OK ||
        zt_param_set_alloc_state(&ps, copies) != ZT_OK)
        fuzz_fail(__FILE__, __LINE__, "setup", "%s: %s", name, zt_last_error());

    int next_step = -1, observed_eval = -2;
    fuzz_expect_begin();
    zt_status s = zt_snapshot_load_state(fuzz_dir(), &ps, copies, opt, &next_step, &observed_eval);
    fuzz_expect_reported(s, "zt_snapshot_load_state");
    if (s == ZT_OK) {
        FUZZ_CHECK(next_step >= 0, "restored next_step %d", next_step);
        FUZZ_CHECK(observed_eval >= -1, "restored observed_eval %d", observed_eval);
        check_policy_state(opt, parts[0], sizes[0]);
        if (copies) check_tensors(&ps, copies);
    }
    zt_param_set_free_state(&ps, copies);
    zt_optimizer_free(opt);
    return 0;
}
