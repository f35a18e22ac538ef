#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "zt_config.h"

enum { ZT_ERROR_TEXT_MAX = 2048 };
static _Thread_local char last_error_text[ZT_ERROR_TEXT_MAX];

zt_status zt_fail(zt_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error_text, sizeof last_error_text, fmt, ap);
    va_end(ap);
    return status;
}

zt_status zt_fail_context(zt_status status, const char *fmt, ...) {
    char prefix[ZT_ERROR_TEXT_MAX];
    char previous[ZT_ERROR_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(previous, last_error_text, sizeof previous);
    /* Truncation is acceptable for a message; build it piecewise so the compiler sees bounds. */
    size_t prefix_len = strnlen(prefix, sizeof prefix - 1);
    memcpy(last_error_text, prefix, prefix_len);
    size_t room = sizeof last_error_text - prefix_len - 1;
    size_t previous_len = strnlen(previous, room);
    memcpy(last_error_text + prefix_len, previous, previous_len);
    last_error_text[prefix_len + previous_len] = '\0';
    return status;
}

void zt_clear_error(void) { last_error_text[0] = '\0'; }

const char *zt_last_error(void) { return last_error_text; }

const char *zt_status_name(zt_status status) {
    switch (status) {
    case ZT_OK: return "ok";
    case ZT_ERR_INVALID_ARG: return "invalid argument";
    case ZT_ERR_IO: return "I/O error";
    case ZT_ERR_FORMAT: return "format error";
    case ZT_ERR_SHAPE: return "shape mismatch";
    case ZT_ERR_MISSING: return "missing";
    case ZT_ERR_NOMEM: return "out of memory";
    case ZT_ERR_UNAVAILABLE: return "unavailable";
    case ZT_ERR_CUDA: return "CUDA error";
    case ZT_ERR_NUMERIC: return "numeric error";
    case ZT_ERR_INTERNAL: return "internal error";
    case ZT_ERR_CONFLICT: return "conflict with the saved run";
    }
    return "unknown status";
}

const char *zt_dtype_name(zt_dtype dtype) {
    switch (dtype) {
    case ZT_F32: return "F32";
    case ZT_F16: return "F16";
    case ZT_BF16: return "BF16";
    }
    return "?";
}

size_t zt_dtype_size(zt_dtype dtype) { return dtype == ZT_F32 ? 4 : 2; }

const char *zt_version(void) { return ZT_VERSION; }
