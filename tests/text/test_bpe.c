/* The byte-level BPE tokenizer against HuggingFace tokenizers' golden ids
 * (tests/fixtures/tokenizer, made by tools/make_tokenizer_fixture.py), plus the byte map, BOS
 * conventions, special tokens, both file formats, long inputs and loader errors. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "text/bpe.h"
#include "text/text_internal.h"
#include "zt_test.h"

enum { MAX_REPORTED = 8 };

static char fixture_dir[4096];

static double seconds_now(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

static char *read_text_file(const char *path, size_t *len) {
    FILE *file = fopen(path, "rb");
    if (!file) return NULL;
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    rewind(file);
    char *text = malloc((size_t)size + 1);
    size_t got = fread(text, 1, (size_t)size, file);
    fclose(file);
    text[got] = '\0';
    if (len) *len = got;
    return text;
}

static int write_text_file(const char *path, const char *text, size_t len) {
    FILE *file = fopen(path, "wb");
    if (!file) return 0;
    size_t put = fwrite(text, 1, len, file);
    fclose(file);
    return put == len;
}

static int32_t *json_ids(const cJSON *array, int *n) {
    *n = cJSON_GetArraySize(array);
    int32_t *ids = malloc(((size_t)*n + 1) * sizeof *ids);
    int i = 0;
    for (const cJSON *item = array ? array->child : NULL; item; item = item->next)
        ids[i++] = (int32_t)item->valuedouble;
    return ids;
}

static uint8_t *hex_bytes(const char *hex, size_t *len) {
    size_t n = strlen(hex) / 2;
    uint8_t *bytes = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned value = 0;
        sscanf(hex + 2 * i, "%2x", &value);
        bytes[i] = (uint8_t)value;
    }
    *len = n;
    return bytes;
}

static int same_ids(const int32_t *got, int n_got, const int32_t *want, int n_want) {
    return n_got == n_want && (n_got == 0 || memcmp(got, want, (size_t)n_got * sizeof *got) == 0);
}

static void print_ids(const char *label, const int32_t *ids, int n) {
    fprintf(stderr, "  %s (%d):", label, n);
    for (int i = 0; i < n && i < 40; i++)
        fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "%s\n", n > 40 ? " ..." : "");
}

/* ---- the byte map ---------------------------------------------------------------------------- */

static void check_byte_map(void) {
    ZT_CHECK(zt_byte_to_unicode(0x20) == 0x120, "space -> U+%04X", zt_byte_to_unicode(0x20));
    ZT_CHECK(zt_byte_to_unicode(0x0A) == 0x10A, "newline -> U+%04X", zt_byte_to_unicode(0x0A));
    ZT_CHECK(zt_byte_to_unicode(0x00) == 0x100, "NUL -> U+%04X", zt_byte_to_unicode(0x00));
    ZT_CHECK(zt_byte_to_unicode(0x7F) == 0x121, "DEL -> U+%04X", zt_byte_to_unicode(0x7F));
    ZT_CHECK(zt_byte_to_unicode(0xA0) == 0x142, "NBSP -> U+%04X", zt_byte_to_unicode(0xA0));
    ZT_CHECK(zt_byte_to_unicode(0xAD) == 0x143, "SHY -> U+%04X", zt_byte_to_unicode(0xAD));
    ZT_CHECK(zt_byte_to_unicode('a') == 'a' && zt_byte_to_unicode(0xFF) == 0xFF, "identity");
    int bad = 0, seen[0x144] = {0};
    uint32_t next_shifted = 0x100;
    for (int byte = 0; byte < 256; byte++) {
        uint32_t code_point = zt_byte_to_unicode((uint8_t)byte);
        int printable = (byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) ||
                        (byte >= 0xAE && byte <= 0xFF);
        /* printable bytes stand for themselves; the others take U+0100.. in byte order */
        uint32_t want = printable ? (uint32_t)byte : next_shifted++;
        bad += code_point != want || code_point >= 0x144 || seen[code_point]++;
        bad += zt_unicode_to_byte(code_point) != byte;
    }
    ZT_CHECK(bad == 0 && next_shifted == 0x144, "%d byte map entries wrong", bad);
    int unmapped = 0;
    for (uint32_t code_point = 0; code_point < 0x200; code_point++)
        unmapped += zt_unicode_to_byte(code_point) < 0;
    ZT_CHECK(unmapped == 0x200 - 256, "%d code points below U+0200 without a byte", unmapped);
    ZT_CHECK(zt_unicode_to_byte(0x20) == -1 && zt_unicode_to_byte(0x10FFFF) == -1, "inverse");
}

/* ---- the pre-tokenizer's Unicode classes ----------------------------------------------------- */

static zt_status count_piece(const uint8_t *piece, size_t len, void *user) {
    (void)piece;
    (void)len;
    (*(int *)user)++;
    return ZT_OK;
}

static int pieces_of_pair(const zt_pretokenizer *pretokenizer, char first, uint32_t code_point) {
    uint8_t text[5] = {(uint8_t)first};
    int len = 1 + zt_utf8_put(code_point, text + 1), pieces = 0;
    zt_status status = zt_pretokenize(pretokenizer, text, (size_t)len, count_piece, &pieces);
    return status == ZT_OK ? pieces : -1;
}

