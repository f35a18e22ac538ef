/* Loading a byte-level BPE tokenizer from the slow-tokenizer files (vocab.json + merges.txt) or
 * from HF's fast tokenizer.json. Every error names the file, and where it can the line or the
 * JSON path, at fault. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/status.h"
#include "io/jsonl.h"
#include "text/text_internal.h"

/* Spellings that become special tokens when only vocab.json + merges.txt are given: OPT's four
 * (docs/spec.md §3.1) and GPT-2's end-of-text. */
static const char *const default_special_tokens[] = {"<s>", "<pad>", "</s>", "<unk>",
                                                     "<|endoftext|>"};

enum { WHERE_MAX = 1200 };

static zt_status read_whole_file(const char *path, char **out, size_t *out_len) {
    *out = NULL;
    FILE *file = fopen(path, "rb");
    if (!file) {
        if (errno == ENOENT) return zt_fail(ZT_ERR_MISSING, "%s: no such file", path);
        return zt_fail(ZT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    size_t capacity = 1 << 16, len = 0;
    char *buffer = zt_malloc(capacity);
    zt_status status = ZT_OK;
    while (buffer) {
        if (len + 1 >= capacity) {
            char *grown = zt_realloc(buffer, capacity * 2);
            if (!grown) break;
            buffer = grown;
            capacity *= 2;
        }
        size_t got = fread(buffer + len, 1, capacity - len - 1, file);
        len += got;
        if (got == 0) break;
    }
    if (!buffer || len + 1 >= capacity) {
        status = zt_fail(ZT_ERR_NOMEM, "%s: out of memory reading the file", path);
    } else if (ferror(file)) {
        status = zt_fail(ZT_ERR_IO, "%s: read error: %s", path, strerror(errno));
    }
    fclose(file);
    if (status != ZT_OK) {
        free(buffer);
        return status;
    }
    buffer[len] = '\0';
    *out = buffer;
    *out_len = len;
    return ZT_OK;
}

static int line_of_offset(const char *text, size_t offset) {
    int line = 1;
    for (size_t i = 0; i < offset; i++)
        line += text[i] == '\n';
    return line;
}

static zt_status parse_json_file(const char *path, cJSON **out) {
    char *text = NULL;
    size_t len = 0;
    ZT_TRY(read_whole_file(path, &text, &len));
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    zt_status status = ZT_OK;
    if (!root) {
        size_t offset = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        status = zt_fail(ZT_ERR_FORMAT, "%s:%d: invalid JSON near \"%.20s\"", path,
                         line_of_offset(text, offset), text + offset);
    } else if (!cJSON_IsObject(root)) {
        status = zt_fail(ZT_ERR_FORMAT, "%s: expected a JSON object at the top level", path);
        cJSON_Delete(root);
        root = NULL;
    } else if (zt_json_duplicate_key(root)) {
        status = zt_fail(ZT_ERR_FORMAT, "%s: key \"%s\" appears twice", path,
                         zt_json_duplicate_key(root));
        cJSON_Delete(root);
        root = NULL;
    }
    free(text);
    *out = root;
    return status;
}

static zt_status json_token_id(const cJSON *value, const char *where, const char *token,
                               int32_t *id) {
    if (!cJSON_IsNumber(value) || value->valuedouble < 0 || value->valuedouble >= INT32_MAX ||
        value->valuedouble != floor(value->valuedouble))
        return zt_fail(ZT_ERR_FORMAT, "%s: id of \"%s\" is not a non-negative integer", where,
                       token);
    *id = (int32_t)value->valuedouble;
    return ZT_OK;
}

/* Adds every "token": id of a JSON object (vocab.json, or model.vocab of tokenizer.json). */
static zt_status add_vocab_object(zt_tokenizer *tok, const cJSON *vocab, const char *where) {
    for (const cJSON *entry = vocab->child; entry; entry = entry->next) {
        int32_t id = 0;
        ZT_TRY(json_token_id(entry, where, entry->string, &id));
        ZT_TRY(zt_tokenizer_add_token(tok, entry->string, strlen(entry->string), id, where));
    }
    return ZT_OK;
}

static zt_status vocab_object_max_id(const cJSON *vocab, const char *where, int32_t *max_id) {
    for (const cJSON *entry = vocab->child; entry; entry = entry->next) {
        int32_t id = 0;
        ZT_TRY(json_token_id(entry, where, entry->string, &id));
        if (id > *max_id) *max_id = id;
    }
    return ZT_OK;
}

/* merges.txt as tokenizers reads it: lines (without "\n" or "\r\n"), "#version" lines skipped,
 * every other line exactly two symbols split by one space. The last line counts even without a
 * trailing newline (GPT-2's slow reader, split("\n")[1:-1], would drop it; docs/spec.md §9 A10). */
static zt_status add_merges_text(zt_tokenizer *tok, const char *path, const char *text,
                                 size_t len) {
    char where[WHERE_MAX];
    int line_number = 0;
    for (size_t line_start = 0; line_start < len;) {
        const char *newline = memchr(text + line_start, '\n', len - line_start);
        size_t line_end = newline ? (size_t)(newline - text) : len;
        size_t next_start = line_end + 1;
        line_number++;
        if (line_end > line_start && text[line_end - 1] == '\r') line_end--;
        const char *line = text + line_start;
        size_t line_len = line_end - line_start;
        line_start = next_start;
        if (line_len >= 8 && memcmp(line, "#version", 8) == 0) continue;
        const char *space = memchr(line, ' ', line_len);
        if (!space || memchr(space + 1, ' ', (size_t)(line + line_len - space - 1)))
            return zt_fail(ZT_ERR_FORMAT,
                           "%s:%d: expected two symbols separated by one space, got \"%.*s\"", path,
                           line_number, (int)(line_len > 80 ? 80 : line_len), line);
        snprintf(where, sizeof where, "%s:%d", path, line_number);
        size_t left_len = (size_t)(space - line);
        ZT_TRY(
            zt_tokenizer_add_merge(tok, line, left_len, space + 1, line_len - left_len - 1, where));
    }
    return ZT_OK;
}

static zt_status load_files_into(zt_tokenizer *tok, const char *vocab_path,
                                 const char *merges_path) {
    cJSON *vocab = NULL;
    ZT_TRY(parse_json_file(vocab_path, &vocab));
    int32_t max_id = -1;
    zt_status status = vocab_object_max_id(vocab, vocab_path, &max_id);
    if (status == ZT_OK && max_id < 0)
        status = zt_fail(ZT_ERR_FORMAT, "%s: the vocabulary is empty", vocab_path);
    if (status == ZT_OK)
        status = zt_tokenizer_reserve(tok, max_id, (size_t)cJSON_GetArraySize(vocab));
    if (status == ZT_OK) status = add_vocab_object(tok, vocab, vocab_path);
    cJSON_Delete(vocab);
    ZT_TRY(status);

    char *merges = NULL;
    size_t merges_len = 0;
    ZT_TRY(read_whole_file(merges_path, &merges, &merges_len));
    status = add_merges_text(tok, merges_path, merges, merges_len);
    free(merges);
    ZT_TRY(status);

    size_t n_defaults = sizeof default_special_tokens / sizeof default_special_tokens[0];
    for (size_t i = 0; i < n_defaults; i++) {
        int32_t id = zt_tokenizer_token_id(tok, default_special_tokens[i]);
        if (id >= 0) ZT_TRY(zt_tokenizer_add_added_token(tok, id, true, vocab_path));
    }
    return zt_tokenizer_finish(tok, vocab_path);
}

zt_status zt_tokenizer_load_files(const char *vocab_json_path, const char *merges_txt_path,
                                  zt_tokenizer **out) {
    if (!out || !vocab_json_path || !merges_txt_path)
        return zt_fail(ZT_ERR_INVALID_ARG, "tokenizer_load_files: NULL argument");
    *out = NULL;
    zt_tokenizer *tok = NULL;
    ZT_TRY(zt_tokenizer_create_empty(&tok));
    zt_status status = load_files_into(tok, vocab_json_path, merges_txt_path);
    if (status != ZT_OK) {
        zt_tokenizer_free(tok);
        return status;
    }
    *out = tok;
    return ZT_OK;
}

/* ---- tokenizer.json -------------------------------------------------------------------------- */

/* obj[key] as a bool; absent or null gives the default. */
static zt_status json_bool(const cJSON *obj, const char *key, bool fallback, const char *where,
                           bool *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!item || cJSON_IsNull(item)) {
        *out = fallback;
        return ZT_OK;
    }
    if (!cJSON_IsBool(item))
        return zt_fail(ZT_ERR_FORMAT, "%s: \"%s\" must be true or false", where, key);
    *out = cJSON_IsTrue(item);
    return ZT_OK;
}

/* Fails when obj[key] is present with a value that changes tokenization in a way this
 * tokenizer does not implement (a non-empty string or a non-zero number). */
static zt_status reject_option(const cJSON *obj, const char *key, const char *where) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!item || cJSON_IsNull(item) || cJSON_IsFalse(item)) return ZT_OK;
    if (cJSON_IsString(item) && item->valuestring[0] == '\0') return ZT_OK;
    if (cJSON_IsNumber(item) && item->valuedouble == 0) return ZT_OK;
    return zt_fail(ZT_ERR_FORMAT, "%s: model option \"%s\" is not supported", where, key);
}

