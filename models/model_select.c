/* Which tensors train: --trainable's patterns over the tensor table. */
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "core/alloc.h"
#include "core/status.h"

/* A pattern matches the canonical name or the name without the family's short prefix. */
static int pattern_matches(const zt_arch *arch, const char *pattern, const char *name) {
    size_t n = strlen(arch->short_prefix);
    const char *short_name = strncmp(name, arch->short_prefix, n) == 0 ? name + n : name;
    return fnmatch(pattern, name, 0) == 0 || fnmatch(pattern, short_name, 0) == 0;
}

zt_status zt_model_select(const zt_model *m, const char *patterns, uint8_t *selected, int *count) {
    *count = 0;
    int all = !patterns || !*patterns || patterns[0] == '!';
    for (int i = 0; i < m->n_tensors; i++)
        selected[i] = (uint8_t)all;
    char *copy = patterns ? zt_strdup(patterns) : NULL;
    if (patterns && !copy) return zt_fail(ZT_ERR_NOMEM, "copying patterns");
    zt_status s = ZT_OK;
    char *save = NULL;
    for (char *tok = copy ? strtok_r(copy, ",", &save) : NULL; tok && s == ZT_OK;
         tok = strtok_r(NULL, ",", &save)) {
        int exclude = tok[0] == '!';
        int hits = 0;
        for (int i = 0; i < m->n_tensors; i++)
            if (pattern_matches(m->arch, tok + exclude, m->tensors[i].name)) {
                selected[i] = (uint8_t)!exclude;
                hits++;
            }
        if (hits == 0)
            s = zt_fail(ZT_ERR_INVALID_ARG,
                        "--trainable: pattern '%s' matches no tensor (names look like '%s' or "
                        "'%s')",
                        tok + exclude, m->arch->short_example, m->tensors[0].name);
    }
    free(copy);
    for (int i = 0; i < m->n_tensors; i++)
        *count += selected[i];
    if (s == ZT_OK && *count == 0)
        s = zt_fail(ZT_ERR_INVALID_ARG, "--trainable '%s' leaves no tensor to train", patterns);
    return s;
}
