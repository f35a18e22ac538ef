#include "core/fault.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

static long alloc_count, alloc_fail_at;
static long write_count, write_fail_at;
static int write_error_number, write_sticky, fault_fired;

void zt_fault_arm_alloc(long nth) {
    __atomic_store_n(&alloc_count, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fault_fired, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&alloc_fail_at, nth, __ATOMIC_SEQ_CST);
}

void zt_fault_arm_write(long nth, int error_number, int sticky) {
    write_error_number = error_number;
    write_sticky = sticky;
    __atomic_store_n(&write_count, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fault_fired, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&write_fail_at, nth, __ATOMIC_SEQ_CST);
}

void zt_fault_disarm(void) {
    zt_fault_arm_alloc(0);
    zt_fault_arm_write(0, 0, 0);
}

long zt_fault_allocs_seen(void) { return __atomic_load_n(&alloc_count, __ATOMIC_SEQ_CST); }
long zt_fault_writes_seen(void) { return __atomic_load_n(&write_count, __ATOMIC_SEQ_CST); }
int zt_fault_fired(void) { return __atomic_load_n(&fault_fired, __ATOMIC_SEQ_CST); }

int zt_fault_alloc_fails(void) {
    long n = __atomic_add_fetch(&alloc_count, 1, __ATOMIC_RELAXED);
    long at = __atomic_load_n(&alloc_fail_at, __ATOMIC_RELAXED);
    if (at <= 0 || n != at) return 0;
    __atomic_store_n(&fault_fired, 1, __ATOMIC_RELAXED);
    return 1;
}

int zt_fault_write_fails(void) {
    long n = __atomic_add_fetch(&write_count, 1, __ATOMIC_RELAXED);
    long at = __atomic_load_n(&write_fail_at, __ATOMIC_RELAXED);
    if (at <= 0 || n < at || (n > at && !write_sticky)) return 0;
    __atomic_store_n(&fault_fired, 1, __ATOMIC_RELAXED);
    errno = write_error_number ? write_error_number : EIO;
    return 1;
}

int zt_write_fd(int fd, const void *data, size_t n_bytes) {
    if (zt_fault_write_fails()) return -1;
    const uint8_t *cursor = data;
    while (n_bytes > 0) {
        /* Linux writes at most ~2 GiB per call; stay well under it. */
        size_t step = n_bytes < ((size_t)1 << 30) ? n_bytes : ((size_t)1 << 30);
        ssize_t written = write(fd, cursor, step);
        if (written < 0 && errno == EINTR) continue;
        if (written < 0) return -1;
        if (written == 0) {
            errno = EIO;
            return -1;
        }
        cursor += written;
        n_bytes -= (size_t)written;
    }
    return 0;
}

int zt_write_stream(FILE *stream, const void *data, size_t n_bytes) {
    if (zt_fault_write_fails()) return -1;
    errno = 0;
    if (n_bytes > 0 && fwrite(data, 1, n_bytes, stream) != n_bytes) {
        if (errno == 0) errno = EIO;
        return -1;
    }
    return 0;
}

int zt_print_stream(FILE *stream, const char *fmt, ...) {
    char small[512];
    va_list args;
    va_start(args, fmt);
    int len = vsnprintf(small, sizeof small, fmt, args);
    va_end(args);
    if (len < 0) {
        errno = EINVAL;
        return -1;
    }
    if ((size_t)len < sizeof small) return zt_write_stream(stream, small, (size_t)len);
    char *large = malloc((size_t)len + 1);
    if (!large) return -1;
    va_start(args, fmt);
    vsnprintf(large, (size_t)len + 1, fmt, args);
    va_end(args);
    int result = zt_write_stream(stream, large, (size_t)len);
    free(large);
    return result;
}
