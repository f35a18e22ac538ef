#!/usr/bin/env python3
"""Builds demo/: the embedded default model, tokenizer and task that `zotune train` runs on.

Nothing is downloaded; everything is made here, deterministically (fixed seeds, one thread):

  1. A synthetic English-like corpus (CORPUS_DOCS documents): product, film, book, restaurant,
     hotel and game reviews built from word lists and templates with real sentiment structure
     (positive/negative adjectives and verbs, intensifiers, negation that flips polarity,
     "but"/"although" contrasts where the second clause decides), each usually followed by a
     verdict sentence that depends on the review's sentiment ("I would recommend it.", "One
     star.", ...), mixed with neutral narrative sentences. The verdict is what makes a language
     model trained on the corpus compute the sentiment of a review. The words " great" and
     " terrible" occur only in the narrative sentences, never as the verdict of a review, so
     the pretrained model has not learnt the SST-2 verbalizer "It was great/terrible" for
     reviews: its zero-shot accuracy on the task is mediocre, and fine-tuning has to connect the
     sentiment it computes to the label words.
  2. An OPT-style byte-level BPE tokenizer trained on the corpus with HuggingFace `tokenizers`
     (GPT-2 regex, no prefix space, "<s>" "<pad>" "</s>" "<unk>" at ids 0..3, BOS "</s>" = 2).
  3. A tiny pre-LN OPTForCausalLM pretrained from scratch on the corpus with torch (AdamW,
     backprop), saved with save_pretrained (f16) into demo/model/ with the tokenizer files.
  4. The task demo/task/{train,dev}.jsonl: held-out reviews (none occurs in the corpus) in
     docs/tasks.md's text classification format with MeZO's SST-2 template
     {"prompt": "<review> It was", "candidates": [" terrible", " great"], "label": 0|1}, and the
     same records pre-tokenized (*.pretok.jsonl: BOS 2 + ids, candidate ids by MeZO's
     option_len rule).

Needs torch, transformers, tokenizers, safetensors, numpy (CI never runs it; the outputs are
committed). Usage: python3 tools/make_demo.py [--out demo]   (about 6 minutes on one core;
prints a sha256 prefix of every file written; reruns are byte-identical with the same library
versions). demo/README.md records the measured results.
"""
import argparse
import hashlib
import json
import math
import os
import random
import time

SEED = 20240601
CORPUS_DOCS = 60000
N_TRAIN = 1000
N_DEV = 500
VOCAB_SIZE = 2048
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]
BOS_ID = 2
PAD_ID = 1

MODEL = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, ffn_dim=512,
             max_position_embeddings=128)
PRETRAIN = dict(steps=3000, batch_size=64, seq_len=64, lr=3e-3, warmup=100, weight_decay=0.01,
                probe_every=250)

TEMPLATE_SUFFIX = " It was"
CANDIDATES = [" terrible", " great"]

# ----------------------------------------------------------------------------------------------
# Word lists.