/* The class the split regex gives a code point, probed as tools/make_unicode_classes.py probes
 * tokenizers: 'L' letter, 'N' number, 'S' space, 'O' other. */
static char split_class(const zt_pretokenizer *pretokenizer, uint32_t code_point) {
    if (pieces_of_pair(pretokenizer, 'a', code_point) == 1) return 'L';
    if (pieces_of_pair(pretokenizer, '1', code_point) == 1) return 'N';
    if (pieces_of_pair(pretokenizer, '!', code_point) == 2) return 'S';
    return 'O';
}

static int in_ranges(const zt_code_point_range *ranges, size_t count, uint32_t code_point) {
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (code_point < ranges[mid].first)
            hi = mid;
        else if (code_point > ranges[mid].last)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

static char table_class(uint32_t code_point) {
    if (in_ranges(zt_unicode_letter_ranges, zt_unicode_letter_ranges_count, code_point)) return 'L';
    if (in_ranges(zt_unicode_number_ranges, zt_unicode_number_ranges_count, code_point)) return 'N';
    if (in_ranges(zt_unicode_space_ranges, zt_unicode_space_ranges_count, code_point)) return 'S';
    return 'O';
}

static void check_probe(const zt_pretokenizer *pretokenizer, uint32_t code_point, int *probed,
                        int *wrong) {
    if (code_point > 0x10FFFF || (code_point >= 0xD800 && code_point <= 0xDFFF)) return;
    char split = split_class(pretokenizer, code_point), table = table_class(code_point);
    (*probed)++;
    if (split != table && (*wrong)++ < MAX_REPORTED)
        fprintf(stderr, "U+%04X: split as %c, table says %c\n", (unsigned)code_point, split, table);
}

static void check_unicode_classes(void) {
    zt_pretokenizer *pretokenizer = NULL;
    ZT_REQUIRE_OK(zt_pretokenizer_create(&pretokenizer));
    /* Facts about tokenizers 0.23 (Oniguruma, Unicode 16.0, \s = White_Space) that PCRE2's own
     * classes or Python's `regex` get differently. */
    static const struct {
        uint32_t code_point;
        char class_id;
    } facts[] = {
        {0x1C89, 'L'},  /* CYRILLIC CAPITAL LETTER TJE, Unicode 16.0 */
        {0x10D40, 'N'}, /* GARAY DIGIT ZERO, Unicode 16.0 */
        {0x31350, 'L'}, /* CJK Extension H, Unicode 15.0 */
        {0x088F, 'O'},  /* unassigned in 16.0, a letter in Unicode 17 */
        {0x180E, 'O'},  /* MONGOLIAN VOWEL SEPARATOR: PCRE2's \s has it, White_Space not */
        {0x0085, 'S'},  {0x00A0, 'S'}, {0x1680, 'S'}, {0x2003, 'S'}, {0x2028, 'S'},
        {0x3000, 'S'},  {0x000B, 'S'}, {0x001C, 'O'}, /* str.isspace() says yes; \s says no */
        {0x200B, 'O'},  {0xFEFF, 'O'}, {0x00AA, 'L'}, {0x00B2, 'N'}, {0x2160, 'N'},
        {0x0300, 'O'},  {0x0661, 'N'}, {0xFF11, 'N'}, {0x4E00, 'L'}, {0x1F600, 'O'},
    };
    for (size_t i = 0; i < sizeof facts / sizeof facts[0]; i++) {
        char split = split_class(pretokenizer, facts[i].code_point);
        ZT_CHECK(split == facts[i].class_id, "U+%04X split as %c, want %c",
                 (unsigned)facts[i].code_point, split, facts[i].class_id);
    }
    /* The regex built from the tables splits as the tables say: every range edge and its
     * neighbours, and a sweep over all planes. */
    int probed = 0, wrong = 0;
    const zt_code_point_range *tables[] = {zt_unicode_letter_ranges, zt_unicode_number_ranges,
                                           zt_unicode_space_ranges};
    size_t counts[] = {zt_unicode_letter_ranges_count, zt_unicode_number_ranges_count,
                       zt_unicode_space_ranges_count};
    for (int t = 0; t < 3; t++) {
        for (size_t r = 0; r < counts[t]; r++) {
            uint32_t first = tables[t][r].first, last = tables[t][r].last;
            if (first > 0) check_probe(pretokenizer, first - 1, &probed, &wrong);
            check_probe(pretokenizer, first, &probed, &wrong);
            check_probe(pretokenizer, last, &probed, &wrong);
            check_probe(pretokenizer, last + 1, &probed, &wrong);
        }
    }
    for (uint32_t code_point = 0; code_point <= 0x10FFFF; code_point += 61)
        check_probe(pretokenizer, code_point, &probed, &wrong);
    ZT_CHECK(wrong == 0, "%d of %d probed code points split against the tables", wrong, probed);
    printf("unicode classes: %d code points probed, %d disagree with the tables\n", probed, wrong);
    zt_pretokenizer_free(pretokenizer);
}

/* ---- tokenizer.json variants ----------------------------------------------------------------- */

static char temp_dir[4096];

static void temp_path(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", temp_dir, name);
}

typedef void (*json_edit)(cJSON *root);

static void set_bool(cJSON *object, const char *key, int value) {
    cJSON_DeleteItemFromObjectCaseSensitive(object, key);
    cJSON_AddBoolToObject(object, key, value);
}

/* Every merge rewritten from ["a", "b"] to the older "a b" string. */
static void edit_string_merges(cJSON *root) {
    cJSON *model = cJSON_GetObjectItem(root, "model");
    cJSON *strings = cJSON_CreateArray();
    for (cJSON *pair = cJSON_GetObjectItem(model, "merges")->child; pair; pair = pair->next) {
        char joined[512];
        snprintf(joined, sizeof joined, "%s %s", pair->child->valuestring,
                 pair->child->next->valuestring);
        cJSON_AddItemToArray(strings, cJSON_CreateString(joined));
    }
    cJSON_ReplaceItemInObject(model, "merges", strings);
}

/* The edits tools/make_tokenizer_fixture.py's VARIANTS make. */
static void edit_add_prefix_space(cJSON *root) {
    set_bool(cJSON_GetObjectItem(root, "pre_tokenizer"), "add_prefix_space", 1);
}

static void edit_no_regex(cJSON *root) {
    set_bool(cJSON_GetObjectItem(root, "pre_tokenizer"), "use_regex", 0);
}

static void edit_ignore_merges(cJSON *root) {
    cJSON *model = cJSON_GetObjectItem(root, "model");
    set_bool(model, "ignore_merges", 1);
    cJSON *vocab = cJSON_GetObjectItem(model, "vocab");
    cJSON_AddNumberToObject(vocab, "\xC4\xA0quixotic", 2000); /* "Ġquixotic" */
    cJSON_AddNumberToObject(vocab, "quixotic", 2001);
}

/* The fixture's tokenizer.json, edited, written to a temporary directory and loaded from it. */
static zt_tokenizer *load_json_variant(const char *name, json_edit edit) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer.json", fixture_dir);
    char *text = read_text_file(path, NULL);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    ZT_CHECK(root != NULL, "parse %s", path);
    if (!root) return NULL;
    edit(root);
    char *printed = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    char variant_dir[4200], variant_path[4300];
    temp_path(variant_dir, sizeof variant_dir, name);
    mkdir(variant_dir, 0700);
    snprintf(variant_path, sizeof variant_path, "%s/tokenizer.json", variant_dir);
    ZT_CHECK(write_text_file(variant_path, printed, strlen(printed)), "write %s", variant_path);
    free(printed);
    zt_tokenizer *tok = NULL;
    ZT_CHECK_OK(zt_tokenizer_load_dir(variant_dir, &tok));
    unlink(variant_path);
    rmdir(variant_dir);
    return tok;
}

