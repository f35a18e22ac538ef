"""Writes the seed corpora of the fuzz harnesses (tests/fuzz/corpus/<harness>/).

Deterministic, standard library only: valid files built the way zotune and HF write them (with
names and values from tests/fixtures and demo/), and the malformed cases each reader names in
its errors. Run from anywhere; it replaces the seed-* files and leaves other files (crash
regressions, kept by hand) alone. Seeds stay small: libFuzzer mutates them, size costs speed.
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SEP = b'\n#--8<--\n'  # FUZZ_SEPARATOR of fuzz_common.h


def fixture(*parts):
    with open(os.path.join(ROOT, *parts), 'rb') as f:
        return f.read()


# ---- safetensors -------------------------------------------------------------------------------

BITS = {'F32': 32, 'F16': 16, 'BF16': 16, 'I64': 64, 'I32': 32, 'U8': 8, 'BOOL': 8, 'F4': 4,
        'F64': 64, 'I8': 8}


def safetensors(tensors, metadata=None, pad=True):
    """tensors: [(name, dtype, shape)]; data bytes are a counting pattern."""
    header, offset, data = {}, 0, b''
    if metadata is not None:
        header['__metadata__'] = metadata
    for name, dtype, shape in tensors:
        count = 1
        for d in shape:
            count *= d
        size = count * BITS[dtype] // 8
        header[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [offset, offset + size]}
        data += bytes((offset + i) % 251 for i in range(size))
        offset += size
    text = json.dumps(header, separators=(',', ':')).encode()
    if pad:
        text += b' ' * (-len(text) % 8)
    return struct.pack('<Q', len(text)) + text + data


def raw_safetensors(header_text, data=b''):
    return struct.pack('<Q', len(header_text)) + header_text + data


def safetensors_seeds():
    opt = [('model.decoder.embed_tokens.weight', 'F16', [6, 4]),
           ('model.decoder.embed_positions.weight', 'F16', [4, 4]),
           ('model.decoder.layers.0.self_attn.q_proj.weight', 'F16', [4, 4]),
           ('model.decoder.layers.0.self_attn.q_proj.bias', 'F16', [4]),
           ('model.decoder.final_layer_norm.weight', 'F32', [4])]
    seeds = {
        'ok-f32-metadata': safetensors([('w', 'F32', [2, 3])], {'format': 'pt'}),
        'ok-opt-names': safetensors(opt, {'format': 'pt'}),
        'ok-dtypes': safetensors([('a', 'BF16', []), ('b', 'I64', [1]), ('c', 'BOOL', [3]),
                                  ('d', 'F4', [2]), ('e', 'U8', [0, 5]), ('f', 'F64', [1])]),
        'ok-empty': raw_safetensors(b'{}      '),
        'ok-unpadded': safetensors([('x', 'I8', [3])], pad=False),
        'ok-escapes': safetensors([('name é "q" \t', 'F32', [1])], {'k\n': 'v\u20ac'}),
        'bad-overlap': raw_safetensors(
            b'{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},'
            b'"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}', b'abc'),
        'bad-hole': raw_safetensors(
            b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b'ab'),
        'bad-trailing': safetensors([('w', 'F32', [1])]) + b'xx',
        'bad-truncated': safetensors([('w', 'F32', [4])])[:-3],
        'bad-duplicate': raw_safetensors(
            b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
            b'"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b'ab'),
        'bad-utf8': raw_safetensors(b'{"\xc3\x28":{"dtype":"U8","shape":[],"data_offsets":[0,1]}}',
                                    b'a'),
        'bad-length': struct.pack('<Q', 1 << 40) + b'{}',
        'bad-not-object': raw_safetensors(b'[1,2,3] '),
        'bad-dtype': raw_safetensors(b'{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}',
                                     bytes(16)),
        'bad-half-byte': raw_safetensors(b'{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}',
                                         b'ab'),
        'bad-shape-overflow': raw_safetensors(
            b'{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],'
            b'"data_offsets":[0,0]}}'),
        'bad-metadata': raw_safetensors(b'{"__metadata__":{"n":1},"__metadata__":{}}'),
        'bad-offsets': raw_safetensors(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[2,1.5]}}'),
    }
    return seeds


def index_seeds():
    names = [('model.decoder.embed_tokens.weight', 'F16', [6, 4]),
             ('model.decoder.layers.0.fc1.weight', 'F32', [2, 4]),
             ('model.decoder.layers.0.fc1.bias', 'F32', [2]),
             ('lm_head.weight', 'F16', [6, 4])]
    first, second = names[:2], names[2:]
    shard = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']

    def index(mapping, extra=None):
        body = {'metadata': {'total_size': 196}, 'weight_map': mapping}
        body.update(extra or {})
        return json.dumps(body, indent=2).encode()

    good = {n: shard[0] for n, _, _ in first}
    good.update({n: shard[1] for n, _, _ in second})
    a, b = safetensors(first, {'format': 'pt'}), safetensors(second)
    wrong = dict(good, **{'lm_head.weight': shard[0]})
    missing = {k: v for k, v in good.items() if k != 'lm_head.weight'}
    extra = dict(good, **{'model.decoder.final_layer_norm.weight': shard[1]})
    real = json.loads(fixture('tests', 'fixtures', 'opt-pre-variant', 'model.safetensors.index.json'))
    return {
        'ok-two-shards': index(good) + SEP + a + SEP + b,
        'ok-one-shard': index({n: shard[0] for n, _, _ in first}) + SEP + a,
        'ok-single-file': safetensors(names),
        'bad-wrong-shard': index(wrong) + SEP + a + SEP + b,
        'bad-missing-entry': index(missing) + SEP + a + SEP + b,
        'bad-not-in-shard': index(extra) + SEP + a + SEP + b,
        'bad-path': index({'x': '../model-00001-of-00002.safetensors'}) + SEP + a,
        'bad-empty-map': index({}) + SEP + a,
        'bad-map-type': index({'x': 3}) + SEP + a,
        'fixture-index': json.dumps(real).encode() + SEP + a + SEP + b,
    }


# ---- config.json -------------------------------------------------------------------------------

def config_seeds():
    seeds = {'fixture-opt-pre': fixture('tests', 'fixtures', 'opt-pre', 'config.json'),
             'fixture-opt-post': fixture('tests', 'fixtures', 'opt-post', 'config.json'),
             'fixture-demo': fixture('demo', 'model', 'config.json')}
    base = json.loads(seeds['fixture-opt-pre'])

    def variant(**changes):
        cfg = dict(base)
        for key, value in changes.items():
            if value is ...:
                cfg.pop(key, None)
            else:
                cfg[key] = value
        return json.dumps(cfg, indent=1).encode()

    seeds.update({
        'ok-minimal': json.dumps({k: base[k] for k in (
            'vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads', 'ffn_dim',
            'max_position_embeddings')}).encode(),
        'ok-dtype-key': variant(torch_dtype=..., dtype='bfloat16', word_embed_proj_dim=None),
        'bad-missing': variant(ffn_dim=...),
        'bad-heads': variant(num_attention_heads=3),
        'bad-float': variant(hidden_size=16.5),
        'bad-huge': variant(vocab_size=1e300),
        'bad-bool': variant(enable_bias=1),
        'bad-activation': variant(activation_function='gelu'),
        'bad-token': variant(pad_token_id=-1),
        'bad-dtype': variant(torch_dtype='float8'),
        'bad-duplicate': b'{"vocab_size": 8, "vocab_size": 9}',
        'bad-json': b'{"vocab_size": 8,\n "hidden_size": }',
    })
    return seeds


# ---- task JSONL (first byte: limits, second: batch and pad; fuzz_dataset.c) --------------------

def lines(path, n):
    return b''.join(fixture(*path).splitlines(keepends=True)[:n])


def task_seeds():
    text = lines(('demo', 'task', 'train.jsonl'), 3)
    pretok = lines(('demo', 'task', 'train.pretok.jsonl'), 3)
    score = lines(('tests', 'fixtures', 'opt-pre', 'score.jsonl'), 4)
    gen = (b'{"prompt": "Q: What colour is the sky?\\nA:", "answers": ["blue", "Blue"]}\n'
           b'{"prompt": "Q: 2+2?\\nA:", "answers": ["4"], "completion": " 4\\n"}\n')
    lm = (b'{"text": "It was the best of times, it was the worst of times."}\n\n'
          b'{"prompt": "Once upon", "completion": " a time"}\n')
    return {
        'ok-text-classification': b'\x00\x09' + text,
        'ok-text-short-positions': b'\x0c\x12' + text,
        'ok-pretok-classification': b'\x00\x0b' + pretok,
        'ok-pretok-lm': b'\x00\x1a' + score,
        'ok-generation': b'\x10\x02' + gen,
        'ok-lm-text': b'\x08\x01' + lm,
        'ok-list-label': b'\x00\x03{"prompt": "Pick:", "candidates": [" a", " b", " c"], '
                         b'"label": [0, 2]}\n',
        'bad-mixed-kinds': b'\x00\x01' + text[:text.index(b'\n') + 1] + lm,
        'bad-no-tokenizer': b'\x80\x01' + text,
        'bad-small-vocab': b'\x40\x01' + score,
        'bad-label': b'\x00\x01{"prompt": [5, 6], "candidates": [[7], [8]], "label": 2}\n',
        'bad-labels-length': b'\x00\x01{"input_ids": [5, 6, 7], "labels": [5, -100]}\n',
        'bad-nothing-to-predict': b'\x00\x01{"input_ids": [5, 6], "labels": [5, -100]}\n',
        'bad-json': b'\x00\x01{"text": "unterminated}\n',
    }


# ---- tokenizers --------------------------------------------------------------------------------

def byte_tokens():
    """The 256 one-character tokens of the fixture vocabulary: GPT-2's byte map, in id order."""
    vocab = json.loads(fixture('tests', 'fixtures', 'tokenizer', 'vocab.json'))
    return sorted((k for k in vocab if len(k) == 1), key=vocab.get)