static const char *json_type_name(const cJSON *obj) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(obj, "type");
    return cJSON_IsString(type) ? type->valuestring : NULL;
}

static zt_status read_json_pipeline(zt_tokenizer *tok, const cJSON *root, const char *path) {
    const cJSON *normalizer = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (normalizer && !cJSON_IsNull(normalizer))
        return zt_fail(ZT_ERR_FORMAT, "%s: normalizer \"%s\" is not supported (need none)", path,
                       json_type_name(normalizer) ? json_type_name(normalizer) : "?");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const char *pre_type = pre ? json_type_name(pre) : NULL;
    if (!pre_type || strcmp(pre_type, "ByteLevel") != 0)
        return zt_fail(ZT_ERR_FORMAT, "%s: pre_tokenizer \"%s\" is not supported (need ByteLevel)",
                       path, pre_type ? pre_type : "none");
    /* tokenizers' ByteLevel defaults: add_prefix_space true, use_regex true. */
    char where[WHERE_MAX];
    snprintf(where, sizeof where, "%s: pre_tokenizer", path);
    ZT_TRY(json_bool(pre, "add_prefix_space", true, where, &tok->add_prefix_space));
    ZT_TRY(json_bool(pre, "use_regex", true, where, &tok->use_regex));
    const cJSON *decoder = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    const char *decoder_type = decoder ? json_type_name(decoder) : NULL;
    if (decoder && !cJSON_IsNull(decoder) && (!decoder_type || strcmp(decoder_type, "ByteLevel")))
        return zt_fail(ZT_ERR_FORMAT, "%s: decoder \"%s\" is not supported (need ByteLevel)", path,
                       decoder_type ? decoder_type : "?");
    return ZT_OK;
}