/* The tokenizers behind the "variant" lines of cases.jsonl. */
typedef struct variant {
    const char *name;
    json_edit edit;
    zt_tokenizer *tok;
    int cases, ok;
} variant;

static variant variants[] = {
    {.name = "add_prefix_space", .edit = edit_add_prefix_space},
    {.name = "no_regex", .edit = edit_no_regex},
    {.name = "ignore_merges", .edit = edit_ignore_merges},
};
enum { N_VARIANTS = sizeof variants / sizeof variants[0] };

/* ---- golden cases ---------------------------------------------------------------------------- */

typedef struct case_counts {
    int text, text_ok, round_trip_ok, bos_ok, mezo_ok, string_merges_ok;
    int bytes, bytes_ok, decode, decode_ok, unknown_variant;
    int reported;
} case_counts;

static void check_text_case(const cJSON *record, zt_tokenizer *json_tok, zt_tokenizer *files_tok,
                            zt_tokenizer *string_tok, case_counts *counts) {
    const char *text = cJSON_GetObjectItem(record, "text")->valuestring;
    size_t len = strlen(text);
    int n_want, n_want_bos;
    int32_t *want = json_ids(cJSON_GetObjectItem(record, "ids"), &n_want);
    int32_t *want_bos = json_ids(cJSON_GetObjectItem(record, "ids_bos"), &n_want_bos);
    counts->text++;

    int32_t *ids = NULL, *ids_files = NULL, *ids_bos = NULL, *ids_mezo = NULL, *ids_str = NULL;
    int n = 0, n_files = 0, n_bos = 0, n_mezo = 0, n_str = 0;
    ZT_CHECK_OK(zt_tokenizer_encode(json_tok, text, len, 0, &ids, &n));
    ZT_CHECK_OK(zt_tokenizer_encode(files_tok, text, len, 0, &ids_files, &n_files));
    ZT_CHECK_OK(zt_tokenizer_encode(json_tok, text, len, 1, &ids_bos, &n_bos));
    ZT_CHECK_OK(zt_tokenizer_encode(files_tok, text, len, 1, &ids_mezo, &n_mezo)); /* BOS "<s>" */
    ZT_CHECK_OK(zt_tokenizer_encode(string_tok, text, len, 0, &ids_str, &n_str));

    int ok = same_ids(ids, n, want, n_want) && same_ids(ids_files, n_files, want, n_want);
    counts->text_ok += ok;
    if (!ok && counts->reported++ < MAX_REPORTED) {
        fprintf(stderr, "MISMATCH text \"%s\"\n", text);
        print_ids("want", want, n_want);
        print_ids("tokenizer.json", ids, n);
        print_ids("vocab+merges", ids_files, n_files);
    }
    counts->bos_ok += same_ids(ids_bos, n_bos, want_bos, n_want_bos);
    counts->mezo_ok += n_mezo == n_want + 1 && ids_mezo[0] == 0 &&
                       same_ids(ids_mezo + 1, n_mezo - 1, want, n_want);
    counts->string_merges_ok += same_ids(ids_str, n_str, want, n_want);

    char *decoded = NULL;
    size_t decoded_len = 0;
    ZT_CHECK_OK(zt_tokenizer_decode_bytes(json_tok, ids, n, 0, &decoded, &decoded_len));
    int round_trip = decoded && decoded_len == len && memcmp(decoded, text, len) == 0;
    counts->round_trip_ok += round_trip;
    if (!round_trip && counts->reported++ < MAX_REPORTED)
        fprintf(stderr, "ROUND TRIP \"%s\" -> \"%s\"\n", text, decoded ? decoded : "(null)");
    free(decoded);
    free(ids);
    free(ids_files);
    free(ids_bos);
    free(ids_mezo);
    free(ids_str);
    free(want);
    free(want_bos);
}