def small_tokenizer(words=('the', 'Ġthe', 'ing', 'Ġit', "'s", 'Ġwas')):
    """A byte-level vocabulary (ids 4..259 the bytes) and merges that build `words`."""
    vocab = {'<s>': 0, '<pad>': 1, '</s>': 2, '<unk>': 3}
    for ch in byte_tokens():
        vocab[ch] = len(vocab)
    merges = []
    for word in words:
        symbols = list(word)
        while len(symbols) > 1:
            pair = (symbols[0], symbols[1])
            merged = pair[0] + pair[1]
            if merged not in vocab:
                vocab[merged] = len(vocab)
                merges.append(pair)
            symbols = [merged] + symbols[2:]
    return vocab, merges


def tokenizer_json(vocab, merges, pairs=False, added=True, model=None, pre=None):
    body = {
        'version': '1.0',
        'added_tokens': [{'id': i, 'content': t, 'single_word': False, 'lstrip': False,
                          'rstrip': False, 'normalized': False, 'special': True}
                         for i, t in enumerate(['<s>', '<pad>', '</s>', '<unk>'])] if added else [],
        'normalizer': None,
        'pre_tokenizer': dict({'type': 'ByteLevel', 'add_prefix_space': False,
                               'trim_offsets': True, 'use_regex': True}, **(pre or {})),
        'decoder': {'type': 'ByteLevel', 'add_prefix_space': True, 'trim_offsets': True,
                    'use_regex': True},
        'model': dict({'type': 'BPE', 'dropout': None, 'unk_token': None,
                       'continuing_subword_prefix': None, 'end_of_word_suffix': None,
                       'fuse_unk': False, 'byte_fallback': False, 'ignore_merges': False,
                       'vocab': vocab,
                       'merges': [list(m) for m in merges] if pairs else [' '.join(m)
                                                                           for m in merges]},
                      **(model or {})),
    }
    return json.dumps(body, ensure_ascii=False, separators=(',', ':')).encode()


