/* Training snapshots: the state after `next_step` steps, written as a directory swap
 * (snapshot.tmp -> snapshot) so a crash at any moment leaves one complete snapshot. */
#ifndef ZT_TRAIN_SNAPSHOT_H
#define ZT_TRAIN_SNAPSHOT_H

#include "model.h"
#include "zo/engine.h"
#include "zo/optimizer.h"

/* observed_eval_step: the last evaluation the optimizer has observed (-1 for none), so resume
 * feeds a plateau schedule each logged evaluation exactly once. */
zt_status zt_snapshot_save(const char *output_dir, const zt_model *model, const zt_param_set *ps,
                           int state_copies, const zt_optimizer *optimizer, int next_step,
                           int observed_eval_step);

/* Does output_dir hold a snapshot? Sets *dir to its path (snapshot/ or, after a crash between
 * the two renames, snapshot.old/). */
int zt_snapshot_find(const char *output_dir, char *dir, size_t size);

/* Reads next_step and restores optimizer state (tensor state and policy blob) into an already
 * loaded model's parameter set. The weights themselves are loaded with zt_model_load(dir). */
zt_status zt_snapshot_load_state(const char *dir, zt_param_set *ps, int state_copies,
                                 zt_optimizer *optimizer, int *next_step, int *observed_eval_step);

#endif