DOMAINS = {
    "film": dict(
        objects=["movie", "film", "documentary", "thriller", "comedy", "drama", "sequel",
                 "cartoon", "musical", "western"],
        aspects=["acting", "plot", "script", "soundtrack", "ending", "dialogue", "pacing",
                 "cast", "direction", "camera work", "story", "humor", "villain", "lead actor",
                 "special effects", "music", "opening scene", "characters"],
        intros=["We watched this {o} on {day}.", "I saw this {o} with my {rel}.",
                "My {rel} picked this {o} for {day} night.", "I rented this {o} last week.",
                "We went to see this {o} at the cinema."],
    ),
    "book": dict(
        objects=["book", "novel", "memoir", "biography", "cookbook", "textbook", "story",
                 "poetry collection"],
        aspects=["writing", "characters", "plot", "ending", "prose", "pacing", "first chapter",
                 "main character", "dialogue", "humor", "style", "illustrations", "translation"],
        intros=["I read this {o} on my {trip}.", "My {rel} gave me this {o}.",
                "I finished this {o} over the weekend.", "I bought this {o} for my {rel}.",
                "Our book club read this {o}."],
    ),
    "restaurant": dict(
        objects=["restaurant", "cafe", "diner", "bakery", "pizza place", "bistro", "food truck",
                 "steakhouse", "noodle bar"],
        aspects=["food", "service", "staff", "coffee", "menu", "dessert", "soup", "waiter",
                 "atmosphere", "bread", "pasta", "music", "portions", "wine list", "kitchen"],
        intros=["We had dinner at this {o} on {day}.", "I took my {rel} to this {o}.",
                "We stopped at this {o} on our {trip}.", "I ordered lunch from this {o}.",
                "This {o} opened near my house last month."],
    ),
    "hotel": dict(
        objects=["hotel", "motel", "resort", "inn", "hostel", "guest house"],
        aspects=["room", "bed", "staff", "view", "breakfast", "location", "pool", "shower",
                 "front desk", "wifi", "lobby", "parking", "cleaning"],
        intros=["We stayed at this {o} on our {trip}.", "I booked this {o} for my {rel}.",
                "We spent two nights at this {o}.", "I stayed at this {o} on {day}."],
    ),
    "product": dict(
        objects=["phone", "laptop", "camera", "blender", "headphones", "vacuum", "keyboard",
                 "speaker", "backpack", "printer", "watch", "toaster", "lamp", "tablet",
                 "coffee maker", "microwave", "drill", "jacket", "mattress"],
        aspects=["battery", "screen", "sound", "design", "build quality", "price", "setup",
                 "buttons", "software", "charger", "manual", "packaging", "motor", "handle",
                 "fabric", "display", "size", "weight", "customer support"],
        intros=["I bought this {o} last {month}.", "My {rel} ordered this {o} for me.",
                "I have used this {o} for a week.", "I got this {o} as a gift.",
                "This {o} arrived on {day}."],
    ),
    "game": dict(
        objects=["game", "board game", "puzzle", "video game", "card game", "app"],
        aspects=["graphics", "controls", "levels", "music", "story", "rules", "multiplayer",
                 "tutorial", "puzzles", "boss fights", "menus", "art style"],
        intros=["I played this {o} with my {rel}.", "We tried this {o} on {day}.",
                "I downloaded this {o} last {month}.", "My {rel} recommended this {o}."],
    ),
}

# Review adjectives. " great" and " terrible" are deliberately absent (see the module doc).
POS_ADJ = ["wonderful", "excellent", "superb", "delightful", "brilliant", "charming",
           "fantastic", "lovely", "amazing", "impressive", "solid", "enjoyable", "pleasant",
           "beautiful", "clever", "fresh", "smooth", "perfect", "outstanding", "elegant",
           "friendly", "reliable", "gorgeous", "polished", "moving", "tasty", "sharp",
           "comfortable", "fun", "generous", "warm", "stunning", "good", "nice", "decent",
           "helpful", "sturdy", "clean", "funny", "gripping"]
NEG_ADJ = ["awful", "dreadful", "boring", "dull", "horrible", "poor", "disappointing",
           "clumsy", "bland", "weak", "annoying", "messy", "cheap", "flimsy", "rude", "slow",
           "stale", "noisy", "confusing", "broken", "ugly", "lazy", "painful", "sloppy",
           "tedious", "useless", "cold", "greasy", "shallow", "forgettable", "dirty",
           "unreliable", "overpriced", "bad", "mediocre", "clunky", "harsh", "weird", "dated",
           "soggy"]
INTENSIFIERS = ["very", "really", "quite", "truly", "extremely", "incredibly", "remarkably",
                "so", "pretty", "rather", "absolutely", "surprisingly"]
POS_VERB = ["loved", "enjoyed", "liked", "adored", "appreciated", "admired"]
NEG_VERB = ["hated", "disliked", "regretted", "resented", "despised"]
POS_NOUNPHRASE = ["a joy", "a treat", "a pleasure", "a delight", "a gem", "a triumph"]
NEG_NOUNPHRASE = ["a mess", "a chore", "a letdown", "a disaster", "a failure", "a headache"]

POS_VERDICT = ["I would recommend it.", "I would recommend it to anyone.",
               "Highly recommended.", "Five stars.", "I will buy it again.", "Worth every penny.",
               "I loved every minute.", "I would happily go back.", "Two thumbs up.",
               "I am very happy with it.", "A real winner.", "I can not wait for more."]