def tokenizer_json_seeds():
    vocab, merges = small_tokenizer()
    few = {k: v for k, v in vocab.items() if v < 4 or k in 'abcĠ'}
    return {
        'ok-strings': tokenizer_json(vocab, merges),
        'ok-pairs': tokenizer_json(vocab, merges, pairs=True),
        'ok-options': tokenizer_json(vocab, merges, model={'ignore_merges': True, 'fuse_unk': True,
                                                           'unk_token': '<unk>'},
                                     pre={'add_prefix_space': True, 'use_regex': False}),
        'ok-few-bytes': tokenizer_json(few, [], model={'unk_token': '<unk>'}),
        'ok-no-added': tokenizer_json(vocab, merges, added=False),
        'bad-merge': tokenizer_json(vocab, merges + [('x', 'zz')]),
        'bad-model': tokenizer_json(vocab, merges, model={'type': 'WordPiece'}),
        'bad-dropout': tokenizer_json(vocab, merges, model={'dropout': 0.1}),
        'bad-duplicate-id': tokenizer_json(dict(vocab, extra=5), merges),
        'bad-pre': tokenizer_json(vocab, merges, pre={'type': 'Whitespace'}),
    }


def vocab_merges(vocab, merges, version=True):
    text = ('#version: 0.2\n' if version else '') + ''.join(f'{a} {b}\n' for a, b in merges)
    return json.dumps(vocab, ensure_ascii=False).encode() + SEP + text.encode()


