/* Learning-rate and epsilon schedules (schedule.h). */
#include "zo/schedule.h"

#include <math.h>
#include <string.h>

static const char *const schedule_names[] = {"constant", "cosine", "linear", "plateau"};
enum { SCHEDULE_COUNT = (int)(sizeof schedule_names / sizeof schedule_names[0]) };

int zt_schedule_parse(const char *name) {
    if (!name) return -1;
    for (int kind = 0; kind < SCHEDULE_COUNT; kind++)
        if (strcmp(name, schedule_names[kind]) == 0) return kind;
    return -1;
}

const char *zt_schedule_name(zt_schedule_kind kind) {
    if ((int)kind < 0 || (int)kind >= SCHEDULE_COUNT) return "unknown";
    return schedule_names[kind];
}

double zt_schedule_value(zt_schedule_kind kind, double start, double end, int step, int total) {
    if (total <= 0) return start;
    /* Past the last step a schedule holds its end value; the cosine would otherwise climb back. */
    int k = step < 0 ? 0 : step > total ? total : step;
    double progress = (double)k / (double)total;
    switch (kind) {
    case ZT_SCHEDULE_COSINE:
        /* docs/spec.md §9 B5: b + (a - b) * (1 + cos(pi k / K)) / 2, no warm-up. */
        return end + (start - end) * 0.5 * (1.0 + cos(M_PI * progress));
    case ZT_SCHEDULE_LINEAR:
        return start + (end - start) * progress;
    case ZT_SCHEDULE_CONSTANT:
    case ZT_SCHEDULE_PLATEAU: /* the factor is the optimizer's state (zt_optimizer_observe) */
    default:
        return start;
    }
}
