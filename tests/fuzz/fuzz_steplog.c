/* The step log (docs/design.md §2.5): read -> append -> read. Whatever the reader accepts, the
 * writer must be able to extend: appending one record to an accepted log and reading it again
 * gives the same header, every old record bit for bit, then the new one, and no torn tail. The
 * new record is the last one read (so every value the reader lets through is written back), or
 * a fixed record for a log that has none. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "zo/steplog.h"

static int same_bits(const void *a, const void *b, size_t n) {
    return memcmp(a, b, n) == 0;
}

static int same_record(const zt_step_record *a, const zt_step_record *b) {
    const zt_step_update *u = &a->update, *v = &b->update;
    if (a->step != b->step || a->step_seed != b->step_seed || a->n_variants != b->n_variants ||
        a->dist != b->dist || a->stochastic_rounding != b->stochastic_rounding ||
        a->rounding_seed != b->rounding_seed || u->n_terms != v->n_terms || u->rule != v->rule)
        return 0;
    if (!same_bits(a->losses, b->losses, (size_t)a->n_variants * sizeof a->losses[0])) return 0;
    for (int t = 0; t < u->n_terms; t++)
        if (u->terms[t].seed != v->terms[t].seed ||
            !same_bits(&u->terms[t].coeff, &v->terms[t].coeff, sizeof u->terms[t].coeff))
            return 0;
    const double x[] = {u->lr,       u->weight_decay,   u->beta1,    u->beta2,
                        u->adam_eps, u->projected_grad, u->step_size};
    const double y[] = {v->lr,       v->weight_decay,   v->beta1,    v->beta2,
                        v->adam_eps, v->projected_grad, v->step_size};
    return same_bits(x, y, sizeof x);
}

static int same_header(const zt_steplog_header *a, const zt_steplog_header *b) {
    return !strcmp(a->optimizer, b->optimizer) && !strcmp(a->trainable, b->trainable) &&
           !strcmp(a->model, b->model) && !strcmp(a->compute, b->compute) &&
           a->state_copies == b->state_copies && a->run_seed == b->run_seed;
}

static zt_step_record fixed_record(void) {
    zt_step_record r;
    memset(&r, 0, sizeof r);
    r.step = 7;
    r.step_seed = 0x0123456789abcdefull;
    r.n_variants = 2;
    r.losses[0] = 0.6931471805599453;
    r.losses[1] = -0.0;
    r.update.n_terms = 1;
    r.update.terms[0] = (zt_direction){.seed = 0xfedcba9876543210ull, .coeff = -1.25e-3f};
    r.update.lr = 1e-6;
    r.stochastic_rounding = 1;
    r.rounding_seed = 42;
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fuzz_put("steplog.jsonl", data, size, path, sizeof path);
    zt_steplog_header header;
    zt_step_record *old = NULL;
    int n_old = 0, torn = 0;
    fuzz_expect_begin();
    zt_status s = zt_steplog_read(path, &header, &old, &n_old, &torn);
    fuzz_expect_reported(s, "zt_steplog_read");
    if (s != ZT_OK) return 0;

    zt_step_record added = n_old > 0 ? old[n_old - 1] : fixed_record();
    zt_steplog *log = NULL;
    s = zt_steplog_open_append(path, &header, &log);
    FUZZ_CHECK(s == ZT_OK, "a log that reads cannot be opened for appending: %s", zt_last_error());
    s = zt_steplog_append(log, &added);
    FUZZ_CHECK(s == ZT_OK, "appending a record that was read fails: %s", zt_last_error());
    zt_steplog_close(log);

    zt_steplog_header header_again;
    zt_step_record *again = NULL;
    int n_again = 0;
    s = zt_steplog_read(path, &header_again, &again, &n_again, &torn);
    FUZZ_CHECK(s == ZT_OK, "the appended log does not read: %s", zt_last_error());
    FUZZ_CHECK(!torn && n_again == n_old + 1, "%d records after appending to %d", n_again, n_old);
    FUZZ_CHECK(same_header(&header, &header_again), "the header changed");
    for (int i = 0; i < n_old; i++)
        FUZZ_CHECK(same_record(&old[i], &again[i]), "record %d changed", i);
    FUZZ_CHECK(same_record(&added, &again[n_old]), "the appended record reads back differently");
    free(old);
    free(again);
    return 0;
}
