/* Base weights + step log -> fine-tuned weights, with no forward pass (docs/design.md §2). */
#ifndef ZT_TRAIN_REPLAY_H
#define ZT_TRAIN_REPLAY_H

#include "zotune.h"

/* Applies every record of log_path to the model in base_dir and writes the result (HF format)
 * to out_dir. *n_steps receives the number of records applied. */
zt_status zt_replay(const char *base_dir, const char *log_path, const char *out_dir,
                    const char *device, int threads, int *n_steps);
/* The same for a run that started from --adapter: adapter_dir is that adapter, checked against
 * the fingerprint the log's header records (NULL: the run must not have started from one). */
zt_status zt_replay_adapted(const char *base_dir, const char *adapter_dir, const char *log_path,
                            const char *out_dir, const char *device, int threads, int *n_steps);

#endif