static zt_status add_json_merges(zt_tokenizer *tok, const cJSON *merges, const char *path) {
    char where[WHERE_MAX];
    int index = 0;
    for (const cJSON *merge = merges->child; merge; merge = merge->next, index++) {
        snprintf(where, sizeof where, "%s: model.merges[%d]", path, index);
        if (cJSON_IsString(merge)) { /* "a b", the older form */
            const char *text = merge->valuestring;
            const char *space = strchr(text, ' ');
            if (!space || strchr(space + 1, ' '))
                return zt_fail(ZT_ERR_FORMAT, "%s: expected \"a b\", got \"%.80s\"", where, text);
            ZT_TRY(zt_tokenizer_add_merge(tok, text, (size_t)(space - text), space + 1,
                                          strlen(space + 1), where));
        } else if (cJSON_IsArray(merge) && cJSON_GetArraySize(merge) == 2 &&
                   cJSON_IsString(merge->child) && cJSON_IsString(merge->child->next)) {
            const char *left = merge->child->valuestring, *right = merge->child->next->valuestring;
            ZT_TRY(zt_tokenizer_add_merge(tok, left, strlen(left), right, strlen(right), where));
        } else {
            return zt_fail(ZT_ERR_FORMAT, "%s: expected \"a b\" or [\"a\", \"b\"]", where);
        }
    }
    return ZT_OK;
}

