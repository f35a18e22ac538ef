/* bench_generate: greedy generation throughput on a loaded model (by default demo/model), the
 * reference path against batched decoding over the KV cache (docs/design.md §2.7):
 *   sequential   zt_generate_greedy, one prompt at a time, every new token running the whole
 *                sequence again (no cache): what evaluation did before the cache;
 *   KV cache     zt_generate_greedy_batch, B prompts at a time: one prefill, then one token per
 *                sequence per step through the cache.
 * The same prompts (seeded random ids of several lengths, BOS first) and the same number of new
 * tokens per prompt (no stop ids, so every path does the same work); tokens/s counts generated
 * tokens. Each path also reports how many prompts got the sequential path's tokens. Timing
 * only: nothing here passes or fails.
 *
 *   bench_generate [--model DIR] [--prompts N] [--max-new M] [--threads N] [--repeat R] [--quick]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "core/status.h"
#include "model.h"
#include "train/generate.h"

typedef struct options {
    const char *model;
    int prompts, max_new, threads, repeat;
} options;

typedef struct prompt_set {
    int n, longest;
    int32_t **ids;
    int *lengths;
} prompt_set;

static uint64_t rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Lengths cycle through 8 .. 40 tokens, ids are ordinary tokens (above the special ones). */
static prompt_set make_prompts(const zt_model *m, int n, int max_new) {
    prompt_set p = {n, 0, calloc((size_t)n, sizeof(int32_t *)), calloc((size_t)n, sizeof(int))};
    uint64_t state = 20260101;
    for (int i = 0; i < n; i++) {
        int length = 8 + (i * 13) % 33;
        if (length + max_new > m->dims.max_positions) length = m->dims.max_positions - max_new;
        p.ids[i] = malloc((size_t)length * sizeof(int32_t));
        p.ids[i][0] = m->dims.bos_token_id;
        for (int t = 1; t < length; t++)
            p.ids[i][t] = 3 + (int32_t)(rng_next(&state) % (uint64_t)(m->dims.vocab_size - 3));
        p.lengths[i] = length;
        if (length > p.longest) p.longest = length;
    }
    return p;
}

/* Generates every prompt on one path; batch 0 = the sequential path. outputs (n) are malloc'd.
 * Returns the wall time in ms, or a negative number on failure. */
static double run_path(zt_model *m, const prompt_set *p, int batch, int max_new, int32_t **outputs,
                       int *n_outputs) {
    zt_workspace *ws = NULL;
    zt_workspace_shape shape = {batch ? batch : 1, batch ? p->longest : p->longest + max_new, 1, 0,
                                0};
    if (zt_workspace_create(m, &shape, &ws) != ZT_OK) {
        fprintf(stderr, "bench_generate: workspace: %s\n", zt_last_error());
        return -1.0;
    }
    int *budget = malloc((size_t)p->n * sizeof *budget);
    for (int i = 0; i < p->n; i++)
        budget[i] = max_new;
    zt_status s = ZT_OK;
    double start = bench_now_ms();
    for (int first = 0; s == ZT_OK && first < p->n; first += batch ? batch : 1) {
        if (batch == 0) {
            s = zt_generate_greedy(m, ws, NULL, p->ids[first], p->lengths[first], max_new, NULL, 0,
                                   &outputs[first], &n_outputs[first]);
            continue;
        }
        int count = p->n - first < batch ? p->n - first : batch;
        s = zt_generate_greedy_batch(m, ws, NULL, count, (const int32_t *const *)p->ids + first,
                                     p->lengths + first, budget + first, NULL, 0, outputs + first,
                                     n_outputs + first);
    }
    double ms = bench_now_ms() - start;
    free(budget);
    zt_workspace_free(ws);
    if (s != ZT_OK) {
        fprintf(stderr, "bench_generate: %s\n", zt_last_error());
        return -1.0;
    }
    return ms;
}

