#include "zo/steplog.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "core/fault.h"
#include "core/status.h"
#include "io/jsonl.h"

static const char *const rule_names[] = {"sgd", "sign", "momentum", "adamm"};
static const char *const dist_names[] = {"gaussian", "rademacher", "sphere"};
static const char *const skip_names[] = {"non-finite loss", "non-finite weights"};

struct zt_steplog {
    FILE *file;
    char path[4096];
};

static int append_text(char *buf, size_t size, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int append_text(char *buf, size_t size, size_t *used, const char *fmt, ...) {
    if (*used >= size) return 0;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *used, size - *used, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size - *used) {
        *used = size;
        return 0;
    }
    *used += (size_t)n;
    return 1;
}

/* JSON has no NaN or infinity: such a value is written as null and read back as NaN. */
static void append_number(char *buf, size_t size, size_t *used, const char *key, double value) {
    if (isfinite(value))
        append_text(buf, size, used, ",\"%s\":%.17g", key, value);
    else
        append_text(buf, size, used, ",\"%s\":null", key);
}

static zt_status format_other(const zt_step_record *r, char *buf, size_t size) {
    size_t used = 0;
    if (r->kind == ZT_RECORD_PHASE) {
        append_text(buf, size, &used, "{\"phase\":%d,\"step\":%d,\"optimizer\":\"%s\"}", r->phase,
                    r->step, r->fo_name);
    } else if (r->kind == ZT_RECORD_FO_STEP) {
        append_text(buf, size, &used, "{\"step\":%d,\"fo\":\"%s\"", r->step, r->fo_name);
        append_number(buf, size, &used, "loss", r->losses[0]);
        append_number(buf, size, &used, "lr", r->update.lr);
        append_number(buf, size, &used, "grad_norm", r->update.projected_grad);
        append_text(buf, size, &used, "}");
    } else if (r->kind == ZT_RECORD_SKIPPED) {
        append_text(buf, size, &used, "{\"step\":%d,\"seed\":\"%016llx\",\"skipped\":\"%s\"}",
                    r->step, (unsigned long long)r->step_seed, skip_names[r->skip_reason]);
    } else {
        append_text(buf, size, &used, "{\"eval\":%d", r->step);
        append_number(buf, size, &used, "loss", r->eval.loss);
        append_number(buf, size, &used, "metric", r->eval.metric);
        append_number(buf, size, &used, "accuracy", r->eval.accuracy);
        append_number(buf, size, &used, "f1", r->eval.f1);
        append_number(buf, size, &used, "em", r->eval.exact_match);
        append_text(buf, size, &used, "}");
    }
    if (used >= size)
        return zt_fail(ZT_ERR_INTERNAL, "step %d: log record longer than %zu bytes", r->step, size);
    return ZT_OK;
}

zt_status zt_steplog_format(const zt_step_record *r, char *buf, size_t size) {
    if (r->kind != ZT_RECORD_STEP) return format_other(r, buf, size);
    const zt_step_update *u = &r->update;
    size_t used = 0;
    append_text(buf, size, &used, "{\"step\":%d,\"seed\":\"%016llx\",\"losses\":[", r->step,
                (unsigned long long)r->step_seed);
    for (int k = 0; k < r->n_variants; k++)
        append_text(buf, size, &used, "%s%.17g", k ? "," : "", r->losses[k]);
    append_text(buf, size, &used,
                "],\"dist\":\"%s\",\"rule\":\"%s\",\"lr\":%.17g,\"wd\":%.17g,\"beta1\":%.17g,"
                "\"beta2\":%.17g,\"adam_eps\":%.17g,\"pg\":%.17g,\"step_size\":%.17g,\"sr\":%d,"
                "\"rseed\":\"%016llx\","
                "\"terms\":[",
                dist_names[r->dist], rule_names[u->rule], u->lr, u->weight_decay, u->beta1,
                u->beta2, u->adam_eps, u->projected_grad, u->step_size, r->stochastic_rounding,
                (unsigned long long)r->rounding_seed);
    for (int t = 0; t < u->n_terms; t++)
        append_text(buf, size, &used, "%s[\"%016llx\",%.9g]", t ? "," : "",
                    (unsigned long long)u->terms[t].seed, (double)u->terms[t].coeff);
    if (!append_text(buf, size, &used, "]}"))
        return zt_fail(ZT_ERR_INTERNAL, "step %d: log record longer than %zu bytes", r->step, size);
    return ZT_OK;
}