static void check_bytes_case(const cJSON *record, zt_tokenizer *tok, case_counts *counts) {
    size_t len, want_len;
    uint8_t *input = hex_bytes(cJSON_GetObjectItem(record, "bytes_hex")->valuestring, &len);
    uint8_t *want_text =
        hex_bytes(cJSON_GetObjectItem(record, "decoded_hex")->valuestring, &want_len);
    int n_want;
    int32_t *want = json_ids(cJSON_GetObjectItem(record, "ids"), &n_want);
    int32_t *ids = NULL;
    int n = 0;
    char *decoded = NULL;
    size_t decoded_len = 0;
    ZT_CHECK_OK(zt_tokenizer_encode(tok, (const char *)input, len, 0, &ids, &n));
    ZT_CHECK_OK(zt_tokenizer_decode_bytes(tok, ids, n, 0, &decoded, &decoded_len));
    int ok = same_ids(ids, n, want, n_want) && decoded && decoded_len == want_len &&
             memcmp(decoded, want_text, want_len) == 0;
    counts->bytes++;
    counts->bytes_ok += ok;
    if (!ok && counts->reported++ < MAX_REPORTED) {
        fprintf(stderr, "MISMATCH bytes %s\n",
                cJSON_GetObjectItem(record, "bytes_hex")->valuestring);
        print_ids("want", want, n_want);
        print_ids("got", ids, n);
    }
    free(input);
    free(want_text);
    free(want);
    free(ids);
    free(decoded);
}

static void check_decode_case(const cJSON *record, zt_tokenizer *tok, case_counts *counts) {
    int n;
    int32_t *ids = json_ids(cJSON_GetObjectItem(record, "decode_ids"), &n);
    int skip_special = cJSON_IsTrue(cJSON_GetObjectItem(record, "skip_special"));
    size_t want_len;
    uint8_t *want = hex_bytes(cJSON_GetObjectItem(record, "decoded_hex")->valuestring, &want_len);
    char *decoded = NULL;
    size_t decoded_len = 0;
    ZT_CHECK_OK(zt_tokenizer_decode_bytes(tok, ids, n, skip_special, &decoded, &decoded_len));
    int ok = decoded && decoded_len == want_len && memcmp(decoded, want, want_len) == 0;
    counts->decode++;
    counts->decode_ok += ok;
    if (!ok && counts->reported++ < MAX_REPORTED) {
        fprintf(stderr, "MISMATCH decode (skip_special %d)\n", skip_special);
        print_ids("ids", ids, n);
    }
    free(ids);
    free(want);
    free(decoded);
}

static void check_variant_case(const cJSON *record, case_counts *counts) {
    const char *name = cJSON_GetObjectItem(record, "variant")->valuestring;
    variant *which = NULL;
    for (int v = 0; v < N_VARIANTS; v++)
        if (strcmp(variants[v].name, name) == 0) which = &variants[v];
    if (!which || !which->tok) {
        counts->unknown_variant++;
        return;
    }
    const char *text = cJSON_GetObjectItem(record, "text")->valuestring;
    int n_want;
    int32_t *want = json_ids(cJSON_GetObjectItem(record, "ids"), &n_want);
    int32_t *ids = NULL;
    int n = 0;
    ZT_CHECK_OK(zt_tokenizer_encode(which->tok, text, strlen(text), 0, &ids, &n));
    int ok = same_ids(ids, n, want, n_want);
    which->cases++;
    which->ok += ok;
    if (!ok && counts->reported++ < MAX_REPORTED) {
        fprintf(stderr, "MISMATCH variant %s text \"%s\"\n", name, text);
        print_ids("want", want, n_want);
        print_ids("got", ids, n);
    }
    free(want);
    free(ids);
}

