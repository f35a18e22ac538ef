/* A model argument that is a checkpoint directory or only a config.json (planned without
 * weights), and the --dtype names: shared by info and bench. */
#ifndef ZT_CLI_MODEL_INPUT_H
#define ZT_CLI_MODEL_INPUT_H

#include <stddef.h>

/* 1 when `input` is a config.json file, or a directory without safetensors weights (its
 * config.json path goes to config); 0 when it holds weights. */
int zt_cli_config_only(const char *input, char *config, size_t size);

/* "f32", "f16", "bf16" (or torch's names) -> zt_dtype; -1 otherwise. */
int zt_cli_parse_dtype(const char *text);

#endif