NEG_VERDICT = ["I would not recommend it.", "Avoid it.", "One star.", "What a waste of money.",
               "Never again.", "I want my money back.", "I regret it.", "Two thumbs down.",
               "I am very unhappy with it.", "Stay away.", "A complete waste of time.",
               "I gave up halfway."]

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
RELATIVES = ["sister", "brother", "mother", "father", "wife", "husband", "friend", "son",
             "daughter", "boss", "neighbor", "cousin", "kids", "parents", "roommate"]
TRIPS = ["holiday", "trip", "vacation", "business trip", "road trip", "flight", "commute"]

# Narrative material: the only places " great" and " terrible" occur.
NAMES = ["Anna", "Ben", "Carla", "David", "Emma", "Frank", "Grace", "Henry", "Iris", "Jack",
         "Kate", "Leo", "Maria", "Nick", "Olivia", "Paul", "Rosa", "Sam", "Tina", "Victor"]
PLACES = ["the market", "the park", "the station", "the library", "the beach", "the office",
          "the museum", "the river", "the school", "the hospital", "the airport", "the farm",
          "the city", "the village", "the garden", "the mountains"]
WEATHER = ["cold", "warm", "sunny", "windy", "raining", "snowing", "late", "early", "dark",
           "quiet", "crowded", "hot", "foggy", "Monday", "midnight", "noon", "summer",
           "winter", "great", "terrible"]
NEUTRAL_ADJ = ["long", "short", "old", "new", "small", "large", "busy", "empty", "green", "red",
               "blue", "tall", "round", "heavy", "light", "open", "closed", "full", "great",
               "terrible"]
THINGS = ["storm", "idea", "day", "week", "meeting", "trip", "game", "match", "party",
          "crowd", "noise", "view", "surprise", "question", "mistake", "journey", "dinner",
          "plan", "result", "year"]
NARRATIVE = [
    "{n} walked to {p} in the morning.",
    "{n} and {m} met at {p}.",
    "It was {w} when {n} arrived at {p}.",
    "It was {w}.",
    "It was {w} outside, so {n} stayed home.",
    "It was a {a} {t}.",
    "The {t} was {a}.",
    "{n} had a {a} {t}.",
    "{n} said that the {t} was {a}.",
    "There was a {a} {t} at {p}.",
    "{n} told {m} about the {t}.",
    "On {d} {n} went to {p} with {m}.",
    "{n} waited for {m} until it was {w}.",
    "The {t} at {p} was {a} and {a2}.",
    "{n} thought it was a {a} {t}.",
    "After the {t}, {n} went back to {p}.",
    "In {mo} the {t} at {p} was {a}.",
    "{n} asked {m} a question about the {t}.",
]


def pick(rng, items):
    return items[rng.randrange(len(items))]


def cap(s):
    return s[0].upper() + s[1:]


def adjective_phrase(rng, polarity):
    """An adjective phrase of the given polarity (+1/-1), maybe negated or intensified.
    Returns (phrase, negated)."""
    if rng.random() < 0.25:  # "not <adjective of the opposite polarity>"
        adj = pick(rng, NEG_ADJ if polarity > 0 else POS_ADJ)
        neg = pick(rng, ["not", "not", "not", "never", "hardly", "far from"])
        if neg != "far from" and rng.random() < 0.3:
            return f"{neg} at all {adj}" if neg == "not" else f"{neg} {adj}", True
        return f"{neg} {adj}", True
    adj = pick(rng, POS_ADJ if polarity > 0 else NEG_ADJ)
    if rng.random() < 0.4:
        return f"{pick(rng, INTENSIFIERS)} {adj}", False
    return adj, False


