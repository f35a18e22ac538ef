/* The decoder families zotune knows, chosen by config.json's model_type (docs/design.md §8). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "arch.h"
#include "core/alloc.h"
#include "opt/opt.h"

/* The first is the default: configs that name no model_type, or a file that does not parse,
 * go to it, and its own reader reports what is wrong. */
static const zt_arch *const families[] = {&zt_opt_arch};

enum { CONFIG_PEEK_MAX_BYTES = 1 << 20 };

/* config.json's model_type, or "" when the file cannot say. */
static void peek_model_type(const char *path, char *out, size_t size) {
    out[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) return;
    char *text = zt_malloc(CONFIG_PEEK_MAX_BYTES + 1);
    size_t n = text ? fread(text, 1, CONFIG_PEEK_MAX_BYTES, f) : 0;
    fclose(f);
    if (!text) return;
    text[n] = '\0';
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (cJSON_IsString(type)) snprintf(out, size, "%s", type->valuestring);
    cJSON_Delete(root);
}

const zt_arch *zt_arch_for_config(const char *config_path) {
    char model_type[64];
    peek_model_type(config_path, model_type, sizeof model_type);
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (strcmp(model_type, families[i]->model_type) == 0) return families[i];
    return families[0];
}
