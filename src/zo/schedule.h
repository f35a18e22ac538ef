/* Learning-rate and epsilon schedules over a run of K steps. */
#ifndef ZT_ZO_SCHEDULE_H
#define ZT_ZO_SCHEDULE_H

typedef enum zt_schedule_kind {
    ZT_SCHEDULE_CONSTANT = 0,
    ZT_SCHEDULE_COSINE = 1,  /* end + (start-end) * (1 + cos(pi k / K)) / 2   (docs/spec.md §9 B5) */
    ZT_SCHEDULE_LINEAR = 2,  /* start + (end-start) * k / K */
    ZT_SCHEDULE_PLATEAU = 3, /* start * factor^(number of plateaus observed) */
} zt_schedule_kind;

/* "constant", "cosine", "linear", "plateau" -> kind; -1 if unknown. */
int zt_schedule_parse(const char *name);
const char *zt_schedule_name(zt_schedule_kind kind);

/* Value at step k of K for constant/cosine/linear (plateau is tracked by the optimizer). */
double zt_schedule_value(zt_schedule_kind kind, double start, double end, int step, int total);

#endif