def clause(rng, dom, polarity):
    """One sentiment-bearing clause (no final punctuation)."""
    a = pick(rng, dom["aspects"])
    o = pick(rng, dom["objects"])
    k = rng.randrange(9)
    if k <= 2:
        phrase, negated = adjective_phrase(rng, polarity)
        verb = "was" if negated else pick(rng, ["was", "was", "is", "felt", "seemed", "looked"])
        return f"the {a} {verb} {phrase}"
    if k == 3:
        phrase, _ = adjective_phrase(rng, polarity)
        return f"this {o} is {phrase}"
    if k == 4:
        if rng.random() < 0.25:
            verb = pick(rng, NEG_VERB if polarity > 0 else POS_VERB)
            return f"I {pick(rng, ['never', 'hardly'])} {verb} the {a}"
        return f"I {pick(rng, POS_VERB if polarity > 0 else NEG_VERB)} the {a}"
    if k == 5:
        adj = pick(rng, POS_ADJ if polarity > 0 else NEG_ADJ)
        return f"it has {'an' if adj[0] in 'aeiou' else 'a'} {adj} {a}"
    if k == 6:
        return f"the {a} was {pick(rng, POS_NOUNPHRASE if polarity > 0 else NEG_NOUNPHRASE)}"
    if k == 7:
        adj1 = pick(rng, POS_ADJ if polarity > 0 else NEG_ADJ)
        adj2 = pick(rng, POS_ADJ if polarity > 0 else NEG_ADJ)
        a2 = pick(rng, dom["aspects"])
        return f"the {a} was {adj1} and the {a2} was {adj2}"
    if polarity > 0:
        return pick(rng, [f"I had a lot of fun with the {a}", f"the {a} made me smile",
                          f"the {a} exceeded my expectations", f"I could not stop smiling"])
    return pick(rng, [f"the {a} made me angry", f"the {a} fell apart",
                      f"I could not wait for it to end", f"the {a} let me down"])


def intro(rng, dom):
    return pick(rng, dom["intros"]).format(o=pick(rng, dom["objects"]), day=pick(rng, DAYS),
                                            rel=pick(rng, RELATIVES), trip=pick(rng, TRIPS),
                                            month=pick(rng, MONTHS))


def review(rng, polarity):
    """A review whose overall sentiment is `polarity`."""
    dom = DOMAINS[pick(rng, sorted(DOMAINS))]
    parts = []
    if rng.random() < 0.5:
        parts.append(intro(rng, dom))
    shape = rng.randrange(6)
    if shape <= 1:  # one or two clauses of the review's polarity
        for _ in range(1 + shape):
            parts.append(cap(clause(rng, dom, polarity)) + ".")
    elif shape == 2:  # contrast: the second clause decides
        first, second = clause(rng, dom, -polarity), clause(rng, dom, polarity)
        if rng.random() < 0.5:
            parts.append(cap(first) + ", but " + second + ".")
        else:
            parts.append("Although " + first + ", " + second + ".")
    elif shape == 3:  # two agreeing clauses joined
        parts.append(cap(clause(rng, dom, polarity)) + " and " + clause(rng, dom, polarity) + ".")
    elif shape == 5:  # the main clause first, a conceded opposite clause after it
        parts.append(cap(clause(rng, dom, polarity)) + ", "
                     + pick(rng, ["although", "even though", "though", "even if"]) + " "
                     + clause(rng, dom, -polarity) + ".")
    else:  # a mild opposite remark, then the real opinion
        parts.append(cap(clause(rng, dom, -polarity)) + ".")
        parts.append(pick(rng, ["However,", "Still,", "But overall,", "In the end,"]) + " "
                     + clause(rng, dom, polarity) + ".")
    return " ".join(parts)


def narrative(rng):
    sentences = []
    for _ in range(rng.randrange(1, 4)):
        n, m = rng.sample(NAMES, 2)
        a, a2 = rng.sample(NEUTRAL_ADJ, 2)
        sentences.append(pick(rng, NARRATIVE).format(
            n=n, m=m, p=pick(rng, PLACES), w=pick(rng, WEATHER), a=a, a2=a2, t=pick(rng, THINGS),
            d=pick(rng, DAYS), mo=pick(rng, MONTHS)))
    return " ".join(sentences)


def corpus_documents(rng, n_docs):
    docs = []
    for _ in range(n_docs):
        r = rng.random()
        if r < 0.75:
            polarity = 1 if rng.random() < 0.5 else -1
            text = review(rng, polarity)
            if rng.random() < 0.85:
                verdict = pick(rng, POS_VERDICT if polarity > 0 else NEG_VERDICT)
                text = text + " " + verdict
            docs.append(text)
        else:
            docs.append(narrative(rng))
    return docs


