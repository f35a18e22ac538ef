/* The first-order optimizers and the loss gradient they start from (first_order.h). */
#include "train/first_order.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"
#include "data/targets.h"
#include "train/task_loss.h"

static const zt_fo_info fo_table[] = {
    {"sgd", ZT_FO_SGD, 0, "SGD on backprop gradients (PyTorch's: --momentum, --nesterov)"},
    {"signsgd", ZT_FO_SIGN, 0, "signSGD: lr * sign(gradient)"},
    {"adam", ZT_FO_ADAM, 0, "Adam with bias correction, coupled L2 weight decay"},
    {"adamw", ZT_FO_ADAM, 1, "AdamW: Adam with decoupled weight decay"},
    {"adamm", ZT_FO_ADAMM, 0, "AdaMM (seed 001): AMSGrad's max of v, no bias correction"},
};

const zt_fo_info *zt_fo_find(const char *name) {
    for (size_t i = 0; name && i < sizeof fo_table / sizeof fo_table[0]; i++)
        if (strcmp(fo_table[i].name, name) == 0) return &fo_table[i];
    return NULL;
}

int zt_fo_count(void) {
    return (int)(sizeof fo_table / sizeof fo_table[0]);
}

const zt_fo_info *zt_fo_at(int index) {
    return index >= 0 && index < zt_fo_count() ? &fo_table[index] : NULL;
}

int zt_fo_state_copies(const zt_fo_info *info, const zt_zo_hparams *hp) {
    const zt_fo_update u = {.rule = info->rule, .momentum = (float)hp->momentum};
    return zt_fo_state_rows(&u);
}

zt_fo_update zt_fo_update_at(const zt_fo_info *info, const zt_zo_hparams *hp,
                             const zt_fo_options *fo, int step, int total, int phase_step) {
    const double lr = zt_schedule_value(hp->lr_schedule, hp->lr, 0.0, step, total);
    zt_fo_update u = {
        .rule = info->rule,
        .lr = (float)lr,
        .weight_decay = (float)hp->weight_decay,
        .decoupled_decay = info->decoupled_decay,
        .momentum = info->rule == ZT_FO_SGD ? (float)hp->momentum : 0.0f,
        .nesterov = fo->nesterov,
        .beta1 = (float)hp->beta1,
        .beta2 = (float)hp->beta2,
        .eps = (float)hp->adam_eps,
        .bias1 = (float)(1.0 - pow(hp->beta1, phase_step + 1)),
        .bias2 = (float)(1.0 - pow(hp->beta2, phase_step + 1)),
        .grad_scale = 1.0f,
    };
    return u;
}

zt_status zt_fo_target_weights(const zt_task_batch *b, const float *logprobs, long total_targets,
                               int total_examples, float *weights, double *loss) {
    if (b->kind != ZT_TASK_CLASSIFICATION) {
        double sum = 0.0;
        for (int r = 0; r < b->n_targets; r++) {
            weights[r] = (float)(1.0 / (double)total_targets);
            if (logprobs) sum -= (double)logprobs[r];
        }
        *loss = sum / (double)total_targets;
        return ZT_OK;
    }
    /* loss = mean over examples of -log softmax(scores)[label], score_s = mean of the option
     * tokens' log-probabilities: d loss / d lp_r = (p_s - [s = label]) / (E n_s). */
    const zt_targets t = {b->n_targets, b->target_rows, b->target_ids, b->target_sequence};
    double *scores = zt_malloc((size_t)b->n_sequences * 2 * sizeof *scores);
    int *tokens = zt_calloc((size_t)b->n_sequences, sizeof *tokens);
    if (!scores || !tokens) {
        free(scores);
        free(tokens);
        return zt_fail(ZT_ERR_NOMEM, "first-order step: candidate scores");
    }
    double *d_score = scores + b->n_sequences;
    zt_candidate_scores(logprobs, &t, b->n_sequences, scores);
    for (int r = 0; r < b->n_targets; r++)
        tokens[b->target_sequence[r]]++;
    double mean = 0.0;
    zt_status s = zt_classification_loss(scores, b->example_of_sequence, b->n_sequences, b->label,
                                         b->n_examples, NULL, &mean);
    for (int first = 0; s == ZT_OK && first < b->n_sequences;) {
        const int e = b->example_of_sequence[first];
        int end = first;
        double top = scores[first];
        while (end < b->n_sequences && b->example_of_sequence[end] == e)
            top = fmax(top, scores[end++]);
        double sum = 0.0;
        for (int c = first; c < end; c++)
            sum += exp(scores[c] - top);
        for (int c = first; c < end; c++)
            d_score[c] = (exp(scores[c] - top) / sum - (c - first == b->label[e] ? 1.0 : 0.0)) /
                         (double)total_examples;
        first = end;
    }
    for (int r = 0; s == ZT_OK && r < b->n_targets; r++) {
        const int seq = b->target_sequence[r];
        weights[r] = (float)(-d_score[seq] / (double)tokens[seq]);
    }
    *loss = mean * (double)b->n_examples / (double)total_examples;
    free(scores);
    free(tokens);
    return s;
}

