#include "fuzz_common.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/status.h"

static char scratch[256];

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...) {
    fprintf(stderr, "FUZZ INVARIANT BROKEN %s:%d: %s: ", file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(last zotune error: %s)\n", zt_last_error());
    abort();
}

/* libFuzzer leaves through exit(): the scratch directory goes with the process. */
static void remove_scratch(void) {
    DIR *dir = opendir(scratch);
    if (!dir) return;
    char path[512];
    for (struct dirent *entry; (entry = readdir(dir)) != NULL;) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", scratch, entry->d_name);
        unlink(path);
    }
    closedir(dir);
    rmdir(scratch);
}

const char *fuzz_dir(void) {
    if (scratch[0]) return scratch;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(scratch, sizeof scratch, "%s/zt-fuzz-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(scratch)) {
        perror(scratch);
        abort();
    }
    atexit(remove_scratch);
    return scratch;
}

void fuzz_path(char *out, size_t size, const char *name) {
    int n = snprintf(out, size, "%s/%s", fuzz_dir(), name);
    if (n < 0 || (size_t)n >= size) abort();
}

void fuzz_put(const char *name, const void *data, size_t size, char *path_out, size_t path_size) {
    char path[512];
    fuzz_path(path, sizeof path, name);
    if (path_out) snprintf(path_out, path_size, "%s", path);
    FILE *file = fopen(path, "wb");
    if (!file || (size && fwrite(data, 1, size, file) != size) || fclose(file) != 0) {
        perror(path);
        abort();
    }
}

void fuzz_remove(const char *const *names, int n) {
    char path[512];
    for (int i = 0; i < n; i++) {
        fuzz_path(path, sizeof path, names[i]);
        unlink(path);
    }
}

int fuzz_split(const uint8_t *data, size_t size, const uint8_t **parts, size_t *sizes,
               int max_parts) {
    const size_t sep_len = strlen(FUZZ_SEPARATOR);
    int n = 0;
    for (int i = 0; i < max_parts; i++) parts[i] = NULL, sizes[i] = 0;
    size_t start = 0;
    while (n < max_parts - 1) {
        const uint8_t *hit = size - start >= sep_len
                                 ? memmem(data + start, size - start, FUZZ_SEPARATOR, sep_len)
                                 : NULL;
        if (!hit) break;
        parts[n] = data + start;
        sizes[n] = (size_t)(hit - (data + start));
        n++;
        start = (size_t)(hit - data) + sep_len;
    }
    parts[n] = data + start;
    sizes[n] = size - start;
    return n + 1;
}

void fuzz_expect_begin(void) { zt_clear_error(); }

void fuzz_expect_reported(zt_status status, const char *call) {
    if (status == ZT_OK) return;
    FUZZ_CHECK(zt_last_error()[0] != '\0', "%s failed (%s) without a message", call,
               zt_status_name(status));
    FUZZ_CHECK(status != ZT_ERR_INTERNAL && status != ZT_ERR_NOMEM, "%s: %s", call,
               zt_status_name(status));
}

int fuzz_utf8_valid(const uint8_t *text, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t lead = text[i];
        if (lead < 0x80) {
            i++;
            continue;
        }
        size_t extra = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : 1;
        uint32_t min = extra == 3 ? 0x10000 : extra == 2 ? 0x800 : 0x80;
        if (lead < 0xC0 || lead > 0xF4 || n - i <= extra) return 0;
        uint32_t code = lead & (0x3F >> extra);
        for (size_t k = 1; k <= extra; k++) {
            if ((text[i + k] & 0xC0) != 0x80) return 0;
            code = code << 6 | (text[i + k] & 0x3F);
        }
        if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return 0;
        i += extra + 1;
    }
    return 1;
}
