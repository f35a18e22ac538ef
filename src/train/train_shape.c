/* What a run's forwards hold at most, from its data: the rule the trainer sizes its workspace by
 * and `zotune info --train` plans with, in one place so the two cannot disagree. */
#include "data/dataset.h"
#include "train/generate.h"
#include "train/trainer.h"

/* Greedy decoding of ds's generation records, batch prompts at a time: the largest cache a
 * chunk may take, kept in shape when it is larger than what is there. */
static void plan_generation_cache(const zt_model *model, const zt_dataset *ds, int batch,
                                  zt_train_shape *shape) {
    if (ds->kind != ZT_TASK_GENERATION || ds->n_examples == 0) return;
    int longest = 0, largest = 0;
    for (int i = 0; i < ds->n_examples; i++) {
        int length = ds->examples[i].prompt_length;
        int budget = zt_generation_max_new(model, length);
        if (length > longest) longest = length;
        if (budget > largest) largest = budget;
    }
    if (largest == 0) return; /* nothing is ever decoded, so no cache is made */
    int prompts = batch < ds->n_examples ? batch : ds->n_examples;
    int columns = zt_generation_cache_columns(longest, largest);
    if (prompts > shape->cache_batch) shape->cache_batch = prompts;
    if (columns > shape->cache_columns) shape->cache_columns = columns;
}

void zt_train_shape_of(const zt_model *model, const zt_dataset *train, const zt_dataset *eval,
                       int batch_size, int eval_batch_size, int train_as_lm,
                       int generation_objective, zt_train_shape *shape) {
    shape->sequences = zt_dataset_max_sequences(train, batch_size, train_as_lm);
    shape->seq_len = train->max_sequence;
    shape->cache_batch = shape->cache_columns = 0;
    if (eval) {
        /* evaluation always scores every candidate */
        int sequences = zt_dataset_max_sequences(eval, eval_batch_size, 0);
        if (sequences > shape->sequences) shape->sequences = sequences;
        if (eval->max_sequence > shape->seq_len) shape->seq_len = eval->max_sequence;
        shape->seq_len = zt_generation_seq_len(eval, model, shape->seq_len);
        plan_generation_cache(model, eval, eval_batch_size, shape);
    }
    if (generation_objective) {
        shape->seq_len = zt_generation_seq_len(train, model, shape->seq_len);
        plan_generation_cache(model, train, batch_size, shape);
    }
}