def task_examples(rng, n, exclude):
    """n held-out reviews (none in `exclude`, no duplicates), labels balanced and shuffled."""
    out, seen = [], set(exclude)
    labels = [i % 2 for i in range(n)]
    rng.shuffle(labels)
    for label in labels:
        while True:
            text = review(rng, 1 if label == 1 else -1)
            if text not in seen:
                seen.add(text)
                break
        out.append({"prompt": text + TEMPLATE_SUFFIX, "candidates": list(CANDIDATES),
                    "label": label})
    return out


# ----------------------------------------------------------------------------------------------
# Tokenizer.

def train_tokenizer(docs):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  min_frequency=2, show_progress=False)
    tok.train_from_iterator(docs, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="</s> $A", pair="</s> $A </s> $B", special_tokens=[("</s>", BOS_ID)])
    for index, token in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(token) == index, token
    return tok


def encode(tok, text):
    """ids without BOS."""
    return tok.encode(text, add_special_tokens=False).ids


def pretokenize(tok, record):
    """MeZO's rule (docs/spec.md §4.5): enc = encode(prompt.strip(' ')), seq_c = encode((prompt + c)
    .strip(' ')), option = seq_c[len(enc):], BOS prepended to the prompt."""
    enc = encode(tok, record["prompt"].strip(" "))
    cands = []
    for c in record["candidates"]:
        seq = encode(tok, (record["prompt"] + c).strip(" "))
        assert seq[:len(enc)] == enc, (record, c)
        cands.append(seq[len(enc):])
    return {"prompt": [BOS_ID] + enc, "candidates": cands, "label": record["label"]}


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, separators=(", ", ": ")) + "\n")


# ----------------------------------------------------------------------------------------------
# Model.

def opt_config(vocab_size):
    from transformers import OPTConfig
    return OPTConfig(vocab_size=vocab_size, word_embed_proj_dim=MODEL["hidden_size"],
                     do_layer_norm_before=True, activation_function="relu", dropout=0.0,
                     attention_dropout=0.0, bos_token_id=BOS_ID, eos_token_id=BOS_ID,
                     pad_token_id=PAD_ID, tie_word_embeddings=True, init_std=0.02, **MODEL)


def pretrain(tok, docs, log, probe=None):
    import torch
    from transformers import OPTForCausalLM
    torch.manual_seed(SEED)
    torch.set_num_threads(1)  # results depend on the thread count; one keeps them reproducible
    torch.use_deterministic_algorithms(True)
    cfg = opt_config(tok.get_vocab_size())
    model = OPTForCausalLM(cfg)
    model.train()
    T = PRETRAIN["seq_len"]
    seqs = []
    for d in docs:
        ids = [BOS_ID] + encode(tok, d)
        seqs.append(ids[:T])
    log(f"pretraining corpus: {len(seqs)} documents, {sum(map(len, seqs))} tokens, "
        f"max {max(map(len, seqs))} tokens")
    rng = random.Random(SEED + 1)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "layer_norm" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": PRETRAIN["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=PRETRAIN["lr"], betas=(0.9, 0.98), eps=1e-8)
    steps, B, warm = PRETRAIN["steps"], PRETRAIN["batch_size"], PRETRAIN["warmup"]
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    batches = []  # length-bucketed batches: shuffled, sorted by length in chunks of 32 batches
    t0 = time.time()
    ema = None
    for step in range(steps):
        if not batches:
            perm = list(range(len(seqs)))
            rng.shuffle(perm)
            for c in range(0, len(perm) - B + 1, 32 * B):
                chunk = sorted(perm[c:c + 32 * B], key=lambda i: (len(seqs[i]), i))
                batches += [chunk[j:j + B] for j in range(0, len(chunk) - B + 1, B)]
            rng.shuffle(batches)
        batch = [seqs[i] for i in batches.pop()]
        L = max(map(len, batch))
        ids = torch.full((B, L), PAD_ID, dtype=torch.long)
        mask = torch.zeros((B, L), dtype=torch.long)
        for i, s in enumerate(batch):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        labels = ids.masked_fill(mask == 0, -100)
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        ema = out.loss.item() if ema is None else 0.98 * ema + 0.02 * out.loss.item()
        if step % 100 == 0 or step == steps - 1:
            log(f"  step {step:5d}  loss {out.loss.item():.4f}  ema {ema:.4f}  "
                f"lr {sched.get_last_lr()[0]:.2e}  {time.time() - t0:.0f}s")
        if probe and (step % PRETRAIN["probe_every"] == 0 or step == steps - 1):
            model.eval()
            log("    " + probe(model))
            model.train()
    model.eval()
    return model, ema, time.time() - t0


