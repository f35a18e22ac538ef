#!/usr/bin/env python3
"""Builds tests/fixtures/tokenizer/: a small OPT-style byte-level BPE tokenizer and golden cases.

Everything is generated here, deterministically, with no downloads:
  1. a training corpus (prose from word lists, code, numbers, whitespace runs, contractions,
     punctuation, many scripts, emoji, combining marks, Unicode digits, rare whitespace,
     control characters);
  2. a ByteLevel BPE trained with HuggingFace `tokenizers` (no prefix space, GPT-2 regex,
     ~2000 tokens, "<s>" "<pad>" "</s>" "<unk>" at ids 0..3 as in OPT), saved as vocab.json +
     merges.txt (the slow-tokenizer files) and tokenizer.json (the fast format);
  3. cases.jsonl, one JSON object per line, four kinds:
       {"text": s, "ids": [...], "ids_bos": [...]}          valid text; ids without special
           tokens, ids_bos with OPT's BOS "</s>" = 2 prepended by the post-processor
       {"bytes_hex": h, "ids": [...], "decoded_hex": d}     raw bytes (mostly invalid UTF-8, a
           few valid ones holding NUL); ids = HF ids of bytes.decode("utf-8", "replace"),
           d = hex of the UTF-8 bytes HF decodes those ids back to
       {"decode_ids": [...], "skip_special": b, "decoded_hex": d}   HF decode of arbitrary id
           sequences (split multi-byte characters, special and out-of-range ids)
       {"variant": v, "text": s, "ids": [...]}   ids from tokenizer.json with one option
           changed (VARIANTS below), for the code paths OPT itself does not use
  The reference is `tokenizers`. The script cross-checks every text case against transformers'
  GPT2Tokenizer built from vocab.json + merges.txt and against an independent pure-Python GPT-2
  encoder (Python `regex` module, the original GPT-2 merge loop) and prints any disagreement.

Usage: python3 tools/make_tokenizer_fixture.py [out_dir]   (default tests/fixtures/tokenizer)
"""
import json
import os
import random
import sys

import regex
import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]
OPT_BOS_ID = 2
VOCAB_SIZE = 2000
N_TRAIN_LINES = 24000
N_TEXT_CASES = 10000
N_BYTE_CASES = 200
N_DECODE_CASES = 200
MAX_CASE_CHARS = 200
N_VARIANT_CASES = 120

# Whole words no merge sequence reaches, added to the vocabulary for the ignore_merges variant
# (only there do they change anything).
IGNORE_MERGES_WORDS = {"Ġquixotic": VOCAB_SIZE, "quixotic": VOCAB_SIZE + 1}

# tokenizer.json options OPT leaves at their defaults; the C test makes the same edits.
VARIANTS = {
    "add_prefix_space": lambda spec: spec["pre_tokenizer"].update(add_prefix_space=True),
    "no_regex": lambda spec: spec["pre_tokenizer"].update(use_regex=False),
    "ignore_merges": lambda spec: (spec["model"].update(ignore_merges=True),
                                   spec["model"]["vocab"].update(IGNORE_MERGES_WORDS)),
}

# ----------------------------------------------------------------------------------------------
# Material. HELD_OUT words never reach the training corpus, so case strings built with them make
# the BPE split words it never saw whole.

ENGLISH = """
the of and to in is was that for on are with as his they at be this from have or by one had not
but what all were when we there can an your which their said if do will each about how up out
them then she many some so these would other into has more her two like him see time could no
make than first been its who now people my made over did down only way find use may water long
little very after words called just where most know get through back much before go good new
write our used me man too any day same right look think also around another came come work three
word must because does part even place well such here take why things help put years different
away again off went old number great tell men say small every found still between name should
home big give air line set own under read last never us left end along while might next sound
below saw something thought both few those always looked show large often together asked house
world going want school important until form food keep children feet land side without boy once
animals life enough took sometimes four head above kind began almost live page got earth need
far hand high year mother light parts country father let night following picture being study
second eyes soon times story boys since white days ever paper hard near sentence better best
across during today others however sure means knew try told young miles sun ways thing whole
hear example heard several change answer room sea against top turned learn point city play toward
five using himself usually money seen car morning given trees known among river problem questions
market model training gradient forward pass memory tensor kernel batch learning rate optimizer
""".split()