static int parse(int argc, char **argv, options *o) {
    for (int i = 1; i < argc; i++) {
        char *flag, *value;
        if (!bench_split_option(argv[i], &flag, &value)) {
            fprintf(stderr, "bench_generate: unexpected argument '%s'\n", argv[i]);
            return 0;
        }
        if (strcmp(flag, "--quick") == 0) {
            o->prompts = 16;
            o->max_new = 16;
            o->repeat = 1;
            continue;
        }
        int *target = strcmp(flag, "--prompts") == 0   ? &o->prompts
                      : strcmp(flag, "--max-new") == 0 ? &o->max_new
                      : strcmp(flag, "--threads") == 0 ? &o->threads
                      : strcmp(flag, "--repeat") == 0  ? &o->repeat
                                                       : NULL;
        if (!target && strcmp(flag, "--model") != 0) {
            fprintf(stderr, "usage: bench_generate [--model DIR] [--prompts N] [--max-new M] "
                            "[--threads N] [--repeat R] [--quick]\n");
            return 0;
        }
        value = bench_take_value("bench_generate", argc, argv, &i, flag, value);
        if (!value) return 0;
        if (!target)
            o->model = value;
        else if (!bench_parse_int("bench_generate", flag, value, target == &o->threads ? 0 : 1,
                                  target))
            return 0;
    }
    return 1;
}

int main(int argc, char **argv) {
    /* one thread by default: the demo model's ops are too small to split, and spinning OpenMP
     * threads on a shared machine measure the scheduler instead */
    options o = {"demo/model", 32, 32, 1, 3};
    if (!parse(argc, argv, &o)) return 2;
    zt_backend *be = NULL;
    zt_model *m = NULL;
    if (zt_backend_create("cpu", o.threads, &be) != ZT_OK ||
        zt_model_load(o.model, be, &m) != ZT_OK) {
        fprintf(stderr, "bench_generate: %s\n", zt_last_error());
        zt_backend_destroy(be);
        return 1;
    }
    if (o.max_new > m->dims.max_positions - 8) o.max_new = m->dims.max_positions - 8;
    prompt_set p = make_prompts(m, o.prompts, o.max_new);
    printf("bench_generate: %s (%d layers, hidden %d, vocab %d), %d prompts of 8-%d tokens, "
           "%d new tokens each, cpu, %d threads (0 = all), best of %d\n",
           o.model, m->dims.n_layers, m->dims.hidden_size, m->dims.vocab_size, p.n, p.longest,
           o.max_new, o.threads, o.repeat);
    printf("%-28s %6s %10s %11s %8s %12s\n", "path", "batch", "time ms", "tokens/s", "speedup",
           "= sequential");
    const int batches[] = {0, 1, 8, 16};
    int32_t **reference = calloc((size_t)p.n, sizeof *reference);
    int *n_reference = calloc((size_t)p.n, sizeof *n_reference);
    int32_t **out = calloc((size_t)p.n, sizeof *out);
    int *n_out = calloc((size_t)p.n, sizeof *n_out);
    double sequential_ms = 0.0;
    int rc = 0;
    for (size_t b = 0; b < sizeof batches / sizeof batches[0] && rc == 0; b++) {
        double best = -1.0;
        long tokens = 0;
        int same = 0;
        for (int r = 0; r < o.repeat && rc == 0; r++) {
            double ms = run_path(m, &p, batches[b], o.max_new, out, n_out);
            if (ms < 0) rc = 1;
            if (ms >= 0 && (best < 0 || ms < best)) best = ms;
            tokens = same = 0;
            for (int i = 0; i < p.n; i++) {
                tokens += n_out[i];
                if (b == 0 && r == 0) {
                    reference[i] = out[i];
                    n_reference[i] = n_out[i];
                    out[i] = NULL;
                    same++;
                    continue;
                }
                same += n_out[i] == n_reference[i] &&
                        memcmp(out[i], reference[i], (size_t)n_out[i] * sizeof(int32_t)) == 0;
                free(out[i]);
                out[i] = NULL;
            }
        }
        if (rc) break;
        if (b == 0) sequential_ms = best;
        char label[64];
        snprintf(label, sizeof label, "%s", b == 0 ? "sequential, full recompute" : "KV cache");
        printf("%-28s %6d %10.1f %11.1f %7.2fx %9d/%d\n", label, batches[b] ? batches[b] : 1, best,
               1e3 * (double)tokens / best, sequential_ms / best, same, p.n);
    }
    for (int i = 0; i < p.n; i++) {
        free(reference[i]);
        free(p.ids[i]);
    }
    free(reference);
    free(n_reference);
    free(out);
    free(n_out);
    free(p.ids);
    free(p.lengths);
    zt_model_free(m);
    zt_backend_destroy(be);
    return rc;
}