zt_status zt_phases_parse(const char *spec, const char *optimizer, int steps, zt_phases *out) {
    memset(out, 0, sizeof *out);
    if (!spec || !spec[0]) {
        const zt_fo_info *fo = zt_fo_find(optimizer);
        const zt_optimizer_info *zo = zt_optimizer_find(optimizer);
        if (!fo && !zo)
            return zt_fail(ZT_ERR_INVALID_ARG, "--optimizer %s: not a known optimizer",
                           optimizer ? optimizer : "(none)");
        out->n = 1;
        out->phase[0] = (zt_phase){fo ? fo->name : zo->name, fo, 0, steps};
        return ZT_OK;
    }
    const char *zo_name = NULL;
    int start = 0;
    for (const char *at = spec; *at;) {
        const char *colon = strchr(at, ':');
        const char *comma = strchr(at, ',');
        if (!comma) comma = at + strlen(at);
        char name[64];
        const size_t length = colon && colon < comma ? (size_t)(colon - at) : 0;
        if (length == 0 || length >= sizeof name)
            return zt_fail(ZT_ERR_INVALID_ARG, "--schedule %s: phase %d is not NAME:STEPS", spec,
                           out->n + 1);
        memcpy(name, at, length);
        name[length] = '\0';
        char *end = NULL;
        const long n = strtol(colon + 1, &end, 10);
        if (end != comma || n <= 0 || n > 1000000000L)
            return zt_fail(ZT_ERR_INVALID_ARG,
                           "--schedule %s: phase %d (%s) needs a positive "
                           "step count",
                           spec, out->n + 1, name);
        const char *resolved = strcmp(name, "zo") == 0   ? "mezo"
                               : strcmp(name, "fo") == 0 ? "adamw"
                                                         : name;
        const zt_fo_info *fo = zt_fo_find(resolved);
        const zt_optimizer_info *zo = fo ? NULL : zt_optimizer_find(resolved);
        if (!fo && !zo)
            return zt_fail(ZT_ERR_INVALID_ARG, "--schedule %s: phase %d: '%s' is not an optimizer",
                           spec, out->n + 1, name);
        if (zo && zo_name && strcmp(zo_name, zo->name) != 0)
            return zt_fail(ZT_ERR_INVALID_ARG,
                           "--schedule %s: two zeroth-order optimizers (%s, %s); a schedule takes "
                           "one, and first-order ones",
                           spec, zo_name, zo->name);
        if (zo) zo_name = zo->name;
        if (out->n == ZT_MAX_PHASES)
            return zt_fail(ZT_ERR_INVALID_ARG, "--schedule %s: more than %d phases", spec,
                           ZT_MAX_PHASES);
        out->phase[out->n++] = (zt_phase){fo ? fo->name : zo->name, fo, start, (int)n};
        if ((long)start + n > 2000000000L)
            return zt_fail(ZT_ERR_INVALID_ARG, "--schedule %s: too many steps", spec);
        start += (int)n;
        at = *comma ? comma + 1 : comma;
    }
    return ZT_OK;
}

int zt_phase_at(const zt_phases *p, int step) {
    int k = 0;
    while (k + 1 < p->n && step >= p->phase[k + 1].start)
        k++;
    return k;
}

int zt_phases_steps(const zt_phases *p) {
    return p->n ? p->phase[p->n - 1].start + p->phase[p->n - 1].steps : 0;
}

const char *zt_phases_zo_optimizer(const zt_phases *p) {
    for (int k = 0; k < p->n; k++)
        if (!p->phase[k].fo) return p->phase[k].optimizer;
    return NULL;
}