def vocab_merges_seeds():
    vocab, merges = small_tokenizer()
    return {
        'ok-small': vocab_merges(vocab, merges),
        'ok-no-version-crlf': vocab_merges(vocab, merges, False).replace(b'\n', b'\r\n'),
        'ok-no-merges': json.dumps(vocab).encode(),
        'ok-gpt2-eot': vocab_merges(dict(vocab, **{'<|endoftext|>': len(vocab)}), merges),
        'bad-merge-line': vocab_merges(vocab, merges + [('a b', 'c')]),
        'bad-unknown-symbol': vocab_merges(vocab, merges + [('Ġthe', 'q')]),
        'bad-id': json.dumps(dict(vocab, x=-1)).encode() + SEP,
        'bad-empty': b'{}' + SEP,
    }


def text_seeds():
    seeds = {}
    cases = fixture('tests', 'fixtures', 'tokenizer', 'cases.jsonl').splitlines()
    picked = [json.loads(c)['text'] for c in cases[:400:16]]
    for i, t in enumerate(picked):
        seeds[f'fixture-case-{i:02d}'] = t.encode('utf-8', 'surrogatepass')
    seeds.update({
        'specials': b'<s>Hello</s><pad> <unk>x</s>',
        'contractions': b"I'm sure it's what they'd've done, you'll see. DON'T",
        'numbers': b'In 1999 there were 3.14159 pies and 42,000 ants.',
        'unicode': 'naïve café — 日本語のテキスト 😀👍🏽 Ελληνικά'.encode(),
        'whitespace': b'a  b\t\tc\n\n\nd   \r\n  ',
        'invalid-utf8': b'bad \xff\xfe bytes \xe2\x82 and \xc0\x80 overlong \xed\xa0\x80 surrogate',
        'ids': bytes(range(256)),
    })
    return seeds


# ---- step log and trainer state ----------------------------------------------------------------

def steplog_header(**extra):
    head = {'zotune_steplog': 1, 'optimizer': 'mezo', 'trainable': '', 'state_copies': 0,
            'model': 'demo/model', 'run_seed': '000000000000002a'}
    head.update(extra)
    return json.dumps(head, separators=(',', ':')).encode() + b'\n'


def steplog_record(step, losses=(0.6931471805599453, 0.6931471805599454), terms=1, rule='sgd',
                   dist='gaussian'):
    text = (f'{{"step":{step},"seed":"{step * 0x9E3779B97F4A7C15 % 2**64:016x}","losses":['
            + ','.join(repr(x) for x in losses)
            + f'],"dist":"{dist}","rule":"{rule}","lr":1.0000000000000001e-06,"wd":0,'
            f'"beta1":0.90000000000000002,"beta2":0.999,"adam_eps":1e-08,"pg":-0.0125,"sr":1,'
            f'"rseed":"{step:016x}","terms":['
            + ','.join(f'["{(step + t) * 0xC2B2AE3D27D4EB4F % 2**64:016x}",-1.25e-05]'
                       for t in range(terms))
            + ']}\n')
    return text.encode()


def steplog_seeds():
    head = steplog_header()
    many = tuple(0.5 + k / 64 for k in range(32))
    return {
        'ok-header-only': head,
        'ok-three-steps': head + b''.join(steplog_record(s) for s in range(3)),
        'ok-compute': steplog_header(compute='cpu, gemm f32', optimizer='zo-adamm',
                                     state_copies=3) + steplog_record(0, rule='adamm'),
        'ok-many-terms': head + steplog_record(5, losses=many, terms=16, dist='sphere'),
        'ok-torn-tail': head + steplog_record(0) + steplog_record(1)[:40],
        'ok-torn-header': head[:-1],
        'bad-hex': head + steplog_record(0).replace(b'"seed":"', b'"seed":"xyz'),
        'bad-rule': head + steplog_record(0, rule='lion'),
        'bad-header': b'{"zotune_steplog":2}\n',
        'bad-empty': b'',
        'bad-terms': head + steplog_record(0).replace(b'"terms":[', b'"terms":[[1,2],'),
        'ok-v2-eval-skip': steplog_header_v2() + steplog_eval(0, 0.8) + steplog_record(0)
        + steplog_skipped(1, 'non-finite loss') + steplog_eval(2, float('nan'))
        + steplog_skipped(2, 'non-finite weights') + steplog_record(3),
        'bad-v2-no-run': steplog_header(zotune_steplog=2) + steplog_record(0),
        'bad-skip-reason': head + steplog_skipped(0, 'bored'),
        'bad-duplicate-key': head + steplog_record(0).replace(b'{"step":0,', b'{"step":0,"step":1,'),
    }