# Never in the training corpus: case strings built from these force BPE onto unseen words.
HELD_OUT = """
quixotic zephyr juxtapose mnemonic sphinx rhythm syzygy flummox kerfuffle bamboozle gobbledygook
onomatopoeia pneumonia xylophone yacht zucchini quasar vortex whirlpool jackknife bookkeeper
strengths twelfths antidisestablishmentarianism floccinaucinihilipilification hippopotamus
subdermatoglyphic uncopyrightable dermatoglyphics misunderstanding counterintuitively
""".split()

SCRIPT_WORDS = {
    "latin": "café naïve résumé façade über straße Ærø señor niño ça déjà vu İstanbul "
             "Łódź Ñandú œuvre fjörður São Paulo Việt Nam tiếng Việt Dvořák",
    "greek": "γεια σου κόσμε Αθήνα φιλοσοφία λόγος ψυχή ΩΜΕΓΑ ἀρχή",
    "cyrillic": "привет мир Москва доброе утро ЁЛКА щука Україна Љубав",
    "arabic": "مرحبا بالعالم السلام عليكم كتاب اللغة العربية",
    "hebrew": "שלום עולם תודה רבה ירושלים",
    "devanagari": "नमस्ते दुनिया हिन्दी भाषा संस्कृतम्",
    "cjk": "你好世界 中文字符 日本語の文章 漢字 東京タワー ひらがな カタカナ",
    "hangul": "안녕하세요 세계 한국어 서울특별시",
    "thai": "สวัสดีครับ ภาษาไทย กรุงเทพมหานคร",
    "other": "Ⴀბგ ქართული Հայերեն ᐃᓄᒃᑎᑐᑦ ꦗꦮ ᠮᠣᠩᠭᠣᠯ ትግርኛ ಕನ್ನಡ தமிழ் ગુજરાતી",
}

EMOJI = ["😀", "😂", "👍", "👍🏽", "❤️", "🔥", "🚀", "🎉", "🙏🏿", "👨‍👩‍👧‍👦", "🏳️‍🌈",
         "👩‍💻", "🧑🏻‍🚀", "🇺🇸", "🇯🇵", "🇩🇪", "🇧🇷", "1️⃣", "#️⃣", "©️", "™", "☃", "🐍"]

COMBINING = ["e\u0301", "a\u0308", "n\u0303", "o\u0302\u0323", "u\u0308\u0301", "Z\u0335\u0337",
             "i\u0307", "\u0301", "\u20dd", "a\u036f\u0365", "क\u093f", "ก\u0e34\u0e48"]

UNICODE_DIGITS = ["٠١٢٣٤٥٦٧٨٩", "۱۲۳", "०१२३४", "১২৩", "１２３４５", "²³¹", "½¼¾", "Ⅻ", "ⅷ",
                  "①②③", "𝟘𝟙𝟚", "〇", "೧೨", "๑๒๓", "߁߂", "𐄇𐄈"]

RARE_SPACES = ["\u00a0", "\u2003", "\u3000", "\u0085", "\u1680", "\u2028", "\u2029", "\u202f",
               "\u205f", "\u2000", "\u200a", "\u180e", "\u200b", "\ufeff", "\u001c", "\u001f",
               "\u000b", "\u000c", "\r"]

CONTROLS = [chr(c) for c in list(range(1, 32)) + [127] + list(range(0x80, 0xa0))]

# Characters whose classes changed between Unicode versions, so the C tables are pinned to what
# tokenizers uses: Unicode 15/16 letters and digits, and a Unicode 17 letter (unassigned there).
VERSION_SENSITIVE = ["\u1c89\u1c8a", "\ua7cb\ua7cc", "\U000105c0\U000105c1", "\U00010d40\U00010d45",
                     "\U000116d0\U000116d3", "\U00031350\U00031351", "\U0002ebf0", "\u088f",
                     "\U00011de0", "\u0c5c"]

CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M",
                "'LL", "'D", "'Re", "'Ll", "'x", "''", "'"]
CONTRACTED = ["it's", "don't", "we're", "I've", "I'm", "you'll", "he'd", "IT'S", "DON'T",
              "WE'RE", "I'VE", "I'M", "YOU'LL", "HE'D", "rock'n'roll", "o'clock", "'tis",
              "y'all'd've", "can't've", "ma'am", "'sup", "it’s", "don’t"]

PUNCTUATION = ["!", "?", ".", ",", ";", ":", "...", "!!!", "?!", "--", "---", "—", "–", "(", ")",
               "[", "]", "{", "}", "<", ">", "\"", "'", "`", "~", "@", "#", "$", "%", "^", "&",
               "*", "_", "+", "=", "|", "\\", "/", "«", "»", "“", "”", "‘", "’", "…", "¿", "¡",
               "§", "¶", "•", "·", "°", "€", "£", "¥", "→", "≠", "√", "∞", "™", "、", "。", "！"]

SPECIAL_NEAR_MISSES = ["</s>", "<pad>", "<s>", "<unk>", "</s", "<pad", "< s>", "<</s>>",
                       "</s></s>", "<s>a</s>", "<PAD>", "</S>", " </s> ", "<pad><pad>",
                       "x</s>y", "<unk>!", "</s>\n", "<<s>>"]

CODE_SNIPPETS = [
    "def {f}({a}, {b}):\n    return {a} + {b} * {n}\n",
    "for (int {a} = 0; {a} < {n}; {a}++) {{\n\t{b}[{a}] = {f}({a});\n}}",
    "if ({a} != NULL && {b}->{f} >= {n}) return -1;",
    "    {a} = [x ** 2 for x in range({n}) if x % 3 == 0]",
    "#include <stdio.h>\nint main(void) {{ printf(\"%d\\n\", {n}); }}",
    "const {f} = ({a}) => {{ console.log(`${{{a}}}`); }};",
    "SELECT {a}, COUNT(*) FROM {b} WHERE {f} > {n} GROUP BY {a};",
    "{a}_{b} := map[string]int{{\"{f}\": {n}}}",
    "<div class=\"{a}\">{b}</div>",
    "{{\"{a}\": {n}, \"{b}\": [true, null, \"{f}\"]}}",
    "x{n} = np.zeros(({n}, {n}), dtype=np.float32)  # {a} {b}",
    "\t\t{a}->{b} = {f}(&{a}, sizeof(*{a}));\r\n",
]

IDENTIFIERS = ["i", "j", "n", "buf", "ctx", "tensor", "value", "node", "self", "args", "x", "y",
               "count", "total", "grad", "weights", "bias", "logits", "kv_cache", "HIDDEN"]


def pick(rng, items):
    return items[rng.randrange(len(items))]


def script_words():
    words = []
    for text in SCRIPT_WORDS.values():
        words.extend(text.split())
    return words


ALL_SCRIPT_WORDS = script_words()


def english_word(rng, vocabulary):
    word = pick(rng, vocabulary)
    roll = rng.random()
    if roll < 0.1:
        return word.capitalize()
    if roll < 0.13:
        return word.upper()
    return word


def sentence(rng, vocabulary, n_words):
    words = [english_word(rng, vocabulary) for _ in range(n_words)]
    if words:
        words[0] = words[0].capitalize()
    out = []
    for word in words:
        out.append(word)
        roll = rng.random()
        if roll < 0.08:
            out.append(pick(rng, [",", ";", ":", " -"]))
        elif roll < 0.12:
            out.append(pick(rng, CONTRACTIONS))
        out.append(" ")
    return "".join(out).rstrip() + pick(rng, [".", ".", ".", "!", "?", "...", ""])