def zero_shot_accuracy(model, tok, records):
    """MeZO's evaluation (docs/spec.md §4.4): candidates scored by mean option log-prob, batch 1."""
    import torch
    correct = 0
    with torch.no_grad():
        for r in records:
            p = pretokenize(tok, r)
            scores = []
            for c in p["candidates"]:
                ids = torch.tensor([p["prompt"] + c])
                lp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
                tgt = ids[0, 1:]
                tok_lp = lp[torch.arange(len(tgt)), tgt][-len(c):]
                scores.append(tok_lp.mean().item())
            correct += int(max(range(len(scores)), key=lambda i: scores[i]) == r["label"])
    return correct / len(records)


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "demo"))
    args = ap.parse_args()
    out = args.out
    model_dir = os.path.join(out, "model")
    task_dir = os.path.join(out, "task")
    os.makedirs(model_dir, exist_ok=True)
    os.makedirs(task_dir, exist_ok=True)
    log = lambda s: print(s, flush=True)

    rng = random.Random(SEED)
    docs = corpus_documents(rng, CORPUS_DOCS)
    task_rng = random.Random(SEED + 2)
    examples = task_examples(task_rng, N_TRAIN + N_DEV, docs)
    train, dev = examples[:N_TRAIN], examples[N_TRAIN:]
    in_corpus = set(docs)
    assert not any(r["prompt"][:-len(TEMPLATE_SUFFIX)] in in_corpus for r in examples)
    log(f"corpus: {len(docs)} documents, {len(set(docs))} distinct; "
        f"task: {len(train)} train / {len(dev)} dev, none in the corpus")

    tok = train_tokenizer(docs)
    tok.model.save(model_dir)
    tok.save(os.path.join(model_dir, "tokenizer.json"), pretty=False)
    log(f"tokenizer: {tok.get_vocab_size()} tokens")

    write_jsonl(os.path.join(task_dir, "train.jsonl"), train)
    write_jsonl(os.path.join(task_dir, "dev.jsonl"), dev)
    write_jsonl(os.path.join(task_dir, "train.pretok.jsonl"), [pretokenize(tok, r) for r in train])
    write_jsonl(os.path.join(task_dir, "dev.pretok.jsonl"), [pretokenize(tok, r) for r in dev])

    def probe(model):
        verdict = [dict(r, prompt=r["prompt"][:-len(TEMPLATE_SUFFIX)],
                        candidates=[" One star.", " Five stars."]) for r in dev[:200]]
        return (f"dev[:200] zero-shot {zero_shot_accuracy(model, tok, dev[:200]):.3f}, "
                f"verdict probe {zero_shot_accuracy(model, tok, verdict):.3f}")
    model, loss, secs = pretrain(tok, docs, log, probe)
    log(f"pretraining: final ema loss {loss:.4f}, {secs:.0f}s")
    log(f"parameters: {model.num_parameters()}")
    log(f"zero-shot (f32) dev accuracy: {zero_shot_accuracy(model, tok, dev):.3f}, "
        f"train accuracy: {zero_shot_accuracy(model, tok, train[:300]):.3f}")
    import transformers
    transformers.utils.logging.disable_progress_bar()
    model.half().save_pretrained(model_dir)
    for sub in (model_dir, task_dir):
        for name in sorted(os.listdir(sub)):
            with open(os.path.join(sub, name), "rb") as f:
                data = f.read()
            log(f"  {hashlib.sha256(data).hexdigest()[:16]}  {len(data):8d}  "
                f"{os.path.relpath(os.path.join(sub, name), out)}")


if __name__ == "__main__":
    main()
