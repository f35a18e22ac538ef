/* The data layer against properties and references of its own: the sampler deals every example
 * once per epoch, the same batches for the same seed, and shuffles without bias (a position keeps
 * its own example in 1/n of the permutations, as a uniform shuffle does; a cyclic one never
 * does); and an over-long text record keeps BOS and the last max_positions - 1 tokens of its
 * full encoding (MeZO's left truncation), its option tokens intact. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/dataset.h"
#include "core/status.h"
#include "data/sampler.h"
#include "text/bpe.h"
#include "zt_test.h"

enum { N_EXAMPLES = 5, BATCH = 5, N_SEEDS = 4000 };

static void check_sampler(void) {
    int fixed_points = 0, every_epoch_a_permutation = 1, differs_by_epoch = 0, repeatable = 1;
    for (uint64_t seed = 0; seed < N_SEEDS; seed++) {
        zt_sampler s, again;
        ZT_REQUIRE_OK(zt_sampler_init(&s, seed, N_EXAMPLES, BATCH));
        ZT_REQUIRE_OK(zt_sampler_init(&again, seed, N_EXAMPLES, BATCH));
        int first[BATCH], second[BATCH], replay[BATCH];
        zt_sampler_batch(&s, 0, first);  /* one batch = one epoch here */
        zt_sampler_batch(&s, 1, second); /* the next epoch */
        zt_sampler_batch(&again, 1, replay);
        int seen[N_EXAMPLES] = {0};
        for (int i = 0; i < BATCH; i++) {
            if (first[i] >= 0 && first[i] < N_EXAMPLES) seen[first[i]]++;
            fixed_points += first[i] == i;
            differs_by_epoch |= first[i] != second[i];
            repeatable &= second[i] == replay[i];
        }
        for (int e = 0; e < N_EXAMPLES; e++)
            every_epoch_a_permutation &= seen[e] == 1;
        zt_sampler_free(&s);
        zt_sampler_free(&again);
    }
    ZT_CHECK(every_epoch_a_permutation, "an epoch dealt some example twice or not at all");
    ZT_CHECK(repeatable, "the same seed gave other batches");
    ZT_CHECK(differs_by_epoch, "every epoch repeats the first one's order");
    /* a uniform shuffle leaves 1 fixed point per permutation on average: N_SEEDS expected, with
     * a standard deviation near sqrt(N_SEEDS) = 63 */
    ZT_CHECK(fabs(fixed_points - (double)N_SEEDS) < 6 * sqrt((double)N_SEEDS),
             "fixed points over %d shuffles: %d, a uniform shuffle gives %d +- %.0f", N_SEEDS,
             fixed_points, N_SEEDS, sqrt((double)N_SEEDS));
    printf("sampler: %d shuffles of %d, %d fixed points (uniform: %d)\n", N_SEEDS, N_EXAMPLES,
           fixed_points, N_SEEDS);
}

static void check_truncation(const char *model_dir) {
    zt_tokenizer *tok = NULL;
    ZT_REQUIRE_OK(zt_tokenizer_open_model_dir(model_dir, 0, &tok));
    ZT_REQUIRE(tok != NULL, "%s has no tokenizer", model_dir);
    const char *prompt = "The film opens on a quiet harbour town where nothing happens for a long "
                         "while, and then everything happens at once. It was";
    const char *candidates[2] = {" terrible", " great"};
    char path[] = "/tmp/zt_truncation_XXXXXX";
    int fd = mkstemp(path);
    ZT_REQUIRE(fd >= 0, "mkstemp");
    FILE *f = fdopen(fd, "w");
    fprintf(f, "{\"prompt\": \"%s\", \"candidates\": [\"%s\", \"%s\"], \"label\": 1}\n", prompt,
            candidates[0], candidates[1]);
    fclose(f);
    const int max_positions = 12;
    zt_dataset ds;
    ZT_REQUIRE_OK(zt_dataset_load(path, tok, 1 << 20, max_positions, &ds));
    const zt_example *e = &ds.examples[0];
    int32_t bos = zt_tokenizer_bos_id(tok);
    for (int c = 0; c < 2; c++) {
        char text[512];
        snprintf(text, sizeof text, "%s%s", prompt, candidates[c]);
        int32_t *full = NULL;
        int n_full = 0;
        ZT_REQUIRE_OK(zt_tokenizer_encode(tok, text, strlen(text), 1, &full, &n_full));
        ZT_REQUIRE(n_full > max_positions, "the record must be longer than the positions");
        int kept = e->candidate_length[c];
        const int32_t *got = e->candidates[c];
        int tail_same =
            kept == max_positions && memcmp(got + 1, full + n_full - (max_positions - 1),
                                            (size_t)(max_positions - 1) * sizeof(int32_t)) == 0;
        ZT_CHECK(kept == max_positions && got[0] == bos && tail_same,
                 "candidate %d: %d tokens kept, first %d (BOS %d); want BOS + the last %d of %d", c,
                 kept, got[0], bos, max_positions - 1, n_full);
        ZT_CHECK(e->option_length[c] == 1, "candidate %d: option of %d tokens", c,
                 e->option_length[c]);
        free(full);
    }
    zt_dataset_free(&ds);
    zt_tokenizer_free(tok);
    unlink(path);
}