/* Checks one added_tokens entry and returns its id and spelling. */
static zt_status read_added_entry(const cJSON *entry, const char *where, int32_t *id,
                                  const char **content) {
    const cJSON *content_item = cJSON_GetObjectItemCaseSensitive(entry, "content");
    if (!cJSON_IsObject(entry) || !cJSON_IsString(content_item) || !content_item->valuestring[0])
        return zt_fail(ZT_ERR_FORMAT, "%s: expected an object with a non-empty \"content\"", where);
    *content = content_item->valuestring;
    ZT_TRY(json_token_id(cJSON_GetObjectItemCaseSensitive(entry, "id"), where, *content, id));
    static const char *const unsupported[] = {"lstrip", "rstrip", "single_word"};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        bool value = false;
        ZT_TRY(json_bool(entry, unsupported[i], false, where, &value));
        if (value)
            return zt_fail(ZT_ERR_FORMAT, "%s: added token \"%s\" sets %s, which is not supported",
                           where, *content, unsupported[i]);
    }
    return ZT_OK;
}

static zt_status load_json_into(zt_tokenizer *tok, const cJSON *root, const char *path) {
    char where[WHERE_MAX];
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return zt_fail(ZT_ERR_FORMAT, "%s: no \"model\" object", path);
    const char *model_type = json_type_name(model);
    if (model_type && strcmp(model_type, "BPE") != 0)
        return zt_fail(ZT_ERR_FORMAT, "%s: model type \"%s\" is not supported (need BPE)", path,
                       model_type);
    snprintf(where, sizeof where, "%s: model", path);
    static const char *const unsupported[] = {"dropout", "continuing_subword_prefix",
                                              "end_of_word_suffix", "byte_fallback"};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++)
        ZT_TRY(reject_option(model, unsupported[i], where));
    ZT_TRY(json_bool(model, "fuse_unk", false, where, &tok->fuse_unk));
    ZT_TRY(json_bool(model, "ignore_merges", false, where, &tok->ignore_merges));
    ZT_TRY(read_json_pipeline(tok, root, path));

    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(vocab))
        return zt_fail(ZT_ERR_FORMAT, "%s: model.vocab is not an object", path);
    if (!cJSON_IsArray(merges))
        return zt_fail(ZT_ERR_FORMAT, "%s: model.merges is not an array", path);
    if (added && !cJSON_IsArray(added) && !cJSON_IsNull(added))
        return zt_fail(ZT_ERR_FORMAT, "%s: added_tokens is not an array", path);

    /* Added tokens may extend the id space past model.vocab, so size the tables for both. */
    snprintf(where, sizeof where, "%s: model.vocab", path);
    int32_t max_id = -1;
    ZT_TRY(vocab_object_max_id(vocab, where, &max_id));
    int index = 0;
    for (const cJSON *entry = added ? added->child : NULL; entry; entry = entry->next, index++) {
        char entry_where[WHERE_MAX];
        snprintf(entry_where, sizeof entry_where, "%s: added_tokens[%d]", path, index);
        int32_t id;
        const char *content;
        ZT_TRY(read_added_entry(entry, entry_where, &id, &content));
        if (id > max_id) max_id = id;
    }
    if (max_id < 0) return zt_fail(ZT_ERR_FORMAT, "%s: the vocabulary is empty", path);
    size_t n_tokens = (size_t)cJSON_GetArraySize(vocab) + (size_t)index;
    ZT_TRY(zt_tokenizer_reserve(tok, max_id, n_tokens));
    ZT_TRY(add_vocab_object(tok, vocab, where));
    ZT_TRY(add_json_merges(tok, merges, path));

    index = 0;
    for (const cJSON *entry = added ? added->child : NULL; entry; entry = entry->next, index++) {
        snprintf(where, sizeof where, "%s: added_tokens[%d]", path, index);
        int32_t id;
        const char *content;
        ZT_TRY(read_added_entry(entry, where, &id, &content));
        int32_t existing = zt_tokenizer_token_id(tok, content);
        if (existing >= 0 && existing != id)
            return zt_fail(ZT_ERR_FORMAT, "%s: \"%s\" has id %d here but %d in model.vocab", where,
                           content, (int)id, (int)existing);
        if (existing < 0) ZT_TRY(zt_tokenizer_add_token(tok, content, strlen(content), id, where));
        bool special = false;
        ZT_TRY(json_bool(entry, "special", false, where, &special));
        ZT_TRY(zt_tokenizer_add_added_token(tok, id, special, where));
    }

    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (cJSON_IsString(unk)) {
        tok->unk_id = zt_tokenizer_token_id(tok, unk->valuestring);
        if (tok->unk_id < 0)
            return zt_fail(ZT_ERR_FORMAT, "%s: model.unk_token \"%s\" is not in the vocabulary",
                           path, unk->valuestring);
    }
    return zt_tokenizer_finish(tok, path);
}