static void check_golden_cases(zt_tokenizer *json_tok, zt_tokenizer *files_tok,
                               zt_tokenizer *string_tok) {
    char path[4200];
    snprintf(path, sizeof path, "%s/cases.jsonl", fixture_dir);
    FILE *file = fopen(path, "r");
    ZT_CHECK(file != NULL, "cannot open %s", path);
    if (!file) return;
    case_counts counts = {0};
    char *line = NULL;
    size_t capacity = 0;
    ssize_t line_len;
    int line_number = 0, unparsed = 0;
    while ((line_len = getline(&line, &capacity, file)) > 0) {
        line_number++;
        cJSON *record = cJSON_ParseWithLength(line, (size_t)line_len);
        if (!record) {
            unparsed++;
            continue;
        }
        if (cJSON_GetObjectItem(record, "variant"))
            check_variant_case(record, &counts);
        else if (cJSON_GetObjectItem(record, "text"))
            check_text_case(record, json_tok, files_tok, string_tok, &counts);
        else if (cJSON_GetObjectItem(record, "bytes_hex"))
            check_bytes_case(record, json_tok, &counts);
        else if (cJSON_GetObjectItem(record, "decode_ids"))
            check_decode_case(record, json_tok, &counts);
        else
            unparsed++;
        cJSON_Delete(record);
    }
    free(line);
    fclose(file);
    ZT_CHECK(unparsed == 0, "%d of %d lines of %s not understood", unparsed, line_number, path);
    ZT_CHECK(counts.text >= 10000, "only %d text cases", counts.text);
    ZT_CHECK(counts.text_ok == counts.text, "ids: %d of %d", counts.text_ok, counts.text);
    ZT_CHECK(counts.round_trip_ok == counts.text, "round trip: %d of %d", counts.round_trip_ok,
             counts.text);
    ZT_CHECK(counts.bos_ok == counts.text, "OPT BOS: %d of %d", counts.bos_ok, counts.text);
    ZT_CHECK(counts.mezo_ok == counts.text, "MeZO BOS: %d of %d", counts.mezo_ok, counts.text);
    ZT_CHECK(counts.string_merges_ok == counts.text, "\"a b\" merges: %d of %d",
             counts.string_merges_ok, counts.text);
    ZT_CHECK(counts.bytes >= 150 && counts.bytes_ok == counts.bytes, "bytes: %d of %d",
             counts.bytes_ok, counts.bytes);
    ZT_CHECK(counts.decode >= 150 && counts.decode_ok == counts.decode, "decode: %d of %d",
             counts.decode_ok, counts.decode);
    printf("text cases: %d/%d ids identical (tokenizer.json and vocab.json+merges.txt), "
           "%d/%d round trips, %d/%d OPT BOS, %d/%d MeZO BOS, %d/%d with \"a b\" merges\n",
           counts.text_ok, counts.text, counts.round_trip_ok, counts.text, counts.bos_ok,
           counts.text, counts.mezo_ok, counts.text, counts.string_merges_ok, counts.text);
    printf("byte-string cases (invalid UTF-8, NUL): %d/%d; decode cases: %d/%d\n", counts.bytes_ok,
           counts.bytes, counts.decode_ok, counts.decode);
    ZT_CHECK(counts.unknown_variant == 0, "%d variant lines without a tokenizer",
             counts.unknown_variant);
    for (int v = 0; v < N_VARIANTS; v++) {
        ZT_CHECK(variants[v].cases >= 100 && variants[v].ok == variants[v].cases,
                 "variant %s: %d of %d", variants[v].name, variants[v].ok, variants[v].cases);
        printf("variant %s: %d/%d\n", variants[v].name, variants[v].ok, variants[v].cases);
    }
}

/* ---- special tokens, BOS, accessors ---------------------------------------------------------- */

static void expect_encoding(zt_tokenizer *tok, const char *text, int add_bos, const int32_t *want,
                            int n_want) {
    int32_t *ids = NULL;
    int n = -1;
    ZT_CHECK_OK(zt_tokenizer_encode(tok, text, strlen(text), add_bos, &ids, &n));
    ZT_CHECK(ids != NULL && same_ids(ids, n, want, n_want), "encoding of \"%s\" (%d ids)", text, n);
    free(ids);
}

