#!/usr/bin/env python3
"""Tests for tools/prepare_task.py (stdlib unittest; numpy and pyarrow are used when present).

The expected prompts below are written out by hand from docs/spec.md §4.5 and
MeZO's templates.py, not produced by the code under test. Sample inputs are in samples/, one
per task, in the source formats a `datasets` user has (JSON Lines, a JSON array, GLUE TSV,
CSV from Dataset.to_csv, SQuAD v1.1 JSON).
"""
import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = os.path.join(HERE, "samples")
SCRIPT = os.environ.get("ZT_PREPARE_TASK") or os.path.normpath(
    os.path.join(HERE, "..", "..", "tools", "prepare_task.py"))

_spec = importlib.util.spec_from_file_location("prepare_task", SCRIPT)
PT = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(PT)

try:
    import numpy
except ImportError:
    numpy = None
try:
    import pyarrow  # noqa: F401
    HAVE_PYARROW = True
except ImportError:
    HAVE_PYARROW = False

# numpy.random.RandomState(seed).permutation(n).tolist(), recorded with numpy 2.4.6 (the legacy
# RandomState stream is frozen by NEP 19), for machines without numpy.
STORED_PERM = {
    (40, 0): [22, 20, 25, 4, 10, 15, 28, 11, 18, 29, 27, 35, 37, 2, 39, 30, 34, 16, 36, 8, 13, 5,
              17, 14, 33, 7, 32, 1, 26, 12, 31, 24, 6, 23, 21, 19, 9, 38, 3, 0],
    (40, 7): [17, 37, 34, 18, 32, 1, 22, 2, 9, 36, 29, 21, 13, 27, 5, 15, 20, 24, 11, 0, 12, 30,
              16, 39, 6, 7, 31, 26, 10, 33, 38, 8, 35, 14, 28, 23, 19, 3, 25, 4],
    (37, 0): [22, 20, 16, 10, 31, 28, 15, 11, 2, 25, 30, 32, 36, 34, 29, 33, 8, 13, 5, 17, 14, 7,
              27, 1, 12, 26, 24, 6, 23, 4, 18, 21, 19, 9, 35, 3, 0],
    (37, 7): [33, 2, 24, 1, 18, 13, 9, 15, 22, 5, 34, 20, 27, 17, 11, 0, 12, 21, 16, 36, 6, 31,
              26, 10, 30, 29, 8, 32, 14, 35, 28, 7, 23, 19, 3, 25, 4],
    (150, 0): [114, 62, 33, 107, 7, 100, 40, 86, 76, 71, 134, 51, 73, 54, 63, 37, 78, 90, 45, 16,
               121, 66, 24, 8, 126, 22, 44, 97, 93, 26, 137, 84, 27, 127, 132, 59, 18, 83, 61, 92,
               112, 2, 141, 43, 10, 60, 116, 144, 119, 108, 69, 135, 56, 80, 123, 133, 106, 146,
               50, 147, 85, 30, 101, 94, 64, 89, 91, 125, 48, 13, 111, 95, 20, 15, 52, 3, 149, 98,
               6, 68, 109, 96, 12, 102, 120, 104, 128, 46, 11, 110, 124, 41, 148, 1, 113, 139, 42,
               4, 129, 17, 38, 5, 53, 143, 105, 0, 34, 28, 55, 75, 35, 23, 74, 31, 118, 57, 131,
               65, 32, 138, 14, 122, 19, 29, 130, 49, 136, 99, 82, 79, 115, 145, 72, 77, 25, 81,
               140, 142, 39, 58, 88, 70, 87, 36, 21, 9, 103, 67, 117, 47],
}


def expected_perm(n, seed):
    if numpy is not None:
        return numpy.random.RandomState(seed).permutation(n).tolist()
    return STORED_PERM[(n, seed)]


