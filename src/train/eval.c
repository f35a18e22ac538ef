#include "train/eval.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"
#include "text/bpe.h"
#include "train/generate.h"
#include "train/metrics.h"
#include "train/task_loss.h"

static int best_candidate(const double *scores, const int32_t *candidate_of_sequence, int first,
                          int count) {
    int best = first;
    for (int s = first + 1; s < first + count; s++)
        if (scores[s] > scores[best]) best = s;
    return candidate_of_sequence[best];
}

/* Greedy answers batch_size prompts at a time (one prefill and one decode loop per chunk),
 * scored in example order; each answer moves into predictions[i] when asked for. */
static zt_status evaluate_generation(zt_task_objective *o, const zt_dataset *ds, int batch_size,
                                     const zt_tokenizer *tok, zt_eval_result *res,
                                     char **predictions) {
    if (!tok)
        return zt_fail(ZT_ERR_MISSING, "%s: generation needs the model directory's tokenizer",
                       ds->path);
    int32_t stop[2];
    int n_stop = 0;
    ZT_TRY(zt_generation_stop_ids(tok, o->model, stop, &n_stop));
    const zt_example **examples = zt_xmalloc((size_t)batch_size * sizeof *examples);
    char **texts = zt_xmalloc((size_t)batch_size * sizeof *texts);
    zt_status s = examples && texts ? ZT_OK : zt_fail(ZT_ERR_NOMEM, "generation batch");
    double f1 = 0.0, em = 0.0;
    for (int first = 0; s == ZT_OK && first < ds->n_examples; first += batch_size) {
        int n = ds->n_examples - first < batch_size ? ds->n_examples - first : batch_size;
        for (int i = 0; i < n; i++)
            examples[i] = &ds->examples[first + i];
        s = zt_generate_answers(o->model, o->ws, NULL, tok, examples, n, n, stop, n_stop, texts);
        for (int i = 0; s == ZT_OK && i < n; i++) {
            const zt_example *e = examples[i];
            f1 += zt_answer_f1(texts[i], e->answers, e->n_answers);
            em += zt_answer_exact_match(texts[i], e->answers, e->n_answers);
            if (predictions)
                predictions[first + i] = texts[i];
            else
                free(texts[i]);
        }
    }
    free(examples);
    free(texts);
    ZT_TRY(s);
    res->f1 = f1 / ds->n_examples;
    res->exact_match = em / ds->n_examples;
    return ZT_OK;
}

zt_status zt_evaluate(zt_task_objective *o, const zt_dataset *ds, int batch_size,
                      const zt_tokenizer *tok, zt_eval_result *res) {
    return zt_evaluate_predictions(o, ds, batch_size, tok, res, NULL);
}

zt_status zt_evaluate_predictions(zt_task_objective *o, const zt_dataset *ds, int batch_size,
                                  const zt_tokenizer *tok, zt_eval_result *res,
                                  char **predictions) {
    for (int i = 0; predictions && i < ds->n_examples; i++)
        predictions[i] = NULL;
    memset(res, 0, sizeof *res);
    res->accuracy = res->f1 = res->exact_match = -1.0;
    double *loss = &res->loss;
    double total_loss = 0.0;
    long correct = 0;
    int *indices = zt_malloc((size_t)batch_size * sizeof *indices);
    if (!indices) return zt_fail(ZT_ERR_NOMEM, "evaluation indices");
    zt_status s = ZT_OK;
    for (int first = 0; s == ZT_OK && first < ds->n_examples; first += batch_size) {
        int n = ds->n_examples - first < batch_size ? ds->n_examples - first : batch_size;
        for (int i = 0; i < n; i++)
            indices[i] = first + i;
        zt_task_batch b;
        s = zt_task_batch_build(ds, indices, n, o->model->dims.pad_token_id, 0, &b);
        if (s != ZT_OK) break;
        double batch_loss = 0.0;
        s = zt_task_objective_loss(o, &b, &batch_loss);
        if (s == ZT_OK) total_loss += batch_loss * n;
        if (s == ZT_OK && ds->kind == ZT_TASK_CLASSIFICATION) {
            double *scores = zt_malloc((size_t)b.n_sequences * sizeof *scores);
            zt_targets t = {b.n_targets, b.target_rows, b.target_ids, b.target_sequence};
            if (!scores)
                s = zt_fail(ZT_ERR_NOMEM, "scores");
            else {
                zt_candidate_scores(o->logprobs, &t, b.n_sequences, scores);
                for (int seq = 0; seq < b.n_sequences;) {
                    int e = b.example_of_sequence[seq], count = 0;
                    while (seq + count < b.n_sequences && b.example_of_sequence[seq + count] == e)
                        count++;
                    int predicted = best_candidate(scores, b.candidate_of_sequence, seq, count);
                    const zt_example *ex = &ds->examples[indices[e]];
                    int hit = 0;
                    for (int g = 0; g < ex->n_gold; g++)
                        hit |= predicted == ex->gold[g];
                    correct += hit;
                    seq += count;
                }
            }
            free(scores);
        }
        zt_task_batch_free(&b);
    }
    free(indices);
    ZT_TRY(s);
    *loss = total_loss / ds->n_examples;
    if (ds->kind == ZT_TASK_CLASSIFICATION) {
        res->accuracy = (double)correct / ds->n_examples;
        res->metric = res->accuracy;
        res->metric_name = "accuracy";
    } else if (ds->kind == ZT_TASK_GENERATION) {
        s = evaluate_generation(o, ds, batch_size, tok, res, predictions);
        if (s != ZT_OK) {
            for (int i = 0; predictions && i < ds->n_examples; i++) {
                free(predictions[i]);
                predictions[i] = NULL;
            }
            return s;
        }
        res->metric = res->f1;
        res->metric_name = "f1";
    } else {
        res->metric = -res->loss;
        res->metric_name = "-loss";
    }
    return ZT_OK;
}
