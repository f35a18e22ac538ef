#!/usr/bin/env python3
"""Converts a MeZO task from HuggingFace `datasets` files into zotune's text task JSONL.

    python3 tools/prepare_task.py --task sst2 --train PATH --validation PATH --out DIR
                                  [--seed 0] [--num-train 1000 --num-dev 500 --num-test 1000]

Writes DIR/train.jsonl, DIR/dev.jsonl, DIR/test.jsonl (docs/tasks.md text records) and
DIR/task.json. Prompts are MeZO's zero-demonstration prompts (princeton-nlp/MeZO
large_models/templates.py, docs/spec.md §4.5); sampling is MeZO's
`sample_train_sets` / `sample_subset`:

  * train + dev: `np.random.permutation(len(train))[:num_train + num_dev]` under
    `np.random.seed(seed)`; dev is the last num_dev of those, train the ones before.
    If the split has fewer records, train shrinks (MeZO's behaviour: CB 250 -> 150/100).
  * test: `np.random.permutation(len(validation))[:num_test]` under the same seed.
  * num_dev defaults to 500, and to 100 for CB and Copa (MeZO's mezo.sh).

Only the standard library is required. numpy is used for the permutation when importable;
otherwise an exact re-implementation of numpy's legacy RandomState (MT19937, init_genrand
seeding, `permutation` = Fisher-Yates with `random_interval`) gives the same indices.

Input files (several per split are concatenated in the order given):
  .jsonl / .json   JSON Lines (Dataset.to_json), a JSON array of records, {"data": [...]},
                   a column-oriented object, or SQuAD v1.1's nested JSON
  .csv / .tsv      Dataset.to_csv or GLUE's TSV files (TSV is read without quoting, as
                   the GLUE loader does); nested fields must be JSON or Python literals
  .parquet         hub parquet exports (needs pyarrow)
  .arrow / dir     `datasets` cache files and save_to_disk directories (needs pyarrow)
"""
import argparse
import ast
import csv
import io
import json
import os
import sys
import tokenize

TEMPLATE_VERSION = 1
TEMPLATE_SOURCE = "princeton-nlp/MeZO large_models/templates.py"


class PrepareError(Exception):
    """A problem with the input or the arguments; the message names file and record."""


# ------------------------------------------------------------------------------------------
# numpy's legacy RandomState: MT19937 and permutation()
# ------------------------------------------------------------------------------------------

class MT19937:
    """MT19937 as numpy's legacy RandomState seeds and draws it (np.random.seed(int))."""

    N = 624
    M = 397

    def __init__(self, seed):
        seed = int(seed)
        if seed < 0 or seed > 0xFFFFFFFF:
            raise PrepareError("seed must be between 0 and 2**32 - 1 (numpy's rule), got %d" % seed)
        mt = [0] * self.N
        mt[0] = seed
        for i in range(1, self.N):
            prev = mt[i - 1]
            mt[i] = (1812433253 * (prev ^ (prev >> 30)) + i) & 0xFFFFFFFF
        self.mt = mt
        self.pos = self.N

    def _twist(self):
        mt = self.mt
        n, m = self.N, self.M
        for i in range(n):
            y = (mt[i] & 0x80000000) | (mt[(i + 1) % n] & 0x7FFFFFFF)
            v = mt[(i + m) % n] ^ (y >> 1)
            if y & 1:
                v ^= 0x9908B0DF
            mt[i] = v
        self.pos = 0

    def next32(self):
        if self.pos >= self.N:
            self._twist()
        y = self.mt[self.pos]
        self.pos += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        y ^= y >> 18
        return y

    def next64(self):
        hi = self.next32()
        return (hi << 32) | self.next32()

    def interval(self, mx):
        """numpy's random_interval: uniform in [0, mx] by masked rejection."""
        if mx == 0:
            return 0
        mask = mx
        for s in (1, 2, 4, 8, 16, 32):
            mask |= mask >> s
        if mx <= 0xFFFFFFFF:
            while True:
                v = self.next32() & mask
                if v <= mx:
                    return v
        while True:
            v = self.next64() & mask
            if v <= mx:
                return v

    def permutation(self, n):
        """RandomState.permutation(n): arange(n) shuffled from the last position down."""
        arr = list(range(n))
        for i in range(n - 1, 0, -1):
            j = self.interval(i)
            arr[i], arr[j] = arr[j], arr[i]
        return arr


