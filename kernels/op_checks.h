/* Argument checks every backend makes, with one wording, so a bad call fails the same way on the
 * CPU and on CUDA (tests compare the messages). Host code; callable from .cu files. */
#ifndef ZT_OP_CHECKS_H
#define ZT_OP_CHECKS_H

#include <stddef.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

zt_status zt_check_dim(const char *op, const char *what, int value); /* value > 0 */
zt_status zt_check_ptr(const char *op, const char *what, const void *ptr);
/* A known dtype and, when `required`, data. */
zt_status zt_check_weight(const char *op, const char *what, zt_weight w, int required);
/* Fails when the byte ranges [a, a+a_bytes) and [b, b+b_bytes) overlap. */
zt_status zt_check_disjoint(const char *op, const char *a_name, const void *a, size_t a_bytes,
                            const char *b_name, const void *b, size_t b_bytes);
/* A perturbation: known distribution, n_terms >= 0, terms present, finite scale and
 * coefficients (a non-finite one would write NaN or Inf everywhere: refused before any write). */
zt_status zt_check_perturbation(const char *op, const zt_perturbation *p);
/* The update op's arguments other than its perturbation: dtype, finite lr and decay, betas in
 * [0, 1], AdaMM eps > 0, a state of the rule's size disjoint from theta. */
zt_status zt_check_update_args(const char *op, const void *theta, zt_dtype dtype, size_t n_elems,
                               const float *state, const zt_update *u);

#ifdef __cplusplus
}
#endif
#endif