def number(rng):
    kind = rng.randrange(7)
    if kind == 0:
        return str(rng.randrange(10 ** rng.randrange(1, 12)))
    if kind == 1:
        return f"{rng.uniform(-1000, 1000):.{rng.randrange(0, 6)}f}"
    if kind == 2:
        return f"{rng.randrange(1, 10**9):,}"
    if kind == 3:
        return f"{rng.randrange(1900, 2100)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
    if kind == 4:
        return (f"+1 ({rng.randrange(100, 999)}) "
                f"{rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}")
    if kind == 5:
        return "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 40)))
    return f"{rng.random():.3e}"


def whitespace_run(rng):
    pieces = [" ", "  ", "\t", "\n", "\r\n", "\n\n", "    ", " \t", "\t ", "\n "]
    return "".join(pick(rng, pieces) for _ in range(rng.randrange(1, 5)))


def code_snippet(rng):
    template = pick(rng, CODE_SNIPPETS)
    return template.format(f=pick(rng, IDENTIFIERS) + "_fn", a=pick(rng, IDENTIFIERS),
                           b=pick(rng, IDENTIFIERS), n=rng.randrange(0, 5000))


def random_code_point_string(rng, n_chars):
    chars = []
    while len(chars) < n_chars:
        plane = rng.random()
        if plane < 0.6:
            code_point = rng.randrange(0x80, 0x10000)
        elif plane < 0.9:
            code_point = rng.randrange(0x10000, 0x40000)
        else:
            code_point = rng.randrange(0xE0000, 0x110000)
        if 0xD800 <= code_point <= 0xDFFF or code_point == 0:
            continue
        chars.append(chr(code_point))
        if rng.random() < 0.2:
            chars.append(pick(rng, [" ", "a", "1", "!", "  "]))
    return "".join(chars)


def fragment(rng, vocabulary):
    """One piece of text from a randomly chosen category."""
    category = rng.randrange(16)
    if category <= 3:
        return sentence(rng, vocabulary, rng.randrange(1, 14))
    if category == 4:
        return code_snippet(rng)
    if category == 5:
        return number(rng)
    if category == 6:
        return whitespace_run(rng)
    if category == 7:
        return pick(rng, CONTRACTED) + pick(rng, ["", " ", "!", " it", "s"])
    if category == 8:
        return "".join(pick(rng, PUNCTUATION) for _ in range(rng.randrange(1, 6)))
    if category == 9:
        return " ".join(pick(rng, ALL_SCRIPT_WORDS) for _ in range(rng.randrange(1, 5)))
    if category == 10:
        return "".join(pick(rng, EMOJI) for _ in range(rng.randrange(1, 4)))
    if category == 11:
        return pick(rng, COMBINING) + pick(rng, ["", " ", "x"])
    if category == 12:
        return pick(rng, UNICODE_DIGITS)
    if category == 13:
        return pick(rng, RARE_SPACES) * rng.randrange(1, 3)
    if category == 14:
        return pick(rng, CONTROLS)
    return pick(rng, SPECIAL_NEAR_MISSES)


def joined_fragments(rng, vocabulary, n_fragments):
    out = []
    for _ in range(n_fragments):
        out.append(fragment(rng, vocabulary))
        out.append(pick(rng, ["", " ", " ", " ", "\n", "  ", "\t"]))
    return "".join(out)


def training_corpus():
    rng = random.Random(20240611)
    lines = []
    for index in range(N_TRAIN_LINES):
        if index % 3 == 0:
            lines.append(sentence(rng, ENGLISH, rng.randrange(4, 25)))
        else:
            lines.append(joined_fragments(rng, ENGLISH, rng.randrange(1, 6)))
    return lines


def case_length(rng):
    """Mostly short strings, which keep the fixture small and still put every category next to
    every other at a piece boundary; a tail reaches MAX_CASE_CHARS."""
    roll = rng.random()
    if roll < 0.7:
        return rng.randrange(0, 10)
    if roll < 0.94:
        return rng.randrange(10, 32)
    if roll < 0.99:
        return rng.randrange(32, 100)
    return rng.randrange(100, MAX_CASE_CHARS + 1)


