/* What a command's model argument names (model_input.h). */
#include "cli/model_input.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/dtype.h"

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* A config.json given as such, or a directory without safetensors: the plan comes from the
 * config alone (written to `config`). */
int zt_cli_config_only(const char *input, char *config, size_t size) {
    if (is_file(input)) {
        snprintf(config, size, "%s", input);
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", input);
    if (is_file(path)) return 0;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", input);
    if (is_file(path)) return 0;
    snprintf(config, size, "%s/config.json", input);
    return 1;
}

/* "f32", "f16", "bf16" (or torch's names) -> zt_dtype; -1 otherwise. */
int zt_cli_parse_dtype(const char *text) {
    static const char *const names[][2] = {
        {"f32", "float32"}, {"f16", "float16"}, {"bf16", "bfloat16"}};
    for (int d = 0; d < 3; d++)
        if (strcmp(text, names[d][0]) == 0 || strcmp(text, names[d][1]) == 0) return d;
    return -1;
}