static zt_status write_header(FILE *f, const zt_steplog_header *h, const char *path) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "zotune_steplog", 2);
    cJSON_AddStringToObject(o, "optimizer", h->optimizer);
    cJSON_AddStringToObject(o, "trainable", h->trainable);
    cJSON_AddNumberToObject(o, "state_copies", h->state_copies);
    cJSON_AddStringToObject(o, "model", h->model);
    char seed[32];
    snprintf(seed, sizeof seed, "%016llx", h->run_seed);
    cJSON_AddStringToObject(o, "run_seed", seed);
    if (h->compute[0]) cJSON_AddStringToObject(o, "compute", h->compute);
    cJSON *run = cJSON_AddObjectToObject(o, "run");
    for (int i = 0; run && i < h->n_run; i++)
        cJSON_AddStringToObject(run, h->run[i].name, h->run[i].value);
    char *text = run ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!text) return zt_fail(ZT_ERR_NOMEM, "%s: formatting the log header", path);
    int ok = zt_print_stream(f, "%s\n", text) == 0 && fflush(f) == 0;
    cJSON_free(text);
    return ok ? ZT_OK : zt_fail(ZT_ERR_IO, "%s: writing the log header: %s", path, strerror(errno));
}

static zt_status parse_hex64(const cJSON *item, const char *path, int line, const char *key,
                             uint64_t *out) {
    if (!cJSON_IsString(item))
        return zt_fail(ZT_ERR_FORMAT, "%s:%d: \"%s\" must be a hex string", path, line, key);
    /* 1 to 16 hex digits and nothing else: strtoull would also take signs, spaces and "0x",
     * which no writer produces and other readers would read differently. */
    const char *text = item->valuestring;
    size_t n_digits = strspn(text, "0123456789abcdefABCDEF");
    if (n_digits == 0 || n_digits > 16 || text[n_digits] != '\0')
        return zt_fail(ZT_ERR_FORMAT, "%s:%d: \"%s\" = \"%s\" is not a 64-bit hex value", path,
                       line, key, text);
    *out = (uint64_t)strtoull(text, NULL, 16);
    return ZT_OK;
}

static zt_status get_number(const cJSON *o, const char *key, const char *path, int line,
                            double *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(o, key);
    /* JSON has no inf or nan: a value that overflows to one (1e999) cannot be written back. */
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble))
        return zt_fail(ZT_ERR_FORMAT, "%s:%d: missing or non-finite \"%s\"", path, line, key);
    *out = item->valuedouble;
    return ZT_OK;
}

static int name_index(const char *const *names, int count, const cJSON *item) {
    if (!cJSON_IsString(item)) return -1;
    for (int i = 0; i < count; i++)
        if (strcmp(names[i], item->valuestring) == 0) return i;
    return -1;
}

/* A step number: an integer in [0, INT_MAX), as JSON writes it. */
static zt_status get_step(const cJSON *o, const char *key, const char *path, int line, int *out) {
    double v = 0.0;
    ZT_TRY(get_number(o, key, path, line, &v));
    if (!(v >= 0.0 && v < 2147483647.0) || v != floor(v))
        return zt_fail(ZT_ERR_FORMAT, "%s:%d: \"%s\" = %.17g is not a step number", path, line, key,
                       v);
    *out = (int)v;
    return ZT_OK;
}

/* A number of an evaluation line, where null stands for NaN. */
static zt_status get_eval_number(const cJSON *o, const char *key, const char *path, int line,
                                 double *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsNull(item)) {
        *out = NAN;
        return ZT_OK;
    }
    return get_number(o, key, path, line, out);
}

