/* SQuAD's answer metrics (MeZO metrics.py, docs/spec.md §4.4): normalise (lower-case, drop
 * ASCII punctuation, drop the articles a/an/the, collapse whitespace), then exact match and
 * bag-of-tokens F1, each the maximum over the reference answers. */
#ifndef ZT_TRAIN_METRICS_H
#define ZT_TRAIN_METRICS_H

/* A malloc'd normalised copy (NULL when out of memory). */
char *zt_normalize_answer(const char *text);

/* Max over answers of token F1 / exact match against prediction (0 or 1 for EM). */
double zt_answer_f1(const char *prediction, char *const *answers, int n_answers);
double zt_answer_exact_match(const char *prediction, char *const *answers, int n_answers);

#endif