def steplog_header_v2():
    run = {'--model': '0123456789abcdef', '--train': 'fedcba9876543210', '--eval': 'none',
           '--lr': '9.9999999999999995e-07', '--lr-schedule': 'plateau', '--steps': '4'}
    return steplog_header(zotune_steplog=2, run=run)


def steplog_eval(step, loss):
    value = 'null' if loss != loss else repr(loss)
    return (f'{{"eval":{step},"loss":{value},"metric":{value},"accuracy":-1,"f1":-1,"em":-1}}\n'
            .encode())


def steplog_skipped(step, reason):
    return (f'{{"step":{step},"seed":"{step * 0x9E3779B97F4A7C15 % 2**64:016x}",'
            f'"skipped":"{reason}"}}\n').encode()


def policy_blob(policy, capacity=0, best=float('inf'), bad=0, scale=1.0, fill=0, nxt=0,
                window=()):
    blob = struct.pack('<IIIIddd', 0x534F545A, 1, policy, capacity, best, 0, scale)
    blob = blob[:24] + struct.pack('<q', bad) + blob[32:]
    blob += struct.pack('<II', fill, nxt)
    return blob + b''.join(struct.pack('<d', w) for w in window)


def trainer_state(selector, blob, copies, next_step=100, tensors=True):
    body = json.dumps({'next_step': next_step, 'policy_state': blob.hex()}, indent='\t').encode()
    if not copies and not tensors:
        return bytes([selector]) + body
    params = [('model.decoder.layers.0.fc1.weight', 'F32', [max(copies, 1), 6]),
              ('model.decoder.layers.0.fc1.bias', 'F32', [max(copies, 1), 3])]
    return bytes([selector]) + body + SEP + safetensors(params)


def trainer_state_seeds():
    # fuzz_trainer_state.c: selector % 4 -> mezo (policy 0), zo-sgd-mmt (5, 1 copy),
    # zo-adamm (6, 3 copies), as2p (9, a gamma window of ceil(0.1 * 40) = 4)
    return {
        'ok-mezo': trainer_state(0, policy_blob(0), 0, tensors=False),
        'ok-momentum': trainer_state(1, policy_blob(5, bad=3, best=0.25, scale=0.1), 1),
        'ok-adamm': trainer_state(2, policy_blob(6), 3, next_step=0),
        'ok-as2p': trainer_state(3, policy_blob(9, 4, fill=3, nxt=3,
                                                window=(0.5, -1.5, 2.0, 0.0)), 0, tensors=False),
        'bad-policy': trainer_state(0, policy_blob(5), 0, tensors=False),
        'bad-window': trainer_state(3, policy_blob(9, 4, fill=5), 0, tensors=False),
        'bad-copies': trainer_state(2, policy_blob(6), 1),
        'bad-magic': trainer_state(0, b'\x00' * 48, 0, tensors=False),
        'bad-json': b'\x00{"next_step": 1}',
    }


# ---- PyTorch checkpoints ---------------------------------------------------------------------

def torch_bin_seeds():
    """The committed torch-bin fixtures (torch-written or hand-assembled, all small) as archives,
    and their data.pkl alone, which the harness hands straight to the unpickler."""
    import zipfile
    folder = os.path.join(ROOT, 'tests', 'fixtures', 'torch-bin')
    seeds = {}
    for name in sorted(os.listdir(folder)):
        data = fixture('tests', 'fixtures', 'torch-bin', name)
        stem = name[:-len('.bin')]
        seeds[stem] = data
        if data[:2] != b'PK':
            continue
        with zipfile.ZipFile(os.path.join(folder, name)) as archive:
            for entry in archive.namelist():
                if entry.endswith('/data.pkl'):
                    seeds[stem + '-pickle'] = archive.read(entry)
    return seeds


HARNESSES = {
    'safetensors': safetensors_seeds,
    'safetensors_index': index_seeds,
    'config': config_seeds,
    'dataset': task_seeds,
    'tokenizer_json': tokenizer_json_seeds,
    'vocab_merges': vocab_merges_seeds,
    'bpe_roundtrip': text_seeds,
    'steplog': steplog_seeds,
    'trainer_state': trainer_state_seeds,
    'torch_bin': torch_bin_seeds,
}


def main():
    for harness, make in HARNESSES.items():
        out = os.path.join(HERE, 'corpus', harness)
        os.makedirs(out, exist_ok=True)
        for name in os.listdir(out):
            if name.startswith('seed-'):
                os.remove(os.path.join(out, name))
        for name, data in make().items():
            with open(os.path.join(out, 'seed-' + name), 'wb') as f:
                f.write(data)


if __name__ == '__main__':
    main()