static zt_status parse_eval(const cJSON *o, const char *path, int line, zt_step_record *r) {
    r->kind = ZT_RECORD_EVAL;
    ZT_TRY(get_step(o, "eval", path, line, &r->step));
    ZT_TRY(get_eval_number(o, "loss", path, line, &r->eval.loss));
    ZT_TRY(get_eval_number(o, "metric", path, line, &r->eval.metric));
    ZT_TRY(get_eval_number(o, "accuracy", path, line, &r->eval.accuracy));
    ZT_TRY(get_eval_number(o, "f1", path, line, &r->eval.f1));
    return get_eval_number(o, "em", path, line, &r->eval.exact_match);
}

static zt_status parse_record(const cJSON *o, const char *path, int line, zt_step_record *r) {
    memset(r, 0, sizeof *r);
    double v = 0.0;
    if (cJSON_HasObjectItem(o, "eval")) return parse_eval(o, path, line, r);
    const cJSON *phase = cJSON_GetObjectItemCaseSensitive(o, "phase");
    if (phase) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "optimizer");
        if (!cJSON_IsNumber(phase) || phase->valuedouble < 0 || phase->valuedouble > 64 ||
            phase->valuedouble != (double)phase->valueint || !cJSON_IsString(name) ||
            strlen(name->valuestring) >= sizeof r->fo_name)
            return zt_fail(ZT_ERR_FORMAT, "%s:%d: a phase line needs \"phase\" and \"optimizer\"",
                           path, line);
        ZT_TRY(get_step(o, "step", path, line, &r->step));
        r->kind = ZT_RECORD_PHASE;
        r->phase = phase->valueint;
        snprintf(r->fo_name, sizeof r->fo_name, "%s", name->valuestring);
        return ZT_OK;
    }
    ZT_TRY(get_step(o, "step", path, line, &r->step));
    const cJSON *fo = cJSON_GetObjectItemCaseSensitive(o, "fo");
    if (fo) {
        if (!cJSON_IsString(fo) || strlen(fo->valuestring) >= sizeof r->fo_name)
            return zt_fail(ZT_ERR_FORMAT, "%s:%d: \"fo\" must name an optimizer", path, line);
        r->kind = ZT_RECORD_FO_STEP;
        snprintf(r->fo_name, sizeof r->fo_name, "%s", fo->valuestring);
        r->n_variants = 1;
        ZT_TRY(get_number(o, "loss", path, line, &r->losses[0]));
        ZT_TRY(get_number(o, "lr", path, line, &r->update.lr));
        ZT_TRY(get_number(o, "grad_norm", path, line, &r->update.projected_grad));
        r->update.step_size = r->update.lr;
        return ZT_OK;
    }
    ZT_TRY(parse_hex64(cJSON_GetObjectItemCaseSensitive(o, "seed"), path, line, "seed",
                       &r->step_seed));
    const cJSON *skipped = cJSON_GetObjectItemCaseSensitive(o, "skipped");
    if (skipped) {
        int reason = name_index(skip_names, 2, skipped);
        if (reason < 0)
            return zt_fail(ZT_ERR_FORMAT, "%s:%d: unknown \"skipped\" reason", path, line);
        r->kind = ZT_RECORD_SKIPPED;
        r->skip_reason = (zt_skip_reason)reason;
        return ZT_OK;
    }
    const cJSON *losses = cJSON_GetObjectItemCaseSensitive(o, "losses");
    if (!cJSON_IsArray(losses) || cJSON_GetArraySize(losses) > ZT_MAX_VARIANTS)
        return zt_fail(ZT_ERR_FORMAT, "%s:%d: \"losses\" must be an array of at most %d numbers",
                       path, line, ZT_MAX_VARIANTS);
    const cJSON *item;
    cJSON_ArrayForEach(item, losses) {
        if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble))
            return zt_fail(ZT_ERR_FORMAT, "%s:%d: non-numeric or non-finite loss", path, line);
        r->losses[r->n_variants++] = item->valuedouble;
    }
    int dist = name_index(dist_names, 3, cJSON_GetObjectItemCaseSensitive(o, "dist"));
    int rule = name_index(rule_names, 4, cJSON_GetObjectItemCaseSensitive(o, "rule"));
    if (dist < 0 || rule < 0)
        return zt_fail(ZT_ERR_FORMAT, "%s:%d: unknown \"dist\" or \"rule\"", path, line);
    r->dist = (zt_direction_dist)dist;
    zt_step_update *u = &r->update;
    u->rule = (zt_update_rule)rule;
    ZT_TRY(get_number(o, "lr", path, line, &u->lr));
    ZT_TRY(get_number(o, "wd", path, line, &u->weight_decay));
    ZT_TRY(get_number(o, "beta1", path, line, &u->beta1));
    ZT_TRY(get_number(o, "beta2", path, line, &u->beta2));
    ZT_TRY(get_number(o, "adam_eps", path, line, &u->adam_eps));
    ZT_TRY(get_number(o, "pg", path, line, &u->projected_grad));
    /* absent from logs written before it was recorded */
    u->step_size = -1.0;
    if (cJSON_HasObjectItem(o, "step_size"))
        ZT_TRY(get_number(o, "step_size", path, line, &u->step_size));
    ZT_TRY(get_number(o, "sr", path, line, &v));
    r->stochastic_rounding = v != 0.0;
    ZT_TRY(parse_hex64(cJSON_GetObjectItemCaseSensitive(o, "rseed"), path, line, "rseed",
                       &r->rounding_seed));
    const cJSON *terms = cJSON_GetObjectItemCaseSensitive(o, "terms");
    if (!cJSON_IsArray(terms) || cJSON_GetArraySize(terms) > ZT_MAX_DIRECTIONS)
        return zt_fail(ZT_ERR_FORMAT, "%s:%d: \"terms\" must be an array of at most %d pairs", path,
                       line, ZT_MAX_DIRECTIONS);
    cJSON_ArrayForEach(item, terms) {
        const cJSON *coeff = cJSON_GetArrayItem(item, 1);
        if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != 2 || !cJSON_IsNumber(coeff) ||
            !(fabs(coeff->valuedouble) <= FLT_MAX))
            return zt_fail(ZT_ERR_FORMAT, "%s:%d: a term must be [\"seed\", f32 coefficient]", path,
                           line);
        zt_direction *d = &u->terms[u->n_terms++];
        ZT_TRY(parse_hex64(cJSON_GetArrayItem(item, 0), path, line, "terms seed", &d->seed));
        d->coeff = (float)coeff->valuedouble;
    }
    return ZT_OK;
}