static void check_specials_and_bos(zt_tokenizer *tok) {
    ZT_CHECK(zt_tokenizer_vocab_size(tok) == 2000, "vocab size %d", zt_tokenizer_vocab_size(tok));
    const char *names[] = {"<s>", "<pad>", "</s>", "<unk>"};
    for (int id = 0; id < 4; id++) {
        ZT_CHECK(zt_tokenizer_token_id(tok, names[id]) == id, "%s", names[id]);
        ZT_CHECK(zt_tokenizer_is_special(tok, id), "%s special", names[id]);
        ZT_CHECK(strcmp(zt_tokenizer_token(tok, id), names[id]) == 0, "spelling of %d", id);
    }
    ZT_CHECK(zt_tokenizer_token_id(tok, "no such token") == -1, "absent token");
    ZT_CHECK(zt_tokenizer_token(tok, 2000) == NULL && zt_tokenizer_token(tok, -1) == NULL, "range");
    int32_t a = zt_tokenizer_token_id(tok, "a"), b = zt_tokenizer_token_id(tok, "b");
    int32_t lt = zt_tokenizer_token_id(tok, "<"), gt = zt_tokenizer_token_id(tok, ">");
    ZT_CHECK(a >= 0 && b >= 0 && lt >= 0 && gt >= 0, "single-character tokens");

    /* Literal special tokens are cut out wherever they are, with no space handling. */
    expect_encoding(tok, "a</s>b", 0, (int32_t[]){a, 2, b}, 3);
    expect_encoding(tok, "<pad><pad>", 0, (int32_t[]){1, 1}, 2);
    expect_encoding(tok, "<s></s><unk>", 0, (int32_t[]){0, 2, 3}, 3);
    expect_encoding(tok, "</s>", 1, (int32_t[]){2, 2}, 2);
    expect_encoding(tok, "", 0, NULL, 0);
    expect_encoding(tok, "", 1, (int32_t[]){2}, 1);
    int32_t *ids = NULL;
    int n = 0;
    ZT_CHECK_OK(zt_tokenizer_encode(tok, "</s", 3, 0, &ids, &n));
    int has_special = 0;
    for (int i = 0; i < n; i++)
        has_special |= ids[i] < 4;
    ZT_CHECK(n >= 1 && !has_special, "\"</s\" is not special");
    free(ids);

    /* BOS: OPT's "</s>" (2) by default, MeZO's "<s>" (0) on request (docs/spec.md §3.1, §9 A1). */
    ZT_CHECK(zt_tokenizer_bos_id(tok) == 2, "default BOS %d", zt_tokenizer_bos_id(tok));
    ZT_CHECK_OK(zt_tokenizer_set_bos(tok, ZT_TOKENIZER_BOS_MEZO));
    ZT_CHECK(zt_tokenizer_bos_id(tok) == 0, "MeZO BOS %d", zt_tokenizer_bos_id(tok));
    expect_encoding(tok, "a", 1, (int32_t[]){0, a}, 2);
    ZT_CHECK(zt_tokenizer_set_bos(tok, "nope") == ZT_ERR_INVALID_ARG, "unknown BOS token");
    ZT_CHECK(zt_tokenizer_set_bos_id(tok, 5000) == ZT_ERR_INVALID_ARG, "BOS id out of range");
    ZT_CHECK_OK(zt_tokenizer_set_bos_id(tok, 2));
    expect_encoding(tok, "a", 1, (int32_t[]){2, a}, 2);

    /* Decode: specials kept or skipped, unknown ids ignored, split characters repaired. */
    char *text = NULL;
    ZT_CHECK_OK(zt_tokenizer_decode(tok, (int32_t[]){2, a, 1, b, 99999, -7}, 6, 0, &text));
    ZT_CHECK(text && strcmp(text, "</s>a<pad>b") == 0, "decode kept \"%s\"", text);
    free(text);
    ZT_CHECK_OK(zt_tokenizer_decode(tok, (int32_t[]){2, a, 1, b, 0, 3}, 6, 1, &text));
    ZT_CHECK(text && strcmp(text, "ab") == 0, "decode skipped \"%s\"", text);
    free(text);
    ZT_CHECK_OK(zt_tokenizer_decode(tok, NULL, 0, 0, &text));
    ZT_CHECK(text && text[0] == '\0', "empty decode");
    free(text);
    /* Byte 0xE4 alone (a lead byte missing its continuations) decodes to U+FFFD. 0xE4 is
     * printable Latin-1, so its token is the character U+00E4, "\xC3\xA4" in UTF-8. */
    ZT_CHECK(zt_byte_to_unicode(0xE4) == 0xE4, "0xE4 maps to itself");
    int32_t lead = zt_tokenizer_token_id(tok, "\xC3\xA4");
    ZT_CHECK(lead >= 0, "token for byte 0xE4");
    ZT_CHECK_OK(zt_tokenizer_decode(tok, (int32_t[]){a, lead, b}, 3, 0, &text));
    const char *want_repaired = "a\xEF\xBF\xBD"
                                "b";
    ZT_CHECK(text && strcmp(text, want_repaired) == 0, "lone lead byte \"%s\"", text);
    free(text);
}

/* ---- long inputs ----------------------------------------------------------------------------- */

