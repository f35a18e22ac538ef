/* Error reporting inside the library: set a message, return the status. */
#ifndef ZT_CORE_STATUS_H
#define ZT_CORE_STATUS_H

#include "zotune.h"

/* Records a printf-style message as this thread's last error and returns `status`, so a failing
 * path reads `return zt_fail(ZT_ERR_FORMAT, "%s: header length %llu exceeds ...", path, n);`. */
zt_status zt_fail(zt_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends context ("loading model.safetensors: ") to the current last error and returns status. */
zt_status zt_fail_context(zt_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void zt_clear_error(void);

#define ZT_TRY(expr)                                                                               \
    do {                                                                                           \
        zt_status zt_try_status_ = (expr);                                                         \
        if (zt_try_status_ != ZT_OK) return zt_try_status_;                                        \
    } while (0)

#endif
