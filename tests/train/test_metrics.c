/* SQuAD's answer metrics (src/train/metrics.c, docs/spec.md §4.4) against cases worked out by
 * hand: the normalisation (lower-case, ASCII punctuation dropped, whole-word articles dropped,
 * whitespace collapsed), token F1 as a multiset overlap with precision != recall, exact match,
 * and the maximum over several reference answers. */
#include <stdlib.h>
#include <string.h>

#include "train/metrics.h"
#include "zt_test.h"

static void check_normalized(const char *text, const char *want) {
    char *got = zt_normalize_answer(text);
    ZT_CHECK(got && strcmp(got, want) == 0, "normalize(\"%s\") = \"%s\", want \"%s\"", text,
             got ? got : "(null)", want);
    free(got);
}

static void check_f1(const char *prediction, const char *answer, double want) {
    char *answers[1] = {(char *)answer};
    double got = zt_answer_f1(prediction, answers, 1);
    ZT_CHECK_CLOSE(got, want, 1e-15, 0, "F1(\"%s\", \"%s\")", prediction, answer);
}

static void check_em(const char *prediction, const char *answer, double want) {
    char *answers[1] = {(char *)answer};
    ZT_CHECK(zt_answer_exact_match(prediction, answers, 1) == want, "EM(\"%s\", \"%s\") != %g",
             prediction, answer, want);
}

int main(void) {
    check_normalized("The  Quick, brown fox!", "quick brown fox");
    check_normalized("An apple a day", "apple day");
    check_normalized("theater anthem", "theater anthem"); /* articles only as whole words */
    check_normalized("A.B.C.", "abc");                    /* punctuation goes before articles */
    check_normalized("  \tHello\n World  ", "hello world");
    check_normalized("'the' end", "end");
    check_normalized("the", "");

    /* precision 1, recall 1/2: F1 = 2/3 (precision alone would give 1, recall alone 1/2) */
    check_f1("the cat sat", "cat sat on the mat", 2.0 / 3.0);
    /* precision 1/2, recall 1: F1 = 2/3 */
    check_f1("Paris France", "paris", 2.0 / 3.0);
    /* multiset overlap: pred {b, b} and answer {b, c} share one b: P = R = 1/2 */
    check_f1("a b b", "b c", 0.5);
    /* one b against two: P = 1, R = 1/2 */
    check_f1("b", "b b", 2.0 / 3.0);
    /* precision 2/3, recall 2/5: F1 = 2 * (2/3)(2/5) / (2/3 + 2/5) = 1/2 */
    check_f1("red green blue", "red green yellow cyan magenta", 0.5);
    check_f1("dog", "cat", 0.0);
    check_f1("the", "a", 1.0); /* both empty after normalisation: SQuAD counts a match */
    check_f1("", "x", 0.0);
    check_f1("x", "", 0.0);

    check_em("The Eiffel Tower.", "eiffel tower", 1.0);
    check_em("Eiffel Tower", "the tower", 0.0);
    check_em("an", "the", 1.0);

    /* the maximum over the references */
    char *answers[3] = {"London", "Paris, France", "paris"};
    ZT_CHECK_CLOSE(zt_answer_f1("Paris", answers, 3), 1.0, 0, 0, "F1 max over answers");
    ZT_CHECK(zt_answer_exact_match("Paris", answers, 3) == 1.0, "EM max over answers");
    ZT_CHECK_CLOSE(zt_answer_f1("France", answers, 2), 2.0 / 3.0, 1e-15, 0,
                   "F1 max over the first two answers");
    ZT_CHECK(zt_answer_exact_match("France", answers, 3) == 0.0, "EM without a match");
    ZT_CHECK(zt_answer_f1("Paris", answers, 0) == 0.0, "no reference answers: F1 0");
    return zt_test_finish("test_metrics");
}