static zt_status parse_header(const cJSON *o, const char *path, zt_steplog_header *h) {
    memset(h, 0, sizeof *h);
    const cJSON *magic = cJSON_GetObjectItemCaseSensitive(o, "zotune_steplog");
    const cJSON *optimizer_item = cJSON_GetObjectItemCaseSensitive(o, "optimizer");
    const cJSON *trainable = cJSON_GetObjectItemCaseSensitive(o, "trainable");
    const cJSON *copies = cJSON_GetObjectItemCaseSensitive(o, "state_copies");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(o, "model");
    if (!cJSON_IsNumber(magic) || (magic->valuedouble != 1 && magic->valuedouble != 2) ||
        !cJSON_IsString(optimizer_item) || !cJSON_IsString(trainable) || !cJSON_IsNumber(copies))
        return zt_fail(ZT_ERR_FORMAT, "%s:1: not a zotune step log header (version 1 or 2)", path);
    h->version = (int)magic->valuedouble;
    const cJSON *run = cJSON_GetObjectItemCaseSensitive(o, "run");
    if (h->version == 2 && !cJSON_IsObject(run))
        return zt_fail(ZT_ERR_FORMAT, "%s:1: a version 2 header needs its \"run\" options", path);
    const cJSON *option;
    cJSON_ArrayForEach(option, run) {
        if (h->n_run == ZT_RUN_OPTIONS_MAX || !cJSON_IsString(option) ||
            strlen(option->string) >= sizeof h->run[0].name ||
            strlen(option->valuestring) >= sizeof h->run[0].value)
            return zt_fail(ZT_ERR_FORMAT, "%s:1: run option \"%s\" is not a short string", path,
                           option->string);
        snprintf(h->run[h->n_run].name, sizeof h->run[0].name, "%s", option->string);
        snprintf(h->run[h->n_run].value, sizeof h->run[0].value, "%s", option->valuestring);
        h->n_run++;
    }
    snprintf(h->optimizer, sizeof h->optimizer, "%s", optimizer_item->valuestring);
    snprintf(h->trainable, sizeof h->trainable, "%s", trainable->valuestring);
    if (cJSON_IsString(model)) snprintf(h->model, sizeof h->model, "%s", model->valuestring);
    const cJSON *compute = cJSON_GetObjectItemCaseSensitive(o, "compute");
    if (cJSON_IsString(compute))
        snprintf(h->compute, sizeof h->compute, "%s", compute->valuestring);
    h->state_copies = copies->valueint;
    uint64_t seed = 0;
    const cJSON *run_seed = cJSON_GetObjectItemCaseSensitive(o, "run_seed");
    if (run_seed) ZT_TRY(parse_hex64(run_seed, path, 1, "run_seed", &seed));
    h->run_seed = seed;
    return ZT_OK;
}

