/* Fault injection for tests. Every heap allocation the library makes (zt_malloc and kin) and
 * every write it makes to a file (zt_write_fd, zt_write_stream) passes one counter here, so a
 * test can make exactly the N-th one fail and check that the failure is reported, leaks nothing
 * and leaves what was saved before intact. Disarmed, the cost is one relaxed atomic increment. */
#ifndef ZT_CORE_FAULT_H
#define ZT_CORE_FAULT_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

/* The nth allocation counted from now fails (returns NULL); 0 disarms. */
void zt_fault_arm_alloc(long nth);
/* The nth file write counted from now fails with error_number (ENOSPC, EIO); 0 disarms. With
 * sticky set, every write after it fails too (a disk that stays full). */
void zt_fault_arm_write(long nth, int error_number, int sticky);
void zt_fault_disarm(void);
/* How many allocations / writes were counted since the last arm or disarm. */
long zt_fault_allocs_seen(void);
long zt_fault_writes_seen(void);
/* Whether an armed fault has fired since the last arm. */
int zt_fault_fired(void);

/* Counts one allocation; 1 when it must fail. */
int zt_fault_alloc_fails(void);
/* Counts one write; when it must fail, sets errno and returns 1. */
int zt_fault_write_fails(void);

/* write(2) of all n bytes, retrying on EINTR and short writes: 0, or -1 with errno set. */
int zt_write_fd(int fd, const void *data, size_t n_bytes);
/* fwrite of all n bytes: 0, or -1 with errno set (EIO when the stream gives no reason). */
int zt_write_stream(FILE *stream, const void *data, size_t n_bytes);
/* zt_write_stream of a printf-formatted text. */
int zt_print_stream(FILE *stream, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