def permutation(n, seed, rng="auto"):
    """`np.random.seed(seed); np.random.permutation(n).tolist()` (MeZO's temp_seed)."""
    if rng not in ("auto", "numpy", "mt19937"):
        raise PrepareError("unknown --rng %r" % rng)
    if rng in ("auto", "numpy"):
        try:
            import numpy
        except ImportError:
            if rng == "numpy":
                raise PrepareError("--rng numpy: numpy is not importable")
        else:
            if seed < 0 or seed > 0xFFFFFFFF:
                raise PrepareError("seed must be between 0 and 2**32 - 1 (numpy's rule), got %d" % seed)
            return numpy.random.RandomState(seed).permutation(n).tolist()
    return MT19937(seed).permutation(n)


def sample_splits(n_train, n_valid, seed, num_train, num_dev, num_test, rng="auto"):
    """MeZO's indices: (train, dev, test, warnings). See the module docstring."""
    warnings = []
    perm = permutation(n_train, seed, rng)
    chosen = perm[:num_train + num_dev]
    if len(chosen) < num_train + num_dev:
        if num_dev > 0:
            warnings.append("only %d training records for num_train + num_dev = %d: as in MeZO, "
                            "dev is the last %d sampled and train gets the remaining %d"
                            % (n_train, num_train + num_dev, min(num_dev, len(chosen)),
                               max(len(chosen) - num_dev, 0)))
        else:
            warnings.append("only %d training records (< num_train %d): train uses all of them"
                            % (n_train, num_train))
    if num_dev > 0:
        train, dev = chosen[:-num_dev], chosen[-num_dev:]
    else:
        train, dev = chosen, []
    if not train:
        raise PrepareError("the train split would be empty (%d training records, num_dev %d); "
                           "lower --num-dev" % (n_train, num_dev))
    test = permutation(n_valid, seed, rng)[:num_test]
    if n_valid < num_test:
        warnings.append("validation has %d records (< num_test %d): test uses all of them"
                        % (n_valid, num_test))
    return train, dev, test, warnings


# ------------------------------------------------------------------------------------------
# Reading records
# ------------------------------------------------------------------------------------------

class Loc:
    """Where a record came from, for error messages."""
    __slots__ = ("path", "line", "index")

    def __init__(self, path, line, index):
        self.path, self.line, self.index = path, line, index

    def __str__(self):
        if self.line is not None:
            return "%s:%d: record %d" % (self.path, self.line, self.index)
        return "%s: record %d" % (self.path, self.index)


FORMATS = ("jsonl", "json", "csv", "tsv", "parquet", "arrow")


def detect_format(path):
    if os.path.isdir(path):
        return "arrow"
    low = path.lower()
    for suffix in (".gz", ".bz2", ".xz", ".zst"):
        if low.endswith(suffix):
            raise PrepareError("%s: compressed input is not supported; decompress it first" % path)
    ext = os.path.splitext(low)[1].lstrip(".")
    if ext in ("jsonl", "ndjson"):
        return "jsonl"
    if ext in FORMATS:
        return ext
    raise PrepareError("%s: cannot tell the format from the extension %r; pass --format (one of %s)"
                       % (path, ext, ", ".join(FORMATS)))


def _open_text(path):
    try:
        return open(path, "r", encoding="utf-8-sig", newline="")
    except OSError as e:
        raise PrepareError("%s: cannot open: %s" % (path, e.strerror or e))


def _read_jsonl_lines(path, text, first_line=1):
    records = []
    for lineno, line in enumerate(text.split("\n"), start=first_line):
        s = line.strip()
        if not s:
            continue
        try:
            rec = json.loads(s)
        except json.JSONDecodeError as e:
            raise PrepareError("%s:%d: invalid JSON (%s at column %d)" % (path, lineno, e.msg, e.colno))
        if not isinstance(rec, dict):
            raise PrepareError("%s:%d: expected a JSON object per line, got %s"
                               % (path, lineno, type(rec).__name__))
        records.append((rec, Loc(path, lineno, len(records))))
    return records


def read_jsonl(path):
    with _open_text(path) as f:
        try:
            text = f.read()
        except UnicodeDecodeError as e:
            raise PrepareError("%s: not UTF-8 (byte offset %d)" % (path, e.start))
    return _read_jsonl_lines(path, text.replace("\r\n", "\n"))


