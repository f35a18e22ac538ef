/* Internal to models/: shared by the loader and the random-weights builder. */
#ifndef ZT_MODELS_OPT_INTERNAL_H
#define ZT_MODELS_OPT_INTERNAL_H

#include "opt.h"

/* Fills m->tensors (canonical order, shapes from m->cfg, offsets unset), the layer index table
 * and the special tensor indices. m->cfg must be set. */
zt_status zt_opt_build_table(zt_model *m);

#endif