def text_cases():
    rng = random.Random(7)
    vocabulary_with_unseen = ENGLISH + HELD_OUT * 6
    cases = ["", " ", "  ", "\n", "a", "I", "'s", "s'", "Hello world", " Hello world",
             "Hello  world", "a  b", "a \n b", "trailing spaces   ", "   leading", "\t\t",
             "</s>", "<pad>", "<s>", "<unk>", "</s></s>", "a</s>b", "<s>Hello</s>",
             "don't", "DON'T", "I'M", "He'S", "'ll've", "﻿BOM", "\u180e\u180e", "a\u180eb",
             "x\u0085y", "x\u0085 y", "\u3000\u3000x", "1\u2003 2", "Ⅻ12", "٣٤٥ ٦", "１２３ab"]
    cases += VERSION_SENSITIVE + [p + s for p in (" ", "a", "1", "!") for s in VERSION_SENSITIVE]
    cases += ["a" + s + "1" for s in RARE_SPACES] + [s + s + "z" for s in RARE_SPACES]
    cases += [" " + c + "x" for c in CONTROLS]
    for word in HELD_OUT:
        cases += [word, " " + word, word.upper()]
    seen = set(cases)
    while len(cases) < N_TEXT_CASES:
        target = case_length(rng)
        kind = rng.random()
        if kind < 0.05:
            text = random_code_point_string(rng, target)
        elif kind < 0.07:
            text = pick(rng, SPECIAL_NEAR_MISSES) + joined_fragments(rng, vocabulary_with_unseen, 2)
        else:
            text = ""
            while len(text) < target:
                text += joined_fragments(rng, vocabulary_with_unseen, 1)
        text = text[:target]
        if text not in seen:
            seen.add(text)
            cases.append(text)
    return cases