def _squad_v1_records(path, doc):
    """SQuAD v1.1 JSON ({"data": [{"title", "paragraphs": [...]}]}) flattened in the order of
    the `squad` datasets loader: article, paragraph, question."""
    out = []
    for a, article in enumerate(doc["data"]):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise PrepareError("%s: data[%d]: expected an article with 'paragraphs'" % (path, a))
        title = article.get("title", "")
        for p, para in enumerate(article["paragraphs"]):
            if not isinstance(para, dict) or "context" not in para or not isinstance(para.get("qas"), list):
                raise PrepareError("%s: data[%d].paragraphs[%d]: expected 'context' and 'qas'" % (path, a, p))
            for q, qa in enumerate(para["qas"]):
                if not isinstance(qa, dict) or "question" not in qa or not isinstance(qa.get("answers"), list):
                    raise PrepareError("%s: data[%d].paragraphs[%d].qas[%d]: expected 'question' and 'answers'"
                                       % (path, a, p, q))
                texts = []
                for ans in qa["answers"]:
                    if not isinstance(ans, dict) or "text" not in ans:
                        raise PrepareError("%s: data[%d].paragraphs[%d].qas[%d]: answer without 'text'"
                                           % (path, a, p, q))
                    texts.append(ans["text"])
                rec = {"title": title, "context": para["context"], "question": qa["question"],
                       "id": qa.get("id"), "answers": {"text": texts}}
                out.append((rec, Loc(path, None, len(out))))
    return out


def read_json(path):
    with _open_text(path) as f:
        try:
            text = f.read()
        except UnicodeDecodeError as e:
            raise PrepareError("%s: not UTF-8 (byte offset %d)" % (path, e.start))
    text = text.replace("\r\n", "\n")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":
            # Dataset.to_json writes JSON Lines by default, whatever the extension.
            return _read_jsonl_lines(path, text)
        raise PrepareError("%s:%d: invalid JSON (%s at column %d)" % (path, e.lineno, e.msg, e.colno))
    if isinstance(doc, list):
        out = []
        for i, rec in enumerate(doc):
            if not isinstance(rec, dict):
                raise PrepareError("%s: record %d: expected a JSON object, got %s" % (path, i, type(rec).__name__))
            out.append((rec, Loc(path, None, i)))
        return out
    if not isinstance(doc, dict):
        raise PrepareError("%s: expected JSON records, got a %s" % (path, type(doc).__name__))
    data = doc.get("data")
    if isinstance(data, list):
        if data and isinstance(data[0], dict) and "paragraphs" in data[0]:
            return _squad_v1_records(path, doc)
        return read_json_records(path, data)
    # column-oriented: {"col": [v0, v1, ...]} or pandas' {"col": {"0": v0, ...}}
    values = list(doc.values())
    if values and all(isinstance(v, list) for v in values):
        n = len(values[0])
        if any(len(v) != n for v in values):
            raise PrepareError("%s: column-oriented JSON with columns of different lengths" % path)
        cols = list(doc.keys())
        return [({c: doc[c][i] for c in cols}, Loc(path, None, i)) for i in range(n)]
    if values and all(isinstance(v, dict) for v in values) and all(
            all(k.isdigit() for k in v) for v in values):
        cols = list(doc.keys())
        keys = sorted(values[0].keys(), key=int)
        return [({c: doc[c].get(k) for c in cols}, Loc(path, None, i)) for i, k in enumerate(keys)]
    # a single record (a one-line JSON Lines file)
    return [(doc, Loc(path, 1, 0))]


def read_json_records(path, data):
    out = []
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise PrepareError("%s: data[%d]: expected a JSON object, got %s" % (path, i, type(rec).__name__))
        out.append((rec, Loc(path, None, i)))
    return out


def read_csv(path, fmt):
    out = []
    with _open_text(path) as f:
        if fmt == "tsv":
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        else:
            reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None:
                return out
            header = [h.strip() for h in header]
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                line = reader.line_num
                if len(row) != len(header):
                    raise PrepareError("%s:%d: %d fields, but the header has %d (%s)"
                                       % (path, line, len(row), len(header), ", ".join(header)))
                rec = dict(zip(header, row))
                rec.pop("", None)  # pandas' unnamed index column
                out.append((rec, Loc(path, line, len(out))))
        except csv.Error as e:
            raise PrepareError("%s:%d: CSV error: %s" % (path, reader.line_num, e))
        except UnicodeDecodeError:
            raise PrepareError("%s: not UTF-8 (near line %d)" % (path, reader.line_num + 1))
    return out