zt_status zt_tokenizer_load_json(const char *tokenizer_json_path, zt_tokenizer **out) {
    if (!out || !tokenizer_json_path)
        return zt_fail(ZT_ERR_INVALID_ARG, "tokenizer_load_json: NULL argument");
    *out = NULL;
    cJSON *root = NULL;
    ZT_TRY(parse_json_file(tokenizer_json_path, &root));
    zt_tokenizer *tok = NULL;
    zt_status status = zt_tokenizer_create_empty(&tok);
    if (status == ZT_OK) status = load_json_into(tok, root, tokenizer_json_path);
    cJSON_Delete(root);
    if (status != ZT_OK) {
        zt_tokenizer_free(tok);
        return status;
    }
    *out = tok;
    return ZT_OK;
}

static int file_exists(const char *path) {
    struct stat info;
    return stat(path, &info) == 0 && S_ISREG(info.st_mode);
}

zt_status zt_tokenizer_load_dir(const char *dir, zt_tokenizer **out) {
    if (!out || !dir) return zt_fail(ZT_ERR_INVALID_ARG, "tokenizer_load_dir: NULL argument");
    *out = NULL;
    size_t dir_len = strlen(dir);
    if (dir_len > PATH_MAX)
        return zt_fail(ZT_ERR_INVALID_ARG, "tokenizer_load_dir: directory name too long");
    char first[PATH_MAX + 32], second[PATH_MAX + 32];
    snprintf(first, sizeof first, "%s/tokenizer.json", dir);
    if (file_exists(first)) return zt_tokenizer_load_json(first, out);
    snprintf(first, sizeof first, "%s/vocab.json", dir);
    snprintf(second, sizeof second, "%s/merges.txt", dir);
    if (!file_exists(first) && !file_exists(second))
        return zt_fail(ZT_ERR_MISSING, "%s: no tokenizer.json, nor vocab.json + merges.txt", dir);
    return zt_tokenizer_load_files(first, second, out);
}

zt_status zt_tokenizer_open_model_dir(const char *dir, int bos_mezo, zt_tokenizer **out) {
    zt_status s = zt_tokenizer_load_dir(dir, out);
    if (s == ZT_ERR_MISSING) {
        *out = NULL;
        zt_clear_error();
        return ZT_OK;
    }
    if (s == ZT_OK && bos_mezo) s = zt_tokenizer_set_bos(*out, ZT_TOKENIZER_BOS_MEZO);
    if (s != ZT_OK) {
        zt_tokenizer_free(*out);
        *out = NULL;
    }
    return s;
}
