/* Evaluation of the unperturbed model on a dataset (MeZO, docs/spec.md §4.4): `zotune eval`
 * and the trainer's dev evaluations. */
#ifndef ZT_TRAIN_EVAL_H
#define ZT_TRAIN_EVAL_H

#include "data/dataset.h"
#include "train/objective.h"

typedef struct zt_eval_result {
    double loss;     /* mean per example (classification CE, LM / completion NLL) */
    double accuracy; /* classification: argmax of candidate scores (first on ties); -1 else */
    double f1, exact_match; /* generation: greedy decoding vs the answers; -1 else */
    double metric;          /* the one to maximise: accuracy, F1, or -loss for LM */
    const char *metric_name;
} zt_eval_result;

struct zt_tokenizer;
/* Generation needs the tokenizer (decoding, the "\n" stop token); may be NULL otherwise. */
/* batch_size examples go through each forward; for generation, batch_size prompts are decoded
 * together (zt_generate_greedy_batch). */
zt_status zt_evaluate(zt_task_objective *objective, const zt_dataset *ds, int batch_size,
                      const struct zt_tokenizer *tok, zt_eval_result *result);
/* zt_evaluate, and for generation records each example's answer: predictions (n_examples)
 * receives malloc'd texts in example order (left NULL for other kinds; none on failure). */
zt_status zt_evaluate_predictions(zt_task_objective *objective, const zt_dataset *ds,
                                  int batch_size, const struct zt_tokenizer *tok,
                                  zt_eval_result *result, char **predictions);

#endif
