/* zotune: forward-only (zeroth-order) fine-tuning of OPT-style language models.
 *
 * The public C API. Every call returns a zt_status; on failure the thread-local text from
 * zt_last_error() names the file, tensor, line or option at fault. The library never exits.
 *
 * Shape legend for pointer parameters: B batch, T sequence length, C hidden size, E embedding
 * (word_embed_proj_dim), F ffn size, V vocabulary, H heads, D head dim, N = B*T rows,
 * R rows that carry a target.
 */
#ifndef ZOTUNE_H
#define ZOTUNE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum zt_status {
    ZT_OK = 0,
    ZT_ERR_INVALID_ARG = -1, /* a caller passed something impossible (bad option, shape) */
    ZT_ERR_IO = -2,          /* open/read/write/mmap failed */
    ZT_ERR_FORMAT = -3,      /* a file is malformed: bad header, JSON, offsets, dtype */
    ZT_ERR_SHAPE = -4,       /* tensor shape disagrees with the config */
    ZT_ERR_MISSING = -5,     /* a required tensor, key or file is absent */
    ZT_ERR_NOMEM = -6,       /* allocation failed */
    ZT_ERR_UNAVAILABLE = -7, /* feature not compiled in, or no device */
    ZT_ERR_CUDA = -8,        /* a CUDA / cuBLAS / cuRAND / NCCL call failed */
    ZT_ERR_NUMERIC = -9,     /* NaN/Inf where a finite value is required */
    ZT_ERR_INTERNAL = -10,   /* a broken invariant inside zotune */
    ZT_ERR_CONFLICT = -11,   /* the request contradicts saved state (resume with other options) */
} zt_status;

/* Storage dtypes of weights. Activations are always f32. */
typedef enum zt_dtype { ZT_F32 = 0, ZT_F16 = 1, ZT_BF16 = 2 } zt_dtype;

/* Text of the last error raised on this thread ("" if none). */
const char *zt_last_error(void);
/* Short name of a status code ("format error", ...). */
const char *zt_status_name(zt_status status);
/* "F32" / "F16" / "BF16". */
const char *zt_dtype_name(zt_dtype dtype);
size_t zt_dtype_size(zt_dtype dtype);
const char *zt_version(void);

#ifdef __cplusplus
}
#endif
#endif