/* Writes `text` to a temporary JSONL file and loads it for a model of `vocab` tokens; returns
 * the status. */
static zt_status load_vocab_text(const char *text, const zt_tokenizer *tok, int vocab,
                                 int max_positions, char *path, size_t size) {
    snprintf(path, size, "/tmp/zt_records_XXXXXX");
    int fd = mkstemp(path);
    ZT_REQUIRE(fd >= 0, "mkstemp");
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    zt_dataset ds;
    zt_status s = zt_dataset_load(path, tok, vocab, max_positions, &ds);
    if (s == ZT_OK) zt_dataset_free(&ds);
    unlink(path);
    return s;
}

static zt_status load_text(const char *text, const zt_tokenizer *tok, int max_positions, char *path,
                           size_t size) {
    return load_vocab_text(text, tok, 1 << 20, max_positions, path, size);
}

/* Records that cannot train are refused at load, naming file:line: LM records whose every
 * label past the first is -100, and generation records on a model with a single position. */
static void check_validation(const char *model_dir) {
    char path[64], where[80];
    zt_status s = load_text("{\"input_ids\": [5, 6, 7], \"labels\": [5, 6, 7]}\n"
                            "{\"input_ids\": [5, 6, 7], \"labels\": [5, -100, -100]}\n",
                            NULL, 32, path, sizeof path);
    snprintf(where, sizeof where, "%s:2:", path);
    ZT_CHECK(s == ZT_ERR_FORMAT && strstr(zt_last_error(), where) &&
                 strstr(zt_last_error(), "no token to predict"),
             "an LM record without targets: %s", zt_last_error());
    s = load_text("{\"input_ids\": [5, 6], \"labels\": [-100, 6]}\n", NULL, 32, path, sizeof path);
    ZT_CHECK(s == ZT_OK, "a record with one target loads: %s", zt_last_error());
    zt_tokenizer *tok = NULL;
    ZT_REQUIRE_OK(zt_tokenizer_open_model_dir(model_dir, 0, &tok));
    s = load_text("{\"prompt\": \"Who?\", \"answers\": [\"me\"]}\n", tok, 1, path, sizeof path);
    snprintf(where, sizeof where, "%s:1:", path);
    ZT_CHECK(s == ZT_ERR_FORMAT && strstr(zt_last_error(), where) &&
                 strstr(zt_last_error(), "at least 2 positions"),
             "a generation record on a one-position model: %s", zt_last_error());
    zt_tokenizer_free(tok);
}

/* A tokenizer whose ids run past the model's vocabulary: every kind of text record is refused
 * on its first token outside [0, vocab), naming file:line, and whatever it had encoded is freed
 * (the sanitizer build's leak check sees to that half). */
static void check_out_of_vocabulary(const char *model_dir) {
    static const char *const records[] = {
        "{\"text\": \"It was great\"}\n",
        "{\"prompt\": \"It was\", \"completion\": \" great\"}\n",
        "{\"prompt\": \"It was\", \"candidates\": [\" terrible\", \" great\"], \"label\": 1}\n",
        "{\"prompt\": \"Who?\", \"answers\": [\"me\"]}\n",
    };
    zt_tokenizer *tok = NULL;
    ZT_REQUIRE_OK(zt_tokenizer_open_model_dir(model_dir, 0, &tok));
    const int vocab = zt_tokenizer_bos_id(tok) + 1; /* BOS is in, the words are not */
    char path[64], where[80], range[32];
    snprintf(range, sizeof range, "outside [0, %d)", vocab);
    for (size_t i = 0; i < sizeof records / sizeof records[0]; i++) {
        zt_status s = load_vocab_text(records[i], tok, vocab, 32, path, sizeof path);
        snprintf(where, sizeof where, "%s:1:", path);
        ZT_CHECK(s == ZT_ERR_FORMAT && strstr(zt_last_error(), where) &&
                     strstr(zt_last_error(), range),
                 "record %s with a %d-token vocabulary: %s", records[i], vocab, zt_last_error());
    }
    zt_tokenizer_free(tok);
}

int main(int argc, char **argv) {
    check_sampler();
    if (argc > 1) check_truncation(argv[1]);
    if (argc > 1) check_validation(argv[1]);
    if (argc > 1) check_out_of_vocabulary(argv[1]);
    return zt_test_finish("test_sampler_dataset");
}