static void check_long_inputs(zt_tokenizer *tok) {
    /* One huge piece (the BPE heap), a huge whitespace run (the lookahead) and mixed text. */
    const char *units[] = {"a", " ", "ab1 ", "\xE4\xB8\x96", "\n\t "};
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        size_t unit_len = strlen(units[u]), len = 0;
        size_t repeats = 1000000 / unit_len;
        char *text = malloc(repeats * unit_len + 1);
        for (size_t r = 0; r < repeats; r++, len += unit_len)
            memcpy(text + len, units[u], unit_len);
        int32_t *ids = NULL;
        int n = 0;
        char *decoded = NULL;
        size_t decoded_len = 0;
        double start = seconds_now();
        ZT_CHECK_OK(zt_tokenizer_encode(tok, text, len, 0, &ids, &n));
        ZT_CHECK_OK(zt_tokenizer_decode_bytes(tok, ids, n, 0, &decoded, &decoded_len));
        double elapsed = seconds_now() - start;
        ZT_CHECK(decoded && decoded_len == len && memcmp(decoded, text, len) == 0,
                 "1 MB of \"%s\" round trip", units[u]);
        /* Printed, not asserted: a quadratic path would take hours and hit the test timeout,
         * while a wall-clock bound fails on a loaded machine (timings belong in bench/). */
        printf("1 MB of unit %zu: %.2f s\n", u, elapsed);
        free(text);
        free(ids);
        free(decoded);
    }
}

/* ---- loader errors --------------------------------------------------------------------------- */

/* Loads vocab.json (the fixture's unless vocab_text is given) with merges_text; returns the
 * status and leaves the error text in zt_last_error(). With `out`, the caller gets the
 * tokenizer. */
static zt_status load_with_out(const char *vocab_text, const char *merges_text,
                               zt_tokenizer **out) {
    char vocab_path[4200], merges_path[4200];
    temp_path(vocab_path, sizeof vocab_path, "vocab.json");
    temp_path(merges_path, sizeof merges_path, "merges.txt");
    if (vocab_text) {
        write_text_file(vocab_path, vocab_text, strlen(vocab_text));
    } else {
        char fixture_vocab[4200];
        size_t len;
        snprintf(fixture_vocab, sizeof fixture_vocab, "%s/vocab.json", fixture_dir);
        char *text = read_text_file(fixture_vocab, &len);
        write_text_file(vocab_path, text, len);
        free(text);
    }
    write_text_file(merges_path, merges_text, strlen(merges_text));
    zt_tokenizer *tok = NULL;
    zt_status status = zt_tokenizer_load_files(vocab_path, merges_path, &tok);
    if (out)
        *out = tok;
    else
        zt_tokenizer_free(tok);
    unlink(vocab_path);
    unlink(merges_path);
    return status;
}

static zt_status load_with(const char *vocab_text, const char *merges_text) {
    return load_with_out(vocab_text, merges_text, NULL);
}

/* Encodes `text` with a tokenizer whose only merge is "e r", written as `merges_text`. */
static int ids_of_er(const char *merges_text) {
    zt_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    int n = -1;
    if (load_with_out(NULL, merges_text, &tok) == ZT_OK)
        ZT_CHECK_OK(zt_tokenizer_encode(tok, "er", 2, 0, &ids, &n));
    free(ids);
    zt_tokenizer_free(tok);
    return n;
}

static void check_merges_line_endings(void) {
    /* tokenizers keeps a last line without "\n" (the slow reader's split("\n")[1:-1] would drop
     * it, docs/spec.md §9 A10) and strips "\r\n". */
    ZT_CHECK(ids_of_er("#version: 0.2\ne r\n") == 1, "\"e r\" applies");
    ZT_CHECK(ids_of_er("#version: 0.2\ne r") == 1, "last line without newline applies");
    ZT_CHECK(ids_of_er("#version: 0.2\r\ne r\r\n") == 1, "CRLF lines");
    ZT_CHECK(ids_of_er("e r\n") == 1, "no header");
    ZT_CHECK(ids_of_er("#version: 0.2\n") == 2, "no merges: two bytes");
}

static int error_mentions(const char *needle) {
    return strstr(zt_last_error(), needle) != NULL;
}

