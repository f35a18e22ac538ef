/* A first-order step inside `zotune train` (trainer.c): the run's gradient block and backprop
 * buffers, and one step: gradients over the step's micro-batches, clipping, the update. Internal
 * to src/train/. */
#ifndef ZT_TRAIN_FIRST_ORDER_RUN_H
#define ZT_TRAIN_FIRST_ORDER_RUN_H

#include "train/train_run.h"

/* The gradient block (tracked as optimizer memory) and the backprop buffers for up to
 * `sequences` x `seq_len` per backward pass. */
zt_status zt_fo_run_prepare(zt_run *r, int sequences, int seq_len);
void zt_fo_run_release(zt_run *r);

/* Step `step` on the examples at r->indices: *rec describes it (ZT_RECORD_FO_STEP) once the
 * weights have moved. A non-finite loss moves nothing: with --on-nonfinite skip, *skipped is set
 * (rec->skip_reason says why), else ZT_ERR_NUMERIC. A non-finite weight sends the run back to its
 * last logged state (its snapshot) and stops it with ZT_ERR_NUMERIC. */
zt_status zt_fo_run_step(zt_run *r, int step, zt_step_record *rec, int *skipped);

#endif