def invalid_byte_strings(rng):
    invalid_pieces = [b"\x80", b"\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xc2", b"\xdf", b"\xe0\x80\x80",
                      b"\xe0\xa0", b"\xe1\x80", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xef\xbf",
                      b"\xf0\x80\x80\x80", b"\xf0\x90\x80", b"\xf4\x90\x80\x80", b"\xf4\x8f\xbf",
                      b"\xf5\x80\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xfe", b"\xff", b"\xe2\x82",
                      b"\xf0\x9f\x98", b"\xc3\x28", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc"]
    valid_pieces = [b"a", b" ", b"hello", b" world", "é".encode(), "世界".encode(), "😀".encode(),
                    b"\n", b"12", b"'s", b"</s>", b"\x00"]
    out = []
    for piece in invalid_pieces:
        out += [piece, b"x" + piece + b"y", piece + piece]
    while len(out) < N_BYTE_CASES - 6:
        data = b""
        for _ in range(rng.randrange(1, 8)):
            if rng.random() < 0.45:
                data += pick(rng, invalid_pieces)
            elif rng.random() < 0.1:
                data += bytes([rng.randrange(256)])
            else:
                data += pick(rng, valid_pieces)
        out.append(data)
    # Valid UTF-8 that JSON text cannot carry through a C string: embedded NULs.
    out += [b"\x00", b"a\x00b", b"\x00\x00 \x00", b" \x00x", b"</s>\x00", "é\x00世".encode()]
    return out


def byte_level_char_map():
    """The GPT-2 byte -> character map, written out for the independent reference encoder."""
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    mapping = {}
    extra = 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


class ReferenceEncoder:
    """GPT-2's encoder as the slow tokenizers implement it: split off added tokens, Python
    `regex` pre-tokenization, the original 'merge every occurrence of the best pair' loop."""

    PATTERN = regex.compile(
        r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

    def __init__(self, vocab, merges):
        self.vocab = vocab
        self.ranks = {tuple(pair): rank for rank, pair in enumerate(merges)}
        self.byte_map = byte_level_char_map()
        self.special = regex.compile("(" + "|".join(regex.escape(t) for t in SPECIAL_TOKENS) + ")")

    def bpe(self, word):
        symbols = list(word)
        while len(symbols) > 1:
            pairs = {(symbols[i], symbols[i + 1]) for i in range(len(symbols) - 1)}
            best = min(pairs, key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return symbols

    def encode(self, text):
        ids = []
        for segment in self.special.split(text):
            if segment in SPECIAL_TOKENS:
                ids.append(self.vocab[segment])
                continue
            for piece in self.PATTERN.findall(segment):
                word = "".join(self.byte_map[b] for b in piece.encode("utf-8"))
                ids.extend(self.vocab[symbol] for symbol in self.bpe(word))
        return ids


def train_tokenizer():
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  min_frequency=2, show_progress=False)
    tokenizer.train_from_iterator(training_corpus(), trainer)
    # OPT prepends "</s>" (id 2) as BOS and appends nothing.
    tokenizer.post_processor = processors.TemplateProcessing(
        single="</s> $A", pair="</s> $A </s> $B", special_tokens=[("</s>", OPT_BOS_ID)])
    for index, token in enumerate(SPECIAL_TOKENS):
        assert tokenizer.token_to_id(token) == index, token
    return tokenizer


def write_jsonl_line(out, record):
    out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")


def cross_check(out_dir, texts, hf_ids):
    """Reports (does not fail on) disagreements with transformers and the Python reference."""
    with open(os.path.join(out_dir, "vocab.json"), encoding="utf-8") as vocab_file:
        vocab = json.load(vocab_file)
    with open(os.path.join(out_dir, "merges.txt"), encoding="utf-8") as merges_file:
        merges = [line.split(" ") for line in merges_file.read().split("\n")[1:-1]]
    reference = ReferenceEncoder(vocab, merges)
    splitter = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    byte_map = byte_level_char_map()
    split_differs = []
    for text in texts:
        for segment in reference.special.split(text):
            if segment in SPECIAL_TOKENS:
                continue
            mine = ["".join(byte_map[b] for b in piece.encode("utf-8"))
                    for piece in reference.PATTERN.findall(segment)]
            if mine != [piece for piece, _ in splitter.pre_tokenize_str(segment)]:
                split_differs.append(text)
                break
    print(f"python-regex pre-tokenization vs tokenizers: {len(split_differs)} of {len(texts)} "
          f"split differently (Unicode version of \\p{{L}}/\\p{{N}})")
    for text in split_differs[:10]:
        print(f"  {text!r}: regex {reference.PATTERN.findall(text)}")
    disagreements = [i for i, text in enumerate(texts) if reference.encode(text) != hf_ids[i]]
    print(f"python-regex reference vs tokenizers ids: {len(disagreements)} of {len(texts)} differ")
    for i in disagreements[:10]:
        print(f"  {texts[i]!r}: reference {reference.encode(texts[i])} tokenizers {hf_ids[i]}")
    try:
        from transformers import GPT2Tokenizer
    except ImportError:
        print("transformers not installed: GPT2Tokenizer cross-check skipped")
        return
    slow = GPT2Tokenizer(os.path.join(out_dir, "vocab.json"), os.path.join(out_dir, "merges.txt"),
                         bos_token="</s>", eos_token="</s>", unk_token="</s>", pad_token="<pad>",
                         additional_special_tokens=["<s>", "<unk>"], add_prefix_space=False)
    disagreements = [i for i, text in enumerate(texts)
                     if slow(text, add_special_tokens=False)["input_ids"] != hf_ids[i]]
    print(f"transformers {GPT2Tokenizer.__module__} vs tokenizers: "
          f"{len(disagreements)} of {len(texts)} differ")
    for i in disagreements[:10]:
        got = slow(texts[i], add_special_tokens=False)["input_ids"]
        print(f"  {texts[i]!r}: transformers {got} tokenizers {hf_ids[i]}")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_out = os.path.join(here, "..", "tests", "fixtures", "tokenizer")
    out_dir = sys.argv[1] if len(sys.argv) > 1 else default_out
    os.makedirs(out_dir, exist_ok=True)

    tokenizer = train_tokenizer()
    tokenizer.model.save(out_dir)  # vocab.json, merges.txt ("#version: 0.2" header)
    tokenizer.save(os.path.join(out_dir, "tokenizer.json"), pretty=False)

    texts = text_cases()
    hf_ids = []
    rng = random.Random(99)
    with open(os.path.join(out_dir, "cases.jsonl"), "w", encoding="utf-8", newline="\n") as out:
        for text in texts:
            ids = tokenizer.encode(text, add_special_tokens=False).ids
            ids_bos = tokenizer.encode(text, add_special_tokens=True).ids
            assert ids_bos == [OPT_BOS_ID] + ids
            assert tokenizer.decode(ids, skip_special_tokens=False) == text, repr(text)
            hf_ids.append(ids)
            write_jsonl_line(out, {"text": text, "ids": ids, "ids_bos": ids_bos})
        lossy_mismatches = 0
        for data in invalid_byte_strings(rng):
            replaced = data.decode("utf-8", errors="replace")
            ids = tokenizer.encode(replaced, add_special_tokens=False).ids
            decoded = tokenizer.decode(ids, skip_special_tokens=False)
            lossy_mismatches += decoded != replaced
            write_jsonl_line(out, {"bytes_hex": data.hex(), "ids": ids,
                                   "decoded_hex": decoded.encode("utf-8").hex()})
        vocab_size = tokenizer.get_vocab_size()
        byte_chars = byte_level_char_map()
        for index in range(N_DECODE_CASES):
            # Mostly single-byte tokens so multi-byte characters get split and rejoined; some
            # special ids and ids past the vocabulary.
            ids = []
            for _ in range(rng.randrange(0, 12)):
                roll = rng.random()
                if roll < 0.6:
                    ids.append(tokenizer.token_to_id(byte_chars[rng.randrange(256)]))
                elif roll < 0.8:
                    ids.append(rng.randrange(0, vocab_size))
                elif roll < 0.95:
                    ids.append(rng.randrange(0, 4))
                else:
                    ids.append(vocab_size + rng.randrange(0, 50))
            skip_special = index % 2 == 1
            decoded = tokenizer.decode(ids, skip_special_tokens=skip_special)
            write_jsonl_line(out, {"decode_ids": ids, "skip_special": skip_special,
                                   "decoded_hex": decoded.encode("utf-8").hex()})
        variant_texts = ["quixotic", " quixotic", "a quixotic zephyr", "</s> quixotic!"]
        variant_texts += texts[:40] + random.Random(5).sample(texts[40:], N_VARIANT_CASES - 44)
        for name, edit in VARIANTS.items():
            spec = json.loads(tokenizer.to_str())
            edit(spec)
            variant = Tokenizer.from_str(json.dumps(spec))
            changed = 0
            for text in variant_texts:
                ids = variant.encode(text, add_special_tokens=False).ids
                changed += ids != tokenizer.encode(text, add_special_tokens=False).ids
                write_jsonl_line(out, {"variant": name, "text": text, "ids": ids})
            print(f"variant {name}: {changed} of {len(variant_texts)} cases change ids")
    print(f"tokenizers {tokenizers.__version__}: vocab {tokenizer.get_vocab_size()}, "
          f"{len(texts)} text cases, {N_BYTE_CASES} byte cases, {N_DECODE_CASES} decode cases")
    print("decode(encode(bytes.decode(errors='replace'))) round-trip mismatches: "
          f"{lossy_mismatches}")
    cross_check(out_dir, texts, hf_ids)
    for name in sorted(os.listdir(out_dir)):
        print(f"  {name}: {os.path.getsize(os.path.join(out_dir, name))} bytes")


if __name__ == "__main__":
    main()