def run_tool(*argv):
    """Runs main() in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = PT.main([str(a) for a in argv])
        except SystemExit as e:  # argparse
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def canon(records):
    return sorted(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in records)


def cls(prompt, candidates, label):
    return {"prompt": prompt, "candidates": candidates, "label": label}


def gen(prompt, answers):
    return {"prompt": prompt, "answers": answers, "completion": " " + answers[0] + "\n"}


YN = ["Yes", "No"]
NY = ["No", "Yes"]
SB50 = "Super Bowl 50 was an American football game. The Denver Broncos defeated the Carolina Panthers."
BEARS = "The Bears kicked a 51-yard field goal and a 23-yard field goal."
MR_PAR = 'Sent 1: The bell rang, "Run!" she said.\nSent 2: Everyone ran.'
MARK = ("Mark told Pete many lies about himself, which Pete included in his book. "
        "He should have been more truthful.")

# task -> (sample file, the records the template must produce, in file order)
EXPECTED = {
    "sst2": ("sst2.tsv", [
        cls("hide new secretions from the parental units It was", [" terrible", " great"], 0),
        cls("contains no wit , only labored gags It was", [" terrible", " great"], 0),
        cls("that loves its characters and communicates something rather beautiful about human "
            "nature It was", [" terrible", " great"], 1),
        # GLUE TSV is read without quote handling: the leading quote is text
        cls('"dumb and dumber" is smart fun It was', [" terrible", " great"], 1),
    ]),
    "rte": ("rte.jsonl", [
        cls('No Weapons of Mass Destruction Found in Iraq Yet.\nDoes this mean that "Weapons of '
            'Mass Destruction Found in Iraq." is true? Yes or No?\n', YN, 1),
        cls('A place of sorrow, after Pope John Paul II died, became a place of celebration.\n'
            'Does this mean that "Pope John Paul II died." is true? Yes or No?\n', YN, 0),
    ]),
    "cb": ("cb.json", [
        cls('Suppose It was a complex language. Not written down but handed down. One might say '
            'it was peeled down. Can we infer that "the language was peeled down"? Yes, No, or '
            'Maybe?\n', ["Yes", "No", "Maybe"], 0),
        cls("Suppose Valence the void-brain, Valence the virtuous valet. Why couldn't the figger "
            "choose his own portion of titanic anatomy to shaft? Can we infer that \"Valence was "
            "helping\"? Yes, No, or Maybe?\n", ["Yes", "No", "Maybe"], 1),
        cls("Suppose B: I don't know. A: I think it is going to rain. Can we infer that \"it is "
            "going to rain\"? Yes, No, or Maybe?\n", ["Yes", "No", "Maybe"], 2),
    ]),
    "boolq": ("boolq.jsonl", [
        cls("Persian language -- Persian is spoken in Iran and Afghanistan. Do iran and "
            "afghanistan speak the same language?\n", YN, 0),
        cls("The Sun is the star at the center of the Solar System. Is the sun a planet?\n", YN, 1),
    ]),
    "wsc": ("wsc.jsonl", [
        cls(MARK + '\nIn the previous sentence, does the pronoun "he" refer to Mark? Yes or No?\n',
            NY, 1),
        cls(MARK + '\nIn the previous sentence, does the pronoun "he" refer to Pete? Yes or No?\n',
            NY, 0),
    ]),
    "wic": ("wic.jsonl", [
        cls('Does the word "place" have the same meaning in these two sentences? Yes, No?\n'
            'Do you want to come over to my place later?\n'
            'A political system with no place for the less prominent groups.\n', NY, 0),
        cls('Does the word "beat" have the same meaning in these two sentences? Yes, No?\n'
            'We beat the competition.\nAgassi beat Becker in the tennis championship.\n', NY, 1),
    ]),
    "multirc": ("multirc.csv", [
        cls(MR_PAR + '\nQuestion: What did she say?\nI found this answer "Run!". Is that '
            'correct? Yes or No?\n', NY, 1),
        cls(MR_PAR + '\nQuestion: What did she say?\nI found this answer "Walk". Is that '
            'correct? Yes or No?\n', NY, 0),
    ]),
    # Copa: premise minus its final ".", " because "/" so "; the trailing space is carried
    # by the candidates, whose first word is lower-cased unless it is "I".
    "copa": ("copa.jsonl", [
        cls("My body cast a shadow over the grass because",
            [" the sun was rising.", " the grass was cut."], 0),
        cls("My favourite song came on the radio so",
            [" I sang along to it.", " I turned off the radio."], 0),
        cls("The girl ran out of energy so", [" she sat down to rest.", " she Ran faster."], 1),
    ]),
    # ReCoRD (ReCoRDTemplateGPT3): "@highlight\n" -> "- ", prompt + "\n-", candidate = " " +
    # query with @placeholder := entity; label = the answers' entity indices, in answer order.
    "record": ("record.jsonl", [
        cls("The harbour town of Porthmoor was flooded on Monday.\n- Storm hits Porthmoor\n"
            "- No injuries reported\n-",
            [" Residents of Cornwall were told to stay indoors.",
             " Residents of Porthmoor were told to stay indoors."], [1]),
        cls("Ann met Bob and Cy in Derby.\n- A meeting\n-",
            [" Ann spoke first.", " Bob spoke first.", " Cy spoke first."], [2, 0]),
    ]),
    "squad": ("squad.jsonl", [
        gen("Title: Super_Bowl_50\nContext: " + SB50 + "\nQuestion: Which team won Super Bowl "
            "50?\nAnswer:", ["Denver Broncos", "The Denver Broncos"]),
        gen("Title: Super_Bowl_50\nContext: " + SB50 + "\nQuestion: Who lost?\nAnswer:",
            ["the Carolina Panthers"]),
    ]),
    "drop": ("drop.jsonl", [
        gen("Passage: " + BEARS + "\nQuestion: How many yards was the longest field goal?\n"
            "Answer:", ["51"]),
        gen("Passage: " + BEARS + "\nQuestion: Which team kicked field goals?\nAnswer:",
            ["Bears", "The Bears"]),
    ]),
}

TASK_INFO = {  # task -> (kind, metric, train_as, template class)
    "sst2": ("classification", "accuracy", "classification", "SST2Template"),
    "rte": ("classification", "accuracy", "classification", "RTETemplate"),
    "cb": ("classification", "accuracy", "classification", "CBTemplate"),
    "boolq": ("classification", "accuracy", "classification", "BoolQTemplateV3"),
    "wsc": ("classification", "accuracy", "classification", "WSCTemplate"),
    "wic": ("classification", "accuracy", "classification", "WICTemplate"),
    "multirc": ("classification", "accuracy", "classification", "MultiRCTemplate"),
    "copa": ("classification", "accuracy", "lm", "CopaTemplate"),
    "record": ("classification", "accuracy", "lm", "ReCoRDTemplateGPT3"),
    "squad": ("generation", "f1", "lm", "SQuADv2Template"),
    "drop": ("generation", "f1", "lm", "DROPTemplate"),
}


class TmpCase(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        return path

    def write_jsonl(self, name, records):
        return self.write(name, "".join(json.dumps(r) + "\n" for r in records))

    def convert_all(self, task, path, extra=()):
        """Every record of `path` into train (no dev) and test; returns (train, test, info)."""
        out = os.path.join(self.tmp, "out-" + task)
        rc, _, err = run_tool("--task", task, "--train", path, "--validation", path, "--out", out,
                              "--num-train", 1000, "--num-dev", 0, "--num-test", 1000,
                              "--rng", "mt19937", *extra)
        self.assertEqual(rc, 0, err)
        with open(os.path.join(out, "task.json"), encoding="utf-8") as f:
            info = json.load(f)
        return (read_jsonl(os.path.join(out, "train.jsonl")),
                read_jsonl(os.path.join(out, "test.jsonl")), info)

    def expect_error(self, *fragments, args):
        rc, _, err = run_tool(*args)
        self.assertEqual(rc, 1, "expected failure, stderr: %s" % err)
        for frag in fragments:
            self.assertIn(frag, err)
        return err


class TemplateTests(TmpCase):
    def check_task(self, task):
        sample, expected = EXPECTED[task]
        train, test, info = self.convert_all(task, os.path.join(SAMPLES, sample))
        self.assertEqual(canon(train), canon(expected))
        self.assertEqual(canon(test), canon(expected))
        kind, metric, train_as, template = TASK_INFO[task]
        self.assertEqual((info["task"], info["kind"], info["metric"], info["train_as"],
                          info["template"]), (task, kind, metric, train_as, template))
        self.assertEqual(info["template_version"], 1)
        self.assertEqual((info["num_train"], info["num_dev"], info["num_test"]),
                         (len(expected), 0, len(expected)))

    def test_sst2_glue_tsv(self):
        self.check_task("sst2")

    def test_rte_jsonl(self):
        self.check_task("rte")

    def test_cb_json_array(self):
        self.check_task("cb")

    def test_boolq_v3(self):
        self.check_task("boolq")

    def test_wsc(self):
        self.check_task("wsc")

    def test_wic(self):
        self.check_task("wic")

    def test_multirc_csv(self):
        self.check_task("multirc")

    def test_copa(self):
        self.check_task("copa")

    def test_record(self):
        self.check_task("record")

    def test_squad(self):
        self.check_task("squad")

    def test_drop(self):
        self.check_task("drop")

    def test_task_names_case_insensitive(self):
        train, _, info = self.convert_all("ReCoRD", os.path.join(SAMPLES, "record.jsonl"))
        self.assertEqual(info["task"], "record")
        self.assertEqual(info["mezo_task"], "ReCoRD")

    def test_squad_v1_nested_json(self):
        train, _, _ = self.convert_all("squad", os.path.join(SAMPLES, "squad_v1.json"))
        self.assertEqual(canon(train), canon([
            gen("Title: T1\nContext: C1 text.\nQuestion: Q1?\nAnswer:", ["C1"]),
            gen("Title: T1\nContext: C1 text.\nQuestion: Q2?\nAnswer:", ["X", "Y"]),
            gen("Title: T1\nContext: C2 text.\nQuestion: Q3?\nAnswer:", ["C2"]),
            gen("Title: T2\nContext: C3 text.\nQuestion: Q4?\nAnswer:", ["C3"]),
        ]))

    def test_squad_v1_order_is_the_loaders(self):
        recs = PT.read_records(os.path.join(SAMPLES, "squad_v1.json"))
        self.assertEqual([r["id"] for r, _ in recs], ["a", "b", "c", "d"])

    def test_record_duplicate_answers(self):
        p = self.write_jsonl("r.jsonl", [{"passage": "P", "query": "@placeholder won.",
                                          "entities": ["A", "B"], "answers": ["B", "B"]}])
        train, _, _ = self.convert_all("record", p)
        self.assertEqual(train, [cls("P\n-", [" A won.", " B won."], [1])])

    def test_label_spellings(self):
        # original SuperGLUE spellings: class names and booleans
        p = self.write_jsonl("rte.jsonl", [
            {"premise": "P.", "hypothesis": "H.", "label": "not_entailment"},
            {"premise": "P.", "hypothesis": "H.", "label": "entailment"}])
        train, _, _ = self.convert_all("rte", p)
        self.assertEqual(sorted(r["label"] for r in train), [0, 1])
        p = self.write_jsonl("wic.jsonl", [
            {"word": "w", "sentence1": "a", "sentence2": "b", "label": True},
            {"word": "w", "sentence1": "a", "sentence2": "c", "label": False}])
        train, _, _ = self.convert_all("wic", p)
        self.assertEqual({r["prompt"][-2]: r["label"] for r in train}, {"b": 1, "c": 0})
        # BoolQ from CSV: the answer is text; super_glue/boolq's "label" (1 = True)
        p = self.write("boolq.csv", "question,answer,passage\nis it,False,P.\nis it so,True,Q.\n")
        train, _, _ = self.convert_all("boolq", p)
        self.assertEqual(canon(train), canon([cls("P. Is it?\n", YN, 1),
                                              cls("Q. Is it so?\n", YN, 0)]))
        p = self.write_jsonl("sgboolq.jsonl", [{"question": "x", "passage": "P.", "label": 1}])
        train, _, _ = self.convert_all("boolq", p)
        self.assertEqual(train, [cls("P. X?\n", YN, 0)])

    def test_nested_fields_from_csv(self):
        # Dataset.to_csv writes a struct of sequences as pandas' repr with numpy arrays
        cell = ("{'text': array(['Denver Broncos', 'The Denver Broncos'], dtype=object), "
                "'answer_start': array([49, 45], dtype=int32)}")
        p = self.write("squad.csv", 'title,context,question,answers\nT,C,Q?,"%s"\n' % cell)
        train, _, _ = self.convert_all("squad", p)
        self.assertEqual(train, [gen("Title: T\nContext: C\nQuestion: Q?\nAnswer:",
                                     ["Denver Broncos", "The Denver Broncos"])])
        # flattened columns (Dataset.flatten) holding JSON
        p = self.write("drop.csv", 'passage,question,answers_spans.spans\nP,Q,"[""3"", ""4""]"\n')
        train, _, _ = self.convert_all("drop", p)
        self.assertEqual(train, [gen("Passage: P\nQuestion: Q\nAnswer:", ["3", "4"])])

    def test_json_lines_named_json(self):
        # Dataset.to_json writes JSON Lines even to a .json file
        with open(os.path.join(SAMPLES, "copa.jsonl"), encoding="utf-8") as f:
            p = self.write("copa.json", f.read())
        train, _, _ = self.convert_all("copa", p)
        self.assertEqual(canon(train), canon(EXPECTED["copa"][1]))

    def test_column_oriented_json(self):
        p = self.write("sst2.json", json.dumps({"sentence": ["a ", " b"], "label": [1, 0]}))
        train, _, _ = self.convert_all("sst2", p)
        self.assertEqual(canon(train), canon([cls("a It was", [" terrible", " great"], 1),
                                              cls("b It was", [" terrible", " great"], 0)]))

    def test_leading_whitespace_dropped(self):
        # MeZO's final prompt is ("" + "\n\n" + verbalized).lstrip()
        p = self.write_jsonl("rte.jsonl", [{"premise": "\n P.", "hypothesis": "H.", "label": 0}])
        train, _, _ = self.convert_all("rte", p)
        self.assertEqual(train[0]["prompt"],
                         'P.\nDoes this mean that "H." is true? Yes or No?\n')

    @unittest.skipUnless(HAVE_PYARROW, "pyarrow is not importable")
    def test_parquet(self):
        import pyarrow
        import pyarrow.parquet
        table = pyarrow.table({"sentence": ["good ", "bad "], "label": [1, 0], "idx": [0, 1]})
        p = os.path.join(self.tmp, "sst2.parquet")
        pyarrow.parquet.write_table(table, p)
        train, _, _ = self.convert_all("sst2", p)
        self.assertEqual(canon(train), canon([cls("good It was", [" terrible", " great"], 1),
                                              cls("bad It was", [" terrible", " great"], 0)]))


class SamplingTests(TmpCase):
    def synthetic(self, n_train=40, n_valid=37):
        tr = self.write_jsonl("train.jsonl", [{"sentence": "s%d" % i, "label": i % 2, "idx": i}
                                              for i in range(n_train)])
        va = self.write_jsonl("valid.jsonl", [{"sentence": "v%d" % i, "label": i % 2, "idx": i}
                                              for i in range(n_valid)])
        return tr, va

    def indices(self, out, split):
        path = os.path.join(out, split + ".jsonl")
        return [int(r["prompt"].split()[0][1:]) for r in read_jsonl(path)]

    def run_split(self, tr, va, out, *extra):
        rc, _, err = run_tool("--task", "sst2", "--train", tr, "--validation", va, "--out", out,
                              *extra)
        self.assertEqual(rc, 0, err)
        return err

    def test_mezo_split_indices(self):
        tr, va = self.synthetic()
        rngs = ["mt19937"] + (["numpy", "auto"] if numpy is not None else ["auto"])
        for seed in (0, 7):
            p40, p37 = expected_perm(40, seed), expected_perm(37, seed)
            for rng in rngs:
                out = os.path.join(self.tmp, "o%d%s" % (seed, rng))
                self.run_split(tr, va, out, "--seed", seed, "--num-train", 16, "--num-dev", 8,
                               "--num-test", 10, "--rng", rng)
                self.assertEqual(self.indices(out, "train"), p40[:16], rng)
                self.assertEqual(self.indices(out, "dev"), p40[16:24], rng)
                self.assertEqual(self.indices(out, "test"), p37[:10], rng)
                with open(os.path.join(out, "task.json"), encoding="utf-8") as f:
                    info = json.load(f)
                self.assertEqual((info["num_train"], info["num_dev"], info["num_test"], info["seed"],
                                  info["source_train_records"], info["source_validation_records"]),
                                 (16, 8, 10, seed, 40, 37))

    def test_short_split_mezo_semantics(self):
        # permutation[:num_train + num_dev] holds all 40; dev is its last 20, train the rest
        tr, va = self.synthetic()
        out = os.path.join(self.tmp, "o")
        err = self.run_split(tr, va, out, "--num-train", 30, "--num-dev", 20, "--rng", "mt19937")
        p40 = expected_perm(40, 0)
        self.assertEqual(self.indices(out, "train"), p40[:20])
        self.assertEqual(self.indices(out, "dev"), p40[20:])
        self.assertEqual(self.indices(out, "test"), expected_perm(37, 0))  # fewer than 1000
        self.assertIn("warning: only 40 training records", err)

    def test_defaults_1000_500_1000(self):
        # 40 records under the defaults: the last 500 of the sample (all 40) are dev -> no train
        tr, va = self.synthetic()
        self.expect_error("train split would be empty", "--num-dev",
                          args=("--task", "sst2", "--train", tr, "--validation", va,
                                "--out", os.path.join(self.tmp, "o")))

    def test_cb_default_dev_100(self):
        # CB's 250 training examples give MeZO 150 train / 100 dev; here 150 give 50 / 100
        recs = [{"premise": "p%d" % i, "hypothesis": "h", "label": i % 3} for i in range(150)]
        tr = self.write_jsonl("cb.jsonl", recs)
        out = os.path.join(self.tmp, "o")
        rc, _, err = run_tool("--task", "cb", "--train", tr, "--validation", tr, "--out", out,
                              "--rng", "mt19937")
        self.assertEqual(rc, 0, err)
        idx = lambda split: [int(r["prompt"].split()[1][1:]) for r in
                             read_jsonl(os.path.join(out, split + ".jsonl"))]
        p150 = expected_perm(150, 0)
        self.assertEqual(idx("train"), p150[:50])
        self.assertEqual(idx("dev"), p150[50:])
        self.assertEqual(idx("test"), p150)

    def test_deterministic(self):
        tr, va = self.synthetic()
        outs = []
        for name, seed in (("a", 0), ("b", 0), ("c", 1)):
            out = os.path.join(self.tmp, name)
            self.run_split(tr, va, out, "--seed", seed, "--num-train", 16, "--num-dev", 8,
                           "--num-test", 10)
            with open(os.path.join(out, "train.jsonl"), "rb") as f:
                outs.append(f.read())
        self.assertEqual(outs[0], outs[1])
        self.assertNotEqual(outs[0], outs[2])

    def test_mt19937_matches_stored(self):
        for (n, seed), perm in STORED_PERM.items():
            self.assertEqual(PT.MT19937(seed).permutation(n), perm)

    @unittest.skipIf(numpy is None, "numpy is not importable")
    def test_mt19937_matches_numpy(self):
        for seed in (0, 1, 42, 2 ** 32 - 1):
            for n in (0, 1, 2, 3, 100, 3000):
                self.assertEqual(PT.MT19937(seed).permutation(n),
                                 numpy.random.RandomState(seed).permutation(n).tolist(),
                                 (seed, n))


class ErrorTests(TmpCase):
    def args(self, task, path, valid=None):
        return ("--task", task, "--train", path, "--validation", valid or path,
                "--out", os.path.join(self.tmp, "o"), "--num-train", 2, "--num-dev", 0)

    def test_invalid_json_line(self):
        p = self.write("a.jsonl", '{"sentence": "a", "label": 0}\n\n{"sentence": "b", "label": }\n')
        self.expect_error(p + ":3:", "invalid JSON", args=self.args("sst2", p))

    def test_missing_field(self):
        p = self.write_jsonl("cb.jsonl", [{"premise": "a", "hypothesis": "b", "label": 0},
                                          {"premise": "a", "label": 0}])
        self.expect_error(p + ":2: record 1", "missing field 'hypothesis'",
                          "fields present: label, premise", args=self.args("cb", p))

    def test_bad_label(self):
        p = self.write_jsonl("cb.jsonl", [{"premise": "a", "hypothesis": "b", "label": 3}])
        self.expect_error(p + ":1: record 0", "'label' = 3", "0..2", args=self.args("cb", p))

    def test_unlabelled_test_split(self):
        p = self.write("test.tsv", "sentence\tlabel\nfine\t-1\n")
        self.expect_error(p + ":2:", "unlabelled", args=self.args("sst2", p))

    def test_error_in_unsampled_validation_record(self):
        good = self.write_jsonl("ok.jsonl", [{"sentence": "a", "label": 0}] * 5)
        bad = self.write_jsonl("bad.jsonl", [{"sentence": "a", "label": 0}] * 4 +
                               [{"sentence": 5, "label": 0}])
        self.expect_error(bad + ":5: record 4", "'sentence' must be a string",
                          args=("--task", "sst2", "--train", good, "--validation", bad,
                                "--out", os.path.join(self.tmp, "o"), "--num-train", 2,
                                "--num-dev", 1, "--num-test", 1))

    def test_csv_field_count(self):
        p = self.write("a.csv", "sentence,label\nok,1\ntoo,many,fields\n")
        self.expect_error(p + ":3:", "3 fields, but the header has 2", args=self.args("sst2", p))

    def test_csv_missing_column(self):
        p = self.write("a.csv", "index,sentence1,sentence2,label\n0,a,b,entailment\n")
        self.expect_error(p + ":2: record 0", "missing field 'premise'", "sentence1",
                          args=self.args("rte", p))

    def test_numpy_str_array_cell(self):
        p = self.write("r.csv", "passage,query,entities,answers\nP,@placeholder,['A' 'B'],['A']\n")
        self.expect_error(p + ":2:", "'entities' could not be parsed", "adjacent strings",
                          args=self.args("record", p))

    def test_record_answer_not_entity(self):
        p = self.write_jsonl("r.jsonl", [{"passage": "P", "query": "@placeholder",
                                          "entities": ["A"], "answers": ["B"]}])
        self.expect_error(p + ":1:", 'answer "B" is not among the entities',
                          args=self.args("record", p))

    def test_squad_no_answers(self):
        p = self.write_jsonl("s.jsonl", [{"title": "T", "context": "C", "question": "Q",
                                          "answers": {"text": [], "answer_start": []}}])
        self.expect_error(p + ":1:", "no reference answers", args=self.args("squad", p))

    def test_copa_question(self):
        p = self.write_jsonl("c.jsonl", [{"premise": "P.", "choice1": "a", "choice2": "b",
                                          "question": "why", "label": 0}])
        self.expect_error(p + ":1:", '"cause" or "effect"', args=self.args("copa", p))

    def test_json_array_record_index(self):
        p = self.write("w.json", json.dumps([{"word": "w", "sentence1": "a", "sentence2": "b",
                                              "label": 0}, {"word": "w", "label": 0}]))
        self.expect_error(p + ": record 1", "missing field 'sentence1'", args=self.args("wic", p))

    def test_no_such_file(self):
        p = os.path.join(self.tmp, "missing.jsonl")
        self.expect_error(p + ": no such file", args=self.args("sst2", p))

    def test_unknown_extension(self):
        p = self.write("data.txt", "x\n")
        self.expect_error(p, "--format", args=self.args("sst2", p))

    def test_unknown_task(self):
        p = os.path.join(SAMPLES, "rte.jsonl")
        self.expect_error("unknown task 'mnli'", args=self.args("mnli", p))

    @unittest.skipIf(HAVE_PYARROW, "pyarrow is importable")
    def test_parquet_needs_pyarrow(self):
        p = self.write("train.parquet", "PAR1")
        self.expect_error(p, "needs pyarrow", args=self.args("sst2", p))


class CliTests(unittest.TestCase):
    def test_help(self):
        r = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        for word in ("--task", "--train", "--validation", "--out", "--seed", "--num-train",
                     "--num-dev", "--num-test", "record", "squad", "--train-as lm"):
            self.assertIn(word, r.stdout)

    def test_usage_error(self):
        r = subprocess.run([sys.executable, SCRIPT, "--task", "sst2"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("required", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=1)