zt_status zt_steplog_read(const char *path, zt_steplog_header *header, zt_step_record **records,
                          int *n_records, int *torn_tail) {
    *records = NULL;
    *n_records = 0;
    if (torn_tail) *torn_tail = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return zt_fail(ZT_ERR_IO, "%s: cannot open the step log: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int line_no = 0, capacity = 0;
    zt_status s = ZT_OK;
    zt_step_record *list = NULL;
    while (s == ZT_OK && (len = getline(&line, &cap, f)) >= 0) {
        line_no++;
        /* A record is appended whole, newline last: a final line without one is what a crash
         * mid-append leaves, even when its text happens to parse. Every reader drops it, as
         * open_append cuts it, so resume and replay agree on which steps exist. */
        if (len > 0 && line[len - 1] != '\n' && line_no > 1) {
            if (torn_tail) *torn_tail = 1;
            break;
        }
        cJSON *o = cJSON_ParseWithOpts(line, NULL, 1); /* nothing may follow the object */
        if (!o || !cJSON_IsObject(o) || zt_json_duplicate_key(o)) {
            s = zt_fail(ZT_ERR_FORMAT, "%s:%d: not a JSON object with distinct keys", path,
                        line_no);
            cJSON_Delete(o);
            break;
        }
        if (line_no == 1) {
            s = parse_header(o, path, header);
        } else {
            if (*n_records == capacity) {
                capacity = capacity ? 2 * capacity : 256;
                zt_step_record *grown = zt_realloc(list, (size_t)capacity * sizeof *grown);
                if (!grown)
                    s = zt_fail(ZT_ERR_NOMEM, "%s: reading records", path);
                else
                    list = grown;
            }
            if (s == ZT_OK) s = parse_record(o, path, line_no, &list[*n_records]);
            if (s == ZT_OK) (*n_records)++;
        }
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
    if (s == ZT_OK && line_no == 0) s = zt_fail(ZT_ERR_FORMAT, "%s: empty step log", path);
    if (s != ZT_OK) {
        free(list);
        *n_records = 0;
        return s;
    }
    *records = list;
    return ZT_OK;
}

/* Cuts the file back to its last complete line. */
static zt_status drop_torn_tail(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return ZT_OK;
    long keep = 0, pos = 0;
    int c;
    while ((c = fgetc(f)) != EOF) {
        pos++;
        if (c == '\n') keep = pos;
    }
    fclose(f);
    if (keep != pos && truncate(path, keep) != 0)
        return zt_fail(ZT_ERR_IO, "%s: cannot cut the torn last line: %s", path, strerror(errno));
    return ZT_OK;
}

zt_status zt_steplog_open_append(const char *path, const zt_steplog_header *header,
                                 zt_steplog **out) {
    *out = NULL;
    ZT_TRY(drop_torn_tail(path));
    FILE *probe = fopen(path, "rb");
    int exists = 0;
    if (probe) {
        exists = fgetc(probe) != EOF;
        fclose(probe);
    }
    if (exists) {
        zt_steplog_header old;
        zt_step_record *records = NULL;
        int n = 0;
        ZT_TRY(zt_steplog_read(path, &old, &records, &n, NULL));
        free(records);
        if (strcmp(old.optimizer, header->optimizer) != 0 ||
            strcmp(old.trainable, header->trainable) != 0)
            return zt_fail(ZT_ERR_INVALID_ARG,
                           "%s: the log belongs to optimizer '%s' with trainable '%s', not '%s' / "
                           "'%s'",
                           path, old.optimizer, old.trainable, header->optimizer,
                           header->trainable);
    }
    zt_steplog *log = zt_calloc(1, sizeof *log);
    if (!log) return zt_fail(ZT_ERR_NOMEM, "allocating the step log");
    snprintf(log->path, sizeof log->path, "%s", path);
    log->file = fopen(path, "ab");
    if (!log->file) {
        free(log);
        return zt_fail(ZT_ERR_IO, "%s: cannot open for appending: %s", path, strerror(errno));
    }
    if (!exists) {
        zt_status s = write_header(log->file, header, path);
        if (s != ZT_OK) {
            zt_steplog_close(log);
            return s;
        }
    }
    *out = log;
    return ZT_OK;
}

zt_status zt_steplog_keep_records(const char *path, int n_keep) {
    FILE *f = fopen(path, "rb");
    if (!f) return zt_fail(ZT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    long keep = -1, pos = 0;
    int lines = 0, c;
    while ((c = fgetc(f)) != EOF) {
        pos++;
        /* the header is line 1, record i line i + 2 */
        if (c == '\n' && ++lines == n_keep + 1) {
            keep = pos;
            break;
        }
    }
    fclose(f);
    if (keep < 0) return ZT_OK;
    if (truncate(path, keep) != 0)
        return zt_fail(ZT_ERR_IO, "%s: cannot cut the records past %d: %s", path, n_keep,
                       strerror(errno));
    return ZT_OK;
}

zt_status zt_steplog_append(zt_steplog *log, const zt_step_record *record) {
    char buf[8192];
    ZT_TRY(zt_steplog_format(record, buf, sizeof buf));
    size_t len = strlen(buf);
    buf[len] = '\n';
    /* One write of the whole line, so a failure leaves at most one unterminated tail, which
     * every reader treats as torn. */
    if (zt_write_stream(log->file, buf, len + 1) != 0 || fflush(log->file) != 0)
        return zt_fail(ZT_ERR_IO, "%s: appending %s %d: %s", log->path,
                       record->kind == ZT_RECORD_EVAL ? "the evaluation at step" : "step",
                       record->step, strerror(errno));
    return ZT_OK;
}

const char *zt_steplog_run_value(const zt_steplog_header *header, const char *name) {
    for (int i = 0; i < header->n_run; i++)
        if (strcmp(header->run[i].name, name) == 0) return header->run[i].value;
    return NULL;
}

zt_status zt_steplog_check_z_layout(const zt_steplog_header *header, const zt_step_record *records,
                                    int n_records, const char *path) {
    const char *layout = zt_steplog_run_value(header, ZT_RUN_Z_LAYOUT);
    if (layout && strcmp(layout, ZT_Z_LAYOUT_CURRENT) == 0) return ZT_OK;
    for (int i = 0; i < n_records; i++)
        if (records[i].kind == ZT_RECORD_STEP && records[i].dist == ZT_DIRECTIONS_RADEMACHER)
            return zt_fail(ZT_ERR_CONFLICT,
                           "%s: step %d drew Rademacher directions under z layout \"%s\", and "
                           "this version draws them as \"%s\" (docs/spec.md §5.9): replaying or "
                           "resuming it would move the weights along other directions; use the "
                           "version that wrote it, or start a new run",
                           path, records[i].step, layout ? layout : "one word per element",
                           ZT_Z_LAYOUT_CURRENT);
    return ZT_OK;
}

zt_status zt_steplog_sync(zt_steplog *log) {
    if (fflush(log->file) != 0 || fsync(fileno(log->file)) != 0)
        return zt_fail(ZT_ERR_IO, "%s: fsync: %s", log->path, strerror(errno));
    return ZT_OK;
}

void zt_steplog_close(zt_steplog *log) {
    if (!log) return;
    if (log->file) fclose(log->file);
    free(log);
}
