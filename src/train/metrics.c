#include "train/metrics.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

static int is_article(const char *word, size_t n) {
    return (n == 1 && word[0] == 'a') || (n == 2 && strncmp(word, "an", 2) == 0) ||
           (n == 3 && strncmp(word, "the", 3) == 0);
}

char *zt_normalize_answer(const char *text) {
    size_t n = strlen(text);
    char *lowered = zt_malloc(n + 1), *out = zt_malloc(n + 1);
    if (!lowered || !out) {
        free(lowered);
        free(out);
        return NULL;
    }
    /* lower-case and drop punctuation (Python's string.punctuation is exactly ASCII ispunct) */
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 128 && ispunct(c)) continue;
        lowered[m++] = (char)(c < 128 ? tolower(c) : c);
    }
    lowered[m] = '\0';
    /* split on whitespace, drop articles, join with single spaces */
    size_t used = 0;
    for (size_t i = 0; i < m;) {
        while (i < m && isspace((unsigned char)lowered[i]))
            i++;
        size_t start = i;
        while (i < m && !isspace((unsigned char)lowered[i]))
            i++;
        size_t len = i - start;
        if (len == 0 || is_article(lowered + start, len)) continue;
        if (used) out[used++] = ' ';
        memcpy(out + used, lowered + start, len);
        used += len;
    }
    out[used] = '\0';
    free(lowered);
    return out;
}

/* Splits a normalised string into its tokens (pointers into s, which is modified). */
static int tokens_of(char *s, char **tokens, int capacity) {
    int n = 0;
    for (char *save = NULL, *t = strtok_r(s, " ", &save); t && n < capacity;
         t = strtok_r(NULL, " ", &save))
        tokens[n++] = t;
    return n;
}

static double f1_one(const char *prediction, const char *answer) {
    char *p = zt_normalize_answer(prediction), *a = zt_normalize_answer(answer);
    double f1 = 0.0;
    if (p && a) {
        size_t cap = strlen(p) / 2 + strlen(a) / 2 + 2;
        char **pt = zt_malloc(cap * sizeof *pt), **at = zt_malloc(cap * sizeof *at);
        int *used = zt_calloc(cap, sizeof *used);
        if (pt && at && used) {
            int np = tokens_of(p, pt, (int)cap), na = tokens_of(a, at, (int)cap);
            if (np == 0 || na == 0) {
                f1 = np == na ? 1.0 : 0.0; /* SQuAD: both empty counts as a match */
            } else {
                /* multiset intersection: each answer token matches at most once */
                int common = 0;
                for (int i = 0; i < np; i++)
                    for (int j = 0; j < na; j++)
                        if (!used[j] && strcmp(pt[i], at[j]) == 0) {
                            used[j] = 1;
                            common++;
                            break;
                        }
                if (common > 0) {
                    double precision = (double)common / np, recall = (double)common / na;
                    f1 = 2.0 * precision * recall / (precision + recall);
                }
            }
        }
        free(pt);
        free(at);
        free(used);
    }
    free(p);
    free(a);
    return f1;
}

double zt_answer_f1(const char *prediction, char *const *answers, int n_answers) {
    double best = 0.0;
    for (int i = 0; i < n_answers; i++) {
        double f1 = f1_one(prediction, answers[i]);
        if (f1 > best) best = f1;
    }
    return best;
}

double zt_answer_exact_match(const char *prediction, char *const *answers, int n_answers) {
    char *p = zt_normalize_answer(prediction);
    double match = 0.0;
    for (int i = 0; p && i < n_answers && match == 0.0; i++) {
        char *a = zt_normalize_answer(answers[i]);
        if (a && strcmp(p, a) == 0) match = 1.0;
        free(a);
    }
    free(p);
    return match;
}
