/* The tracked allocator: every byte zotune holds on any backend is counted by category, so the
 * measured peak can be compared with the memory plan `zotune info` prints. */
#ifndef ZT_CORE_ALLOC_H
#define ZT_CORE_ALLOC_H

#include <stddef.h>

typedef enum zt_mem_category {
    ZT_MEM_WEIGHTS = 0,     /* the model's parameters, in their storage dtype */
    ZT_MEM_ACTIVATIONS = 1, /* per-forward buffers that scale with batch and sequence */
    ZT_MEM_SCRATCH = 2,     /* staging, GEMM conversion tiles, reductions */
    ZT_MEM_OPTIMIZER = 3,   /* optimizer state (momentum, AdaMM moments) */
    ZT_MEM_CATEGORIES = 4,
} zt_mem_category;

typedef struct zt_mem_stats {
    size_t current[ZT_MEM_CATEGORIES];
    size_t peak[ZT_MEM_CATEGORIES];
    size_t current_total;
    size_t peak_total; /* peak of the sum, not the sum of peaks */
} zt_mem_stats;

/* Accounting only: the backends call these around their real allocations. Thread-safe. */
void zt_mem_track_alloc(zt_mem_category category, size_t n_bytes);
void zt_mem_track_free(zt_mem_category category, size_t n_bytes);
void zt_mem_stats_get(zt_mem_stats *out);
/* Sets every peak to the current value (e.g. after loading, to measure one phase). */
void zt_mem_reset_peak(void);
const char *zt_mem_category_name(zt_mem_category category);

/* The library's one door to the heap: every malloc/calloc/realloc/strdup of zotune's own code goes
 * through these, so fault injection (core/fault.h) can fail any one of them. Host bookkeeping is
 * not tracked by category (tiny and not parameter-sized); the backends track their buffers. */
void *zt_malloc(size_t n_bytes);
void *zt_calloc(size_t count, size_t n_bytes);
void *zt_realloc(void *ptr, size_t n_bytes);
char *zt_strdup(const char *text);
/* As zt_malloc / zt_calloc, but never asks for zero bytes (so NULL always means failure). */
void *zt_xmalloc(size_t n_bytes);
void *zt_xcalloc(size_t count, size_t n_bytes);

#endif
