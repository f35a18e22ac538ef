#include <stdlib.h>

#include "core/status.h"
#include "loss.h"
#include "train/trainer.h"

static int best_candidate(const double *scores, const int32_t *candidate_of_sequence, int first,
                          int count) {
    int best = first;
    for (int s = first + 1; s < first + count; s++)
        if (scores[s] > scores[best]) best = s;
    return candidate_of_sequence[best];
}

zt_status zt_evaluate(zt_opt_objective *o, const zt_dataset *ds, int batch_size, double *loss,
                      double *accuracy) {
    double total_loss = 0.0;
    long correct = 0;
    int *indices = malloc((size_t)batch_size * sizeof *indices);
    if (!indices) return zt_fail(ZT_ERR_NOMEM, "evaluation indices");
    zt_status s = ZT_OK;
    for (int first = 0; s == ZT_OK && first < ds->n_examples; first += batch_size) {
        int n = ds->n_examples - first < batch_size ? ds->n_examples - first : batch_size;
        for (int i = 0; i < n; i++) indices[i] = first + i;
        zt_task_batch b;
        s = zt_task_batch_build(ds, indices, n, o->model->cfg.pad_token_id, 0, &b);
        if (s != ZT_OK) break;
        double batch_loss = 0.0;
        s = zt_opt_batch_loss(o, &b, &batch_loss);
        if (s == ZT_OK) total_loss += batch_loss * n;
        if (s == ZT_OK && ds->kind == ZT_TASK_CLASSIFICATION) {
            double *scores = malloc((size_t)b.n_sequences * sizeof *scores);
            zt_targets t = {b.n_targets, b.target_rows, b.target_ids, b.target_sequence};
            if (!scores) s = zt_fail(ZT_ERR_NOMEM, "scores");
            else {
                zt_candidate_scores(o->logprobs, &t, b.n_sequences, scores);
                for (int seq = 0; seq < b.n_sequences;) {
                    int e = b.example_of_sequence[seq], count = 0;
                    while (seq + count < b.n_sequences && b.example_of_sequence[seq + count] == e)
                        count++;
                    correct += best_candidate(scores, b.candidate_of_sequence, seq, count) == b.label[e];
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
    *accuracy = ds->kind == ZT_TASK_CLASSIFICATION ? (double)correct / ds->n_examples : -1.0;
    return ZT_OK;
}
