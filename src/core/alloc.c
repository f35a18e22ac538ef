#include "core/alloc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/fault.h"

static pthread_mutex_t mem_lock = PTHREAD_MUTEX_INITIALIZER;
static zt_mem_stats mem_stats;

void zt_mem_track_alloc(zt_mem_category category, size_t n_bytes) {
    pthread_mutex_lock(&mem_lock);
    mem_stats.current[category] += n_bytes;
    if (mem_stats.current[category] > mem_stats.peak[category])
        mem_stats.peak[category] = mem_stats.current[category];
    mem_stats.current_total += n_bytes;
    if (mem_stats.current_total > mem_stats.peak_total) mem_stats.peak_total = mem_stats.current_total;
    pthread_mutex_unlock(&mem_lock);
}

void zt_mem_track_free(zt_mem_category category, size_t n_bytes) {
    pthread_mutex_lock(&mem_lock);
    mem_stats.current[category] -= n_bytes;
    mem_stats.current_total -= n_bytes;
    pthread_mutex_unlock(&mem_lock);
}

void zt_mem_stats_get(zt_mem_stats *out) {
    pthread_mutex_lock(&mem_lock);
    *out = mem_stats;
    pthread_mutex_unlock(&mem_lock);
}

void zt_mem_reset_peak(void) {
    pthread_mutex_lock(&mem_lock);
    for (int c = 0; c < ZT_MEM_CATEGORIES; c++) mem_stats.peak[c] = mem_stats.current[c];
    mem_stats.peak_total = mem_stats.current_total;
    pthread_mutex_unlock(&mem_lock);
}

const char *zt_mem_category_name(zt_mem_category category) {
    static const char *names[ZT_MEM_CATEGORIES] = {"weights", "activations", "scratch", "optimizer"};
    return (unsigned)category < ZT_MEM_CATEGORIES ? names[category] : "?";
}

void *zt_malloc(size_t n_bytes) { return zt_fault_alloc_fails() ? NULL : malloc(n_bytes); }

void *zt_calloc(size_t count, size_t n_bytes) {
    return zt_fault_alloc_fails() ? NULL : calloc(count, n_bytes);
}

void *zt_realloc(void *ptr, size_t n_bytes) {
    return zt_fault_alloc_fails() ? NULL : realloc(ptr, n_bytes);
}

char *zt_strdup(const char *text) { return zt_fault_alloc_fails() ? NULL : strdup(text); }

void *zt_xmalloc(size_t n_bytes) { return zt_malloc(n_bytes ? n_bytes : 1); }

void *zt_xcalloc(size_t count, size_t n_bytes) {
    return zt_calloc(count ? count : 1, n_bytes ? n_bytes : 1);
}