static void check_errors(void) {
    zt_tokenizer *tok = NULL;
    zt_status status =
        zt_tokenizer_load_files("/nonexistent/vocab.json", "/nonexistent/merges.txt", &tok);
    ZT_CHECK(status == ZT_ERR_MISSING && tok == NULL && error_mentions("/nonexistent/vocab.json"),
             "missing vocab: %s", zt_last_error());
    status = zt_tokenizer_load_dir("/nonexistent", &tok);
    ZT_CHECK(status == ZT_ERR_MISSING && error_mentions("/nonexistent"), "missing dir: %s",
             zt_last_error());

    ZT_CHECK(load_with(NULL, "#version: 0.2\ne r\nĠ t\n") == ZT_OK, "good merges: %s",
             zt_last_error());
    status = load_with(NULL, "#version: 0.2\ne r\nĠ t\nthree sym bols\n");
    ZT_CHECK(status == ZT_ERR_FORMAT && error_mentions("merges.txt:4:"), "3 symbols: %s",
             zt_last_error());
    status = load_with(NULL, "#version: 0.2\ne r\n\nĠ t\n");
    ZT_CHECK(status == ZT_ERR_FORMAT && error_mentions("merges.txt:3:"), "blank line: %s",
             zt_last_error());
    status = load_with(NULL, "#version: 0.2\ne r\nĠ t\nlonely\n");
    ZT_CHECK(status == ZT_ERR_FORMAT && error_mentions("merges.txt:4:"), "1 symbol: %s",
             zt_last_error());
    status = load_with(NULL, "#version: 0.2\ne r\nq\xE2\x82\xAC z\n");
    ZT_CHECK(status == ZT_ERR_FORMAT && error_mentions("merges.txt:3:") &&
                 error_mentions("not in the vocabulary"),
             "unknown symbol: %s", zt_last_error());
    status = load_with("{\"a\": 0, \"b\": 1, \"c\": 2}", "#version: 0.2\na b\n");
    ZT_CHECK(status == ZT_ERR_FORMAT && error_mentions("merges.txt:2:") &&
                 error_mentions("merged token \"ab\""),
             "merged token missing: %s", zt_last_error());
    status = load_with("{\"a\": 0, \"b\": 1, \"c\": 1}", "#version: 0.2\n");
    ZT_CHECK(status == ZT_ERR_FORMAT && error_mentions("vocab.json") &&
                 error_mentions("duplicate id 1"),
             "duplicate id: %s", zt_last_error());
    status = load_with("{\"a\": 0,\n \"b\": 1,\n \"c\" 2}", "#version: 0.2\n");
    ZT_CHECK(status == ZT_ERR_FORMAT && error_mentions("vocab.json:3:") &&
                 error_mentions("invalid JSON"),
             "invalid JSON: %s", zt_last_error());
    status = load_with("{\"a\": 0, \"b\": 1.5}", "#version: 0.2\n");
    ZT_CHECK(status == ZT_ERR_FORMAT && error_mentions("\"b\""), "fractional id: %s",
             zt_last_error());

    char json_path[4200];
    temp_path(json_path, sizeof json_path, "tokenizer.json");
    const char *bad_json = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1},"
                           " \"merges\": [[\"a\", \"c\"]]},"
                           " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}";
    write_text_file(json_path, bad_json, strlen(bad_json));
    status = zt_tokenizer_load_json(json_path, &tok);
    ZT_CHECK(status == ZT_ERR_FORMAT && error_mentions("model.merges[0]") &&
                 error_mentions("\"c\""),
             "tokenizer.json merge: %s", zt_last_error());
    const char *bad_pre = "{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []},"
                          " \"pre_tokenizer\": {\"type\": \"Whitespace\"}}";
    write_text_file(json_path, bad_pre, strlen(bad_pre));
    status = zt_tokenizer_load_json(json_path, &tok);
    ZT_CHECK(status == ZT_ERR_FORMAT && error_mentions("Whitespace"), "pre_tokenizer: %s",
             zt_last_error());
    unlink(json_path);
}

int main(void) {
    const char *fixtures = getenv("ZT_FIXTURES");
    if (!fixtures) {
        fprintf(stderr, "ZT_FIXTURES is not set\n");
        return ZT_SKIP_EXIT;
    }
    snprintf(fixture_dir, sizeof fixture_dir, "%s/tokenizer", fixtures);
    const char *tmp = getenv("TMPDIR");
    snprintf(temp_dir, sizeof temp_dir, "%s/zt_test_bpe_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(temp_dir)) {
        fprintf(stderr, "cannot create %s\n", temp_dir);
        return 1;
    }
    double start = seconds_now();

    check_byte_map();
    check_unicode_classes();

    zt_tokenizer *json_tok = NULL, *files_tok = NULL;
    ZT_REQUIRE_OK(zt_tokenizer_load_dir(fixture_dir, &json_tok)); /* has tokenizer.json */
    char vocab_path[4200], merges_path[4200];
    snprintf(vocab_path, sizeof vocab_path, "%s/vocab.json", fixture_dir);
    snprintf(merges_path, sizeof merges_path, "%s/merges.txt", fixture_dir);
    ZT_REQUIRE_OK(zt_tokenizer_load_files(vocab_path, merges_path, &files_tok));
    zt_tokenizer *string_tok = load_json_variant("string_merges", edit_string_merges);
    ZT_REQUIRE_OK(string_tok ? ZT_OK : ZT_ERR_FORMAT);
    for (int v = 0; v < N_VARIANTS; v++)
        variants[v].tok = load_json_variant(variants[v].name, variants[v].edit);
    double loaded = seconds_now();

    ZT_CHECK_OK(zt_tokenizer_set_bos(files_tok, ZT_TOKENIZER_BOS_MEZO));
    check_golden_cases(json_tok, files_tok, string_tok);
    double golden = seconds_now();
    ZT_CHECK_OK(zt_tokenizer_set_bos(files_tok, ZT_TOKENIZER_BOS_OPT));
    check_specials_and_bos(files_tok);
    check_long_inputs(json_tok);
    double long_done = seconds_now();
    check_errors();
    check_merges_line_endings();

    zt_tokenizer_free(json_tok);
    zt_tokenizer_free(files_tok);
    zt_tokenizer_free(string_tok);
    for (int v = 0; v < N_VARIANTS; v++)
        zt_tokenizer_free(variants[v].tok);
    rmdir(temp_dir);
    printf("timing: load %.3f s, golden cases %.3f s, 5 x 1 MB inputs %.3f s, total %.3f s\n",
           loaded - start, golden - loaded, long_done - golden, seconds_now() - start);
    return zt_test_finish("test_bpe");
}