def _pyarrow(path, what):
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise PrepareError("%s: reading %s needs pyarrow, which is not importable here; install it "
                           "(pip install pyarrow) or export the split with Dataset.to_json()"
                           % (path, what))
    import pyarrow
    return pyarrow


def _table_records(path, table):
    rows = table.to_pylist()
    return [(rec, Loc(path, None, i)) for i, rec in enumerate(rows)]


def read_parquet(path):
    _pyarrow(path, "Parquet")
    import pyarrow.parquet as pq
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types
        raise PrepareError("%s: cannot read Parquet: %s" % (path, e))
    return _table_records(path, table)


def read_arrow(path):
    pa = _pyarrow(path, "Arrow files")
    import pyarrow.ipc
    if os.path.isdir(path):
        state = os.path.join(path, "state.json")
        try:
            with open(state, encoding="utf-8") as f:
                files = [d["filename"] for d in json.load(f)["_data_files"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise PrepareError("%s: not a Dataset.save_to_disk directory (state.json: %s)" % (path, e))
        out = []
        for name in files:
            for rec, loc in read_arrow(os.path.join(path, name)):
                loc.index = len(out)
                out.append((rec, loc))
        return out
    try:
        with pa.memory_map(path, "r") as src:
            try:
                table = pyarrow.ipc.open_stream(src).read_all()
            except pa.ArrowInvalid:
                src.seek(0)
                table = pyarrow.ipc.open_file(src).read_all()
    except Exception as e:
        raise PrepareError("%s: cannot read Arrow: %s" % (path, e))
    return _table_records(path, table)


def read_records(path, fmt="auto"):
    if not os.path.exists(path):
        raise PrepareError("%s: no such file" % path)
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "json":
        return read_json(path)
    if fmt in ("csv", "tsv"):
        return read_csv(path, fmt)
    if fmt == "parquet":
        return read_parquet(path)
    if fmt == "arrow":
        return read_arrow(path)
    raise PrepareError("unknown format %r" % fmt)


# ------------------------------------------------------------------------------------------
# Field access
# ------------------------------------------------------------------------------------------

def _literal(text):
    """A nested value written as text (CSV cells): JSON, or a Python literal as pandas writes
    it, where numpy arrays appear as array([...], dtype=...)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        toks = [t for t in tokenize.generate_tokens(io.StringIO(text).readline)
                if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT,
                                  tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        raise ValueError("not JSON or a Python literal")
    for a, b in zip(toks, toks[1:]):
        if a.type == tokenize.STRING and b.type == tokenize.STRING:
            raise ValueError("adjacent strings without a comma (numpy's str() of an array, which "
                             "cannot be read back unambiguously; export with to_json instead)")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ValueError("not JSON or a Python literal")

    def ev(node):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.Dict):
            return {ev(k): ev(v) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "array" and len(node.args) == 1):
            return ev(node.args[0])
        raise ValueError("unsupported expression in a nested field")
    return ev(tree.body)


def _missing(rec, loc, name):
    have = ", ".join(sorted(str(k) for k in rec)) or "none"
    return PrepareError("%s: missing field '%s' (fields present: %s)" % (loc, name, have))


def get_text(rec, loc, name):
    if name not in rec:
        raise _missing(rec, loc, name)
    v = rec[name]
    if not isinstance(v, str):
        raise PrepareError("%s: field '%s' must be a string, got %s" % (loc, name, _show(v)))
    return v


def get_nested(rec, loc, name, sub):
    """rec[name][sub] as a list of strings; also `name.sub` (Dataset.flatten) and text cells."""
    what = "%s.%s" % (name, sub)
    if name in rec:
        v = rec[name]
        if isinstance(v, str):
            try:
                v = _literal(v)
            except ValueError as e:
                raise PrepareError("%s: field '%s' could not be parsed: %s" % (loc, name, e))
        if not isinstance(v, dict) or sub not in v:
            raise PrepareError("%s: field '%s' must be an object with '%s', got %s"
                               % (loc, name, sub, _show(v)))
        v = v[sub]
    elif what in rec:
        v = rec[what]
    else:
        raise _missing(rec, loc, name)
    return _string_list(v, loc, what)


def get_list(rec, loc, name):
    if name not in rec:
        raise _missing(rec, loc, name)
    return _string_list(rec[name], loc, name)


def _string_list(v, loc, what):
    if isinstance(v, str):
        try:
            v = _literal(v)
        except ValueError as e:
            raise PrepareError("%s: field '%s' could not be parsed: %s" % (loc, what, e))
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise PrepareError("%s: field '%s' must be a list of strings, got %s" % (loc, what, _show(v)))
    return v


def _show(v):
    s = json.dumps(v, ensure_ascii=False) if not isinstance(v, bytes) else repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


_TRUE = ("true", "yes")
_FALSE = ("false", "no")


def get_label(rec, loc, name, names):
    """A class index in [0, len(names)): int, integral float, numeric string, the class name
    (HF ClassLabel names, as the original SuperGLUE files write them), or a bool for tasks
    whose classes are False/True."""
    if name not in rec:
        raise _missing(rec, loc, name)
    v = rec[name]
    k = None
    if isinstance(v, bool):
        if names == ["False", "True"]:
            k = int(v)
    elif isinstance(v, int):
        k = v
    elif isinstance(v, float) and v.is_integer():
        k = int(v)
    elif isinstance(v, str):
        s = v.strip()
        if s.lstrip("-").isdigit():
            k = int(s)
        elif s in names:
            k = names.index(s)
        elif names == ["False", "True"] and s.lower() in _TRUE + _FALSE:
            k = int(s.lower() in _TRUE)
    if k is None or not 0 <= k < len(names):
        hint = " (an unlabelled test split? use the labelled validation split)" if k == -1 else ""
        raise PrepareError("%s: field '%s' = %s is not a class in 0..%d (%s)%s"
                           % (loc, name, _show(v), len(names) - 1, ", ".join(names), hint))
    return k


def get_bool(rec, loc, name):
    v = rec[name]
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in _TRUE + _FALSE + ("0", "1"):
        return v.strip().lower() in _TRUE + ("1",)
    raise PrepareError("%s: field '%s' must be a boolean, got %s" % (loc, name, _show(v)))


# ------------------------------------------------------------------------------------------
# Templates (MeZO large_models/templates.py, zero demonstrations)
# ------------------------------------------------------------------------------------------

def cls_record(loc, enc, suffixes, label):
    """A classification record from MeZO's encode(x) and verbalize(x, c) = encode(x) + suffix_c.

    MeZO tokenizes encode(x).strip(' ') and, for the scored sequence, verbalize(x, c)
    .strip(' ') with leading whitespace removed (its zero-demonstration "\\n\\n" join and
    .lstrip()). zotune tokenizes prompt.strip(' ') and (prompt + candidate).strip(' '), so the
    prompt is encode(x) without leading whitespace and trailing spaces, and those trailing
    spaces move to the front of each candidate (" great", " he ...")."""
    prompt = enc.lstrip()
    cut = prompt.rstrip(" ")
    tail = prompt[len(cut):]
    if not cut:
        raise PrepareError("%s: the prompt is empty" % loc)
    return {"prompt": cut, "candidates": [tail + s for s in suffixes], "label": label}


def gen_record(loc, enc, answers):
    if not answers:
        raise PrepareError("%s: no reference answers (MeZO requires at least one)" % loc)
    return {"prompt": enc.lstrip(), "answers": list(answers), "completion": " %s\n" % answers[0]}


def t_sst2(rec, loc):
    text = get_text(rec, loc, "sentence").strip()
    label = get_label(rec, loc, "label", ["negative", "positive"])
    return cls_record(loc, "%s It was" % text, [" terrible", " great"], label)


def t_rte(rec, loc):
    p, h = get_text(rec, loc, "premise"), get_text(rec, loc, "hypothesis")
    label = get_label(rec, loc, "label", ["entailment", "not_entailment"])
    enc = "%s\nDoes this mean that \"%s\" is true? Yes or No?\n" % (p, h)
    return cls_record(loc, enc, ["Yes", "No"], label)


def t_cb(rec, loc):
    p, h = get_text(rec, loc, "premise"), get_text(rec, loc, "hypothesis")
    label = get_label(rec, loc, "label", ["entailment", "contradiction", "neutral"])
    enc = "Suppose %s Can we infer that \"%s\"? Yes, No, or Maybe?\n" % (p, h)
    return cls_record(loc, enc, ["Yes", "No", "Maybe"], label)


def t_boolq(rec, loc):
    passage, q = get_text(rec, loc, "passage"), get_text(rec, loc, "question")
    if "answer" in rec:
        answer = get_bool(rec, loc, "answer")
    elif "label" in rec:  # super_glue/boolq spells it label (1 = True)
        answer = bool(get_label(rec, loc, "label", ["False", "True"]))
    else:
        raise _missing(rec, loc, "answer")
    if not q:
        raise PrepareError("%s: field 'question' is empty" % loc)
    if not q.endswith("?"):
        q = q + "?"
    q = q[0].upper() + q[1:]
    # BoolQTemplateV3 (MeZO's default, template_version=2); candidates ["Yes", "No"]
    return cls_record(loc, "%s %s\n" % (passage, q), ["Yes", "No"], 0 if answer else 1)


def t_wsc(rec, loc):
    text = get_text(rec, loc, "text")
    s1, s2 = get_text(rec, loc, "span1_text"), get_text(rec, loc, "span2_text")
    label = get_label(rec, loc, "label", ["False", "True"])
    enc = "%s\nIn the previous sentence, does the pronoun \"%s\" refer to %s? Yes or No?\n" % (
        text, s2.lower(), s1)
    return cls_record(loc, enc, ["No", "Yes"], label)


def t_wic(rec, loc):
    word = get_text(rec, loc, "word")
    s1, s2 = get_text(rec, loc, "sentence1"), get_text(rec, loc, "sentence2")
    label = get_label(rec, loc, "label", ["False", "True"])
    enc = ("Does the word \"%s\" have the same meaning in these two sentences? Yes, No?\n%s\n%s\n"
           % (word, s1, s2))
    return cls_record(loc, enc, ["No", "Yes"], label)


def t_multirc(rec, loc):
    par, q, a = (get_text(rec, loc, "paragraph"), get_text(rec, loc, "question"),
                 get_text(rec, loc, "answer"))
    label = get_label(rec, loc, "label", ["False", "True"])
    enc = "%s\nQuestion: %s\nI found this answer \"%s\". Is that correct? Yes or No?\n" % (par, q, a)
    return cls_record(loc, enc, ["No", "Yes"], label)


def _copa_capitalize(c):
    words = c.split(" ")
    if words[0] != "I":
        words[0] = words[0].lower()
    return " ".join(words)


def t_copa(rec, loc):
    premise = get_text(rec, loc, "premise").rstrip()
    c1, c2 = get_text(rec, loc, "choice1"), get_text(rec, loc, "choice2")
    question = get_text(rec, loc, "question")
    label = get_label(rec, loc, "label", ["choice1", "choice2"])
    if question == "effect":
        conj = " so "
    elif question == "cause":
        conj = " because "
    else:
        raise PrepareError("%s: field 'question' must be \"cause\" or \"effect\", got %s"
                           % (loc, _show(question)))
    if premise.endswith("."):
        premise = premise[:-1]
    choices = [c1, c2]
    # MeZO: correct_candidate = choice{label+1}; label = candidates.index(correct_candidate)
    gold = choices.index(choices[label])
    return cls_record(loc, premise + conj, [_copa_capitalize(c) for c in choices], gold)


def t_record(rec, loc):
    passage = get_text(rec, loc, "passage").replace("@highlight\n", "- ")
    query = get_text(rec, loc, "query")
    entities = get_list(rec, loc, "entities")
    answers = get_list(rec, loc, "answers")
    if not entities:
        raise PrepareError("%s: field 'entities' is empty" % loc)
    if not answers:
        raise PrepareError("%s: field 'answers' is empty (an unlabelled test split?)" % loc)
    gold = []
    for a in answers:
        if a not in entities:
            raise PrepareError("%s: answer %s is not among the entities" % (loc, _show(a)))
        k = entities.index(a)
        if k not in gold:
            gold.append(k)
    # ReCoRDTemplateGPT3: verbalize = passage + "\n- " + query with @placeholder := entity
    suffixes = [" " + query.replace("@placeholder", e) for e in entities]
    return cls_record(loc, "%s\n-" % passage, suffixes, gold)


def t_squad(rec, loc):
    title, context = get_text(rec, loc, "title"), get_text(rec, loc, "context")
    q = get_text(rec, loc, "question").strip()
    answers = get_nested(rec, loc, "answers", "text")
    return gen_record(loc, "Title: %s\nContext: %s\nQuestion: %s\nAnswer:" % (title, context, q), answers)


def t_drop(rec, loc):
    passage = get_text(rec, loc, "passage")
    q = get_text(rec, loc, "question").strip()
    answers = get_nested(rec, loc, "answers_spans", "spans")
    return gen_record(loc, "Passage: %s\nQuestion: %s\nAnswer:" % (passage, q), answers)


# name: (converter, kind, hf dataset, MeZO template class, train-as, metric, MeZO task name)
TASKS = {
    "sst2": (t_sst2, "classification", "glue/sst2", "SST2Template", "classification", "accuracy", "SST2"),
    "rte": (t_rte, "classification", "super_glue/rte", "RTETemplate", "classification", "accuracy", "RTE"),
    "cb": (t_cb, "classification", "super_glue/cb", "CBTemplate", "classification", "accuracy", "CB"),
    "boolq": (t_boolq, "classification", "boolq", "BoolQTemplateV3", "classification", "accuracy", "BoolQ"),
    "wsc": (t_wsc, "classification", "super_glue/wsc.fixed", "WSCTemplate", "classification", "accuracy", "WSC"),
    "wic": (t_wic, "classification", "super_glue/wic", "WICTemplate", "classification", "accuracy", "WIC"),
    "multirc": (t_multirc, "classification", "super_glue/multirc", "MultiRCTemplate", "classification",
                "accuracy", "MultiRC"),
    "copa": (t_copa, "classification", "super_glue/copa", "CopaTemplate", "lm", "accuracy", "Copa"),
    "record": (t_record, "classification", "super_glue/record", "ReCoRDTemplateGPT3", "lm", "accuracy", "ReCoRD"),
    "squad": (t_squad, "generation", "squad", "SQuADv2Template", "lm", "f1", "SQuAD"),
    "drop": (t_drop, "generation", "drop", "DROPTemplate", "lm", "f1", "DROP"),
}
DEV_DEFAULT = {"cb": 100, "copa": 100}


def convert(task, records, wanted):
    """Applies the template to every record (so malformed ones anywhere are reported) and
    returns {index: output record} for the indices in `wanted`."""
    fn = TASKS[task][0]
    out = {}
    for i, (rec, loc) in enumerate(records):
        r = fn(rec, loc)
        if i in wanted:
            out[i] = r
    return out


def write_jsonl(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def normalize_task(name):
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key not in TASKS:
        raise PrepareError("unknown task %r (one of %s)" % (name, ", ".join(TASKS)))
    return key


def prepare(task, train_paths, valid_paths, out_dir, seed=0, num_train=1000, num_dev=None,
            num_test=1000, fmt="auto", rng="auto", log=None):
    task = normalize_task(task)
    if num_dev is None:
        num_dev = DEV_DEFAULT.get(task, 500)
    for what, v in (("--num-train", num_train), ("--num-dev", num_dev), ("--num-test", num_test)):
        if v < 0:
            raise PrepareError("%s must be >= 0" % what)
    if num_train + num_dev <= 0:
        raise PrepareError("--num-train + --num-dev must be positive")
    train_recs = [r for p in train_paths for r in read_records(p, fmt)]
    valid_recs = [r for p in valid_paths for r in read_records(p, fmt)]
    if not train_recs:
        raise PrepareError("no records in the train file(s): %s" % ", ".join(train_paths))
    if not valid_recs and num_test > 0:
        raise PrepareError("no records in the validation file(s): %s" % ", ".join(valid_paths))
    tr, dv, te, warnings = sample_splits(len(train_recs), len(valid_recs), seed, num_train, num_dev,
                                         num_test, rng)
    for w in warnings:
        if log:
            log("warning: " + w)
    train_out = convert(task, train_recs, set(tr) | set(dv))
    test_out = convert(task, valid_recs, set(te))
    _, kind, hf, template, train_as, metric, mezo_name = TASKS[task]
    os.makedirs(out_dir, exist_ok=True)
    files = {}
    for split, idx, src in (("train", tr, train_out), ("dev", dv, train_out), ("test", te, test_out)):
        path = os.path.join(out_dir, split + ".jsonl")
        if idx:
            write_jsonl(path, [src[i] for i in idx])
            files[split] = split + ".jsonl"
        elif os.path.exists(path):
            os.remove(path)  # a stale split from an earlier run
    info = {
        "task": task,
        "mezo_task": mezo_name,
        "hf_dataset": hf,
        "kind": kind,
        "metric": metric,
        "train_as": train_as,
        "template": template,
        "template_source": TEMPLATE_SOURCE,
        "template_version": TEMPLATE_VERSION,
        "seed": seed,
        "num_train": len(tr),
        "num_dev": len(dv),
        "num_test": len(te),
        "source_train_records": len(train_recs),
        "source_validation_records": len(valid_recs),
        "files": files,
    }
    with open(os.path.join(out_dir, "task.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return info


def build_parser():
    lines = ["tasks (MeZO name, HF dataset, fields read):"]
    fields = {
        "sst2": "sentence, label", "rte": "premise, hypothesis, label",
        "cb": "premise, hypothesis, label", "boolq": "passage, question, answer",
        "wsc": "text, span1_text, span2_text, label", "wic": "word, sentence1, sentence2, label",
        "multirc": "paragraph, question, answer, label",
        "copa": "premise, choice1, choice2, question, label",
        "record": "passage, query, entities, answers", "squad": "title, context, question, answers.text",
        "drop": "passage, question, answers_spans.spans",
    }
    for k, v in TASKS.items():
        lines.append("  %-8s %-8s %-22s %s%s" % (k, v[6], v[2], fields[k],
                                                 "  [--train-as lm]" if v[4] == "lm" else ""))
    lines.append("")
    lines.append("Outputs DIR/train.jsonl, dev.jsonl, test.jsonl (docs/tasks.md) and task.json.")
    lines.append("Classification records: {prompt, candidates, label}; ReCoRD's label is a list of")
    lines.append("the correct entities (the first one is MeZO's training target). Generation")
    lines.append("(SQuAD, DROP): {prompt, answers, completion}. Copa, ReCoRD, SQuAD and DROP train")
    lines.append("with --train-as lm in MeZO (task.json: train_as).")
    try:
        import pyarrow  # noqa: F401
        have_pa = "pyarrow is importable here"
    except ImportError:
        have_pa = "pyarrow is NOT importable here: .parquet/.arrow input is unavailable"
    lines.append("")
    lines.append("Parquet and Arrow input needs pyarrow; %s." % have_pa)
    lines.append("CSV cells holding lists must be JSON or Python literals; Dataset.to_csv's")
    lines.append("numpy str() of a list column (ReCoRD entities) is ambiguous and rejected:")
    lines.append("use Dataset.to_json for ReCoRD.")
    p = argparse.ArgumentParser(
        prog="prepare_task.py",
        description="Convert a MeZO task from HuggingFace `datasets` files (JSON Lines, JSON, CSV/TSV, "
                    "Parquet, Arrow) into zotune task JSONL with MeZO's templates and sampling.",
        epilog="\n".join(lines), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, help="task name (see below; case-insensitive)")
    p.add_argument("--train", required=True, nargs="+", metavar="PATH",
                   help="the HF train split (several files are concatenated in order)")
    p.add_argument("--validation", required=True, nargs="+", metavar="PATH",
                   help="the HF validation split; the test set is sampled from it")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    p.add_argument("--seed", type=int, default=0, help="MeZO's train_set_seed (default 0)")
    p.add_argument("--num-train", type=int, default=1000, help="default 1000")
    p.add_argument("--num-dev", type=int, default=None, help="default 500; 100 for cb and copa")
    p.add_argument("--num-test", type=int, default=1000, help="default 1000")
    p.add_argument("--format", default="auto", choices=("auto",) + FORMATS,
                   help="input format (default: from the extension)")
    p.add_argument("--rng", default="auto", choices=("auto", "numpy", "mt19937"),
                   help="permutation source: numpy if importable (auto), or the built-in "
                        "re-implementation of numpy's legacy RandomState (identical indices)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)

    def log(msg):
        print("prepare_task: " + msg, file=sys.stderr)
    try:
        info = prepare(args.task, args.train, args.validation, args.out, seed=args.seed,
                       num_train=args.num_train, num_dev=args.num_dev, num_test=args.num_test,
                       fmt=args.format, rng=args.rng, log=log)
    except PrepareError as e:
        log("error: %s" % e)
        return 1
    print("prepare_task: %s: train %d, dev %d (from %d), test %d (from %d) -> %s"
          % (info["task"], info["num_train"], info["num_dev"], info["source_train_records"],
             info["num_test"], info["source_validation_records"], args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
