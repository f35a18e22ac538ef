#!/usr/bin/env python3
"""Instructions per element of the perturbation and update kernels, from their SASS.

Disassembles zt_perturb_k and zt_update_k of a build (cuobjdump -sass on the sm_90 objects
kernels/cuda/libzt_cuda.a.p/{perturb,update}.cu.o) and runs each specialisation's machine code,
one thread, in a small interpreter of the SASS instructions these kernels use: integer, predicate,
float and conversion instructions are computed, loads read synthetic tensors (normal values of
about 0.05, so no NaN, Inf or subnormal paths), stores are kept. Every issued instruction counts,
predicated-off ones included, as the GPU issues them. A kernel is run on n1 and n2 elements (one
thread, so its grid-stride loop takes every block) and the figure is

    (instructions(n2) - instructions(n1)) / (n2 - n1)

the marginal cost of one element in the hot loop, with one term (MeZO's perturbation), aligned
buffers and offset 0: the launch, the term set-up and the loop's entry cancel. It is one thread's
count: a warp issues each instruction once for 32 lanes, so the lane instructions per element of
bench/roofline.c's RNG roof are the same number. The run checks that every element of the output
was stored exactly once.

Kernels that share Philox words across a warp (SHFL in their SASS: Rademacher z a 4096-element
chunk per warp, kernels/cuda/rademacher.cuh) run as lane 0 of a one-warp grid instead: a shuffle
returns the lane's own register (the words only feed sign bits, which no branch reads, so the
count is lane 0's), n1 and n2 are rounded to whole chunks, and the figure is lane 0's
instructions per element it owns (one 4-element block in 32), which it checks it stored once.

Both the current kernels (template instances per dtype, distribution, rule and rounding) and the
generic kernels before them (one kernel, dtype and distribution as arguments; commit 7b68d8b) are
understood, so two builds can be compared:

    bench/sass_count.py --build build --build /tmp/base/build

cuobjdump and nvdisasm come from the CUDA toolkit (/usr/local/cuda/bin); where the toolkit lacks
them, PyPI's nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm wheels carry them (found in
site-packages, or give --cuobjdump). Standard library only. docs/design.md §5.6.
"""
import argparse
import glob
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys

MASK = 0xFFFFFFFF
PARAM_BASE = 0x210  # sm_90: kernel parameters start at c[0x0][0x210]
F32, F16, BF16 = 0, 1, 2
GAUSS, RADEMACHER = 0, 1
SGD, SIGN, MOMENTUM, ADAMM = 0, 1, 2, 3
DTYPE_NAMES = {F32: "f32", F16: "f16", BF16: "bf16"}
DIST_NAMES = {GAUSS: "gauss", RADEMACHER: "rademacher"}
RULE_NAMES = {SGD: "sgd", SIGN: "sign", MOMENTUM: "momentum", ADAMM: "adamm"}
DTYPE_SIZE = {F32: 4, F16: 2, BF16: 2}


class SassError(Exception):
    pass


# ---- numbers -------------------------------------------------------------------------------

def f32(x):
    """x rounded to f32 (as a Python float)."""
    try:
        return struct.unpack("<f", struct.pack("<f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def bits_to_f32(u):
    return struct.unpack("<f", struct.pack("<I", u & MASK))[0]


def f32_to_bits(x):
    try:
        return struct.unpack("<I", struct.pack("<f", x))[0]
    except OverflowError:
        return 0x7F800000 if x > 0 else 0xFF800000


def f16_to_f32(h):
    return struct.unpack("<e", struct.pack("<H", h & 0xFFFF))[0]


def f32_to_f16_bits(x):
    if math.isnan(x):
        return 0x7FFF
    try:
        return struct.unpack("<H", struct.pack("<e", x))[0]
    except OverflowError:
        return 0x7C00 if x > 0 else 0xFC00


def f32_to_bf16_bits(x):
    u = f32_to_bits(x)
    if (u & 0x7FFFFFFF) > 0x7F800000:
        return 0x7FFF
    u += 0x7FFF + ((u >> 16) & 1)
    return (u >> 16) & 0xFFFF


def s32(u):
    u &= MASK
    return u - (1 << 32) if u & 0x80000000 else u


# ---- disassembly ---------------------------------------------------------------------------

def find_tool(name, explicit):
    if explicit:
        return explicit
    found = shutil.which(name)
    if found:
        return found
    candidates = [os.path.join("/usr/local/cuda/bin", name)]
    for base in sys.path:
        candidates += glob.glob(os.path.join(base, "nvidia", "cu*", "bin", name))
        candidates += glob.glob(os.path.join(base, "nvidia", "cuda_*", "bin", name))
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise SassError(f"{name} not found: install the CUDA toolkit's, or pip's "
                    f"nvidia-cuda-{name.replace('cuobjdump', 'cuobjdump')}, or pass --cuobjdump")


def disassemble(cuobjdump, obj, arch):
    env = dict(os.environ)
    # cuobjdump -sass runs nvdisasm: let it find the one beside it.
    env["PATH"] = os.path.dirname(cuobjdump) + os.pathsep + env.get("PATH", "")
    if "NVDISASM_PATH" not in env:
        nvdisasm = None
        try:
            nvdisasm = find_tool("nvdisasm", None)
        except SassError:
            pass
        if nvdisasm:
            env["PATH"] = os.path.dirname(nvdisasm) + os.pathsep + env["PATH"]
    sass = subprocess.run([cuobjdump, "-sass", "-arch", arch, obj], env=env, check=True,
                          capture_output=True, text=True).stdout
    elf = subprocess.run([cuobjdump, "-elf", "-arch", arch, obj], env=env, check=True,
                         capture_output=True, text=True).stdout
    return sass, elf


INSTR_RE = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")


def parse_functions(sass):
    """{mangled name: [(address, text)]}"""
    functions, current = {}, None
    for line in sass.splitlines():
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            current = functions.setdefault(m.group(1), [])
            continue
        m = INSTR_RE.match(line)
        if m and current is not None:
            current.append((int(m.group(1), 16), m.group(2)))
    return functions


def parse_kparams(elf):
    """{mangled name: {ordinal: (offset, size)}} from EIATTR_KPARAM_INFO."""
    params, current = {}, None
    for line in elf.splitlines():
        m = re.match(r"^\.nv\.info\.(\S+)", line)
        if m:
            current = params.setdefault(m.group(1), {})
            continue
        m = re.search(r"Ordinal : 0x([0-9a-f]+)\s+Offset\s+: 0x([0-9a-f]+)"
                      r"\s+Size\s+: 0x([0-9a-f]+)", line)
        if m and current is not None:
            current[int(m.group(1), 16)] = (int(m.group(2), 16), int(m.group(3), 16))
    return params


# ---- operands ------------------------------------------------------------------------------

class Op:
    __slots__ = ("kind", "name", "neg", "abs", "inv", "half", "value", "index", "wide")

    def __init__(self, kind):
        self.kind, self.name, self.neg, self.abs, self.inv = kind, None, False, False, False
        self.half, self.value, self.index, self.wide = None, None, None, False


def parse_operand(text):
    t = text.strip().replace(".reuse", "")
    op = Op("reg")
    if t.startswith("!"):
        op.inv, t = True, t[1:]
    if t.startswith("-") and not re.match(r"^-(0x|\d|INF|QNAN)", t):
        op.neg, t = True, t[1:]
    if t.startswith("~"):
        op.inv, t = True, t[1:]
    if t.startswith("|") and t.endswith("|"):
        op.abs, t = True, t[1:-1]
    if t.startswith("-") and t[1:2] in ("R", "U") and not re.match(r"^-(0x|\d)", t):
        op.neg, t = True, t[1:]
    m = re.match(r"^c\[0x0\]\[(?:(U?R\w+)\+)?(0x[0-9a-f]+|\w+)\]$", t)
    if m:
        op.kind = "const"
        op.index = m.group(1)
        op.value = int(m.group(2), 16) if m.group(2).startswith("0x") else 0
        if m.group(2).startswith("U") or m.group(2).startswith("R"):
            op.index, op.value = m.group(2), 0
        return op
    m = re.match(r"^(?:desc\[\w+\])?\[(U?R\w+?)(\.64)?(?:\+(U?R\w+))?(?:\+(-?0x[0-9a-f]+))?\]$", t)
    if m:
        op.kind, op.name, op.wide = "mem", m.group(1), bool(m.group(2))
        op.index = m.group(3)
        op.value = int(m.group(4), 16) if m.group(4) else 0
        return op
    m = re.match(r"^\[(-?0x[0-9a-f]+)\]$", t)
    if m:
        op.kind, op.name, op.value = "mem", "RZ", int(m.group(1), 16)
        return op
    m = re.match(r"^(R\d+|RZ|UR\d+|URZ)(?:\.(H0_H0|H1_H1|H0|H1|B\d|U8|F32))?$", t)
    if m:
        op.kind = "ureg" if m.group(1).startswith("U") else "reg"
        op.name, op.half = m.group(1), m.group(2)
        return op
    m = re.match(r"^(P\d|PT|UP\d|UPT)$", t)
    if m:
        op.kind, op.name = "pred", m.group(1)
        return op
    m = re.match(r"^SR_\w+(\.\w+)?$", t)
    if m:
        op.kind, op.name = "sreg", t
        return op
    m = re.match(r"^(-)?0x([0-9a-f]+)$", t)
    if m:
        op.kind = "imm"
        v = int(m.group(2), 16)
        op.value = (-v) & MASK if m.group(1) else v
        return op
    m = re.match(r"^([+-]?)(INF|QNAN)$", t)
    if m:
        op.kind = "fimm"
        v = math.inf if m.group(2) == "INF" else math.nan
        op.value = -v if m.group(1) == "-" else v
        return op
    m = re.match(r"^[+-]?\d+(\.\d*)?(e[+-]?\d+)?$", t)
    if m:
        op.kind, op.value = "fimm", float(t)
        return op
    # Anything else (SRZ, labels, ...) fails only if an executed instruction reads it.
    op.kind, op.name = "unknown", t
    return op


def split_operands(text):
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return [o.strip() for o in out]


class Instr:
    __slots__ = ("addr", "text", "guard", "guard_inv", "opcode", "base", "mods", "ops", "target")

    def __init__(self, addr, text):
        self.addr, self.text = addr, text
        m = re.match(r"^(@(!?)(U?P\d|U?PT)\s+)?(\S+)\s*(.*)$", text)
        self.guard = m.group(3)
        self.guard_inv = m.group(2) == "!"
        self.opcode = m.group(4)
        parts = self.opcode.split(".")
        self.base, self.mods = parts[0], parts[1:]
        rest = m.group(5)
        self.target = None
        if self.base in ("BRA", "CALL", "BSSY", "JMP", "BREAK", "BRX", "JMX", "WARPSYNC", "BPT"):
            ops = split_operands(rest)
            tgt = [o for o in ops if re.match(r"^-?0x[0-9a-f]+$", o)]
            if tgt and self.base in ("BRA", "CALL", "JMP"):
                self.target = int(tgt[-1], 16)
            self.ops = [parse_operand(o) for o in ops if not re.match(r"^-?0x[0-9a-f]+$", o)
                        and re.match(r"^!?U?P(\d|T)$", o)]
        elif self.base in ("NOP", "EXIT", "BSYNC", "RET", "DEPBAR", "ERRBAR", "MEMBAR",
                           "CCTL", "BAR", "YIELD", "NANOSLEEP"):
            self.ops = [parse_operand(o) for o in split_operands(rest)
                        if re.match(r"^(U?R\d+|!?U?P\d|!?U?PT)$", o)]
        else:
            self.ops = [parse_operand(o) for o in split_operands(rest)]


# ---- the interpreter -----------------------------------------------------------------------

class Memory:
    """Byte-addressed: regions with synthetic contents, and what the kernel stored."""

    def __init__(self):
        self.regions = []  # (base, size, name, init bytes)
        self.stored = {}   # address -> byte
        self.store_count = {}

    def add(self, base, data, name):
        self.regions.append((base, len(data), name, data))

    def region(self, addr, size):
        for base, n, name, data in self.regions:
            if base <= addr and addr + size <= base + n:
                return base, name, data
        raise SassError(f"access of {size} bytes at {addr:#x} outside every buffer")

    def read(self, addr, size):
        base, _, data = self.region(addr, size)
        out = bytearray(data[addr - base:addr - base + size])
        for i in range(size):
            if addr + i in self.stored:
                out[i] = self.stored[addr + i]
        return bytes(out)

    def write(self, addr, payload):
        self.region(addr, len(payload))
        for i, b in enumerate(payload):
            self.stored[addr + i] = b
            self.store_count[addr + i] = self.store_count.get(addr + i, 0) + 1


class Machine:
    def __init__(self, instrs, cbank, memory):
        self.instrs = instrs
        self.index = {ins.addr: i for i, ins in enumerate(instrs)}
        self.cbank = cbank
        self.mem = memory
        self.R = [0] * 256
        self.UR = [0] * 64
        self.P = [False] * 7
        self.UP = [False] * 7
        self.local = {}
        self.count = 0
        self.hits = [0] * len(instrs)

    # registers
    def reg(self, name):
        if name in ("RZ", "URZ"):
            return 0
        if name.startswith("UR"):
            return self.UR[int(name[2:])]
        return self.R[int(name[1:])]

    def set_reg(self, op, value):
        name = op.name
        if name in ("RZ", "URZ"):
            return
        if name.startswith("UR"):
            self.UR[int(name[2:])] = value & MASK
        else:
            self.R[int(name[1:])] = value & MASK

    def set_reg64(self, op, value):
        name = op.name
        if name in ("RZ", "URZ"):
            return
        bank, i = (self.UR, int(name[2:])) if name.startswith("UR") else (self.R, int(name[1:]))
        bank[i] = value & MASK
        bank[i + 1] = (value >> 32) & MASK

    def reg64(self, op):
        name = op.name
        if name in ("RZ", "URZ"):
            return 0
        if name.startswith("UR"):
            i = int(name[2:])
            return self.UR[i] | (self.UR[i + 1] << 32)
        i = int(name[1:])
        return self.R[i] | (self.R[i + 1] << 32)

    def pred(self, op):
        name = op.name
        if name in ("PT", "UPT"):
            v = True
        elif name.startswith("UP"):
            v = self.UP[int(name[2:])]
        else:
            v = self.P[int(name[1:])]
        return (not v) if op.inv else v

    def set_pred(self, op, value):
        if op.name in ("PT", "UPT"):
            return
        if op.name.startswith("UP"):
            self.UP[int(op.name[2:])] = bool(value)
        else:
            self.P[int(op.name[1:])] = bool(value)

    def const(self, op, size=4):
        offset = op.value + (self.reg(op.index) if op.index else 0)
        return int.from_bytes(self.cbank[offset:offset + size], "little")

    def raw(self, op):
        """An operand's 32 bits before modifiers."""
        if op.kind in ("reg", "ureg"):
            v = self.reg(op.name)
            if op.half in ("H1_H1", "H1"):
                v >>= 16
            return v & MASK
        if op.kind == "const":
            return self.const(op)
        if op.kind == "imm":
            return op.value
        if op.kind == "fimm":
            return f32_to_bits(op.value)
        raise SassError(f"operand {op.name!r} ({op.kind}) used as a value")

    def u(self, op):
        """Integer value: ~ and - applied (- as two's complement, unreduced for carries)."""
        v = self.raw(op)
        if op.inv:
            v = ~v & MASK
        if op.neg:
            v = (~v & MASK) + 1
        return v

    def f(self, op):
        """Float value with |.| and - applied."""
        if op.kind == "fimm":
            v = op.value
        else:
            v = bits_to_f32(self.raw(op))
        if op.abs:
            v = abs(v)
        if op.neg:
            v = -v
        return v

    # execution
    def run(self, limit=50_000_000):
        pc = 0
        calls = []
        while True:
            ins = self.instrs[pc]
            self.count += 1
            self.hits[pc] += 1
            if self.count > limit:
                raise SassError("instruction limit reached")
            active = True
            if ins.guard:
                gop = Op("pred")
                gop.name, gop.inv = ins.guard, ins.guard_inv
                active = self.pred(gop)
            nxt = pc + 1
            b = ins.base
            if b == "EXIT":
                if active:
                    return
            elif b == "BRA":
                take = active
                if "DIV" in ins.mods:
                    take = False
                for p in ins.ops:
                    take = take and self.pred(p)
                if take:
                    nxt = self.index[ins.target]
            elif b == "CALL":
                if active:
                    calls.append(pc + 1)
                    nxt = self.index[ins.target]
            elif b == "RET":
                if active:
                    if ins.ops and ins.ops[0].kind in ("reg", "ureg"):
                        nxt = self.index[self.reg(ins.ops[0].name)]
                    else:
                        nxt = calls.pop()
            elif active:
                self.execute(ins)
            pc = nxt

    # Convergence barriers and fences: nothing to do for one thread, but they issue.
    NO_OPS = ("BSSY", "BSYNC", "NOP", "WARPSYNC", "DEPBAR", "MEMBAR", "ERRBAR", "CCTL", "YIELD",
              "BAR", "NANOSLEEP", "FENCE", "BREAK", "BMOV")

    def execute(self, ins):
        # U-prefixed (uniform datapath) opcodes share their vector twin's semantics.
        handler = getattr(self, "op_" + ins.base, None)
        if handler is None and ins.base.startswith("U"):
            handler = getattr(self, "op_" + ins.base[1:], None)
        if handler is None:
            if ins.base in self.NO_OPS:
                return
            raise SassError(f"no semantics for {ins.opcode} ({ins.text})")
        handler(ins.mods, ins.ops, ins)

    # integer
    def op_MOV(self, mods, ops, ins):
        self.set_reg(ops[0], self.u(ops[1]))

    def op_R2UR(self, mods, ops, ins):
        self.set_reg(ops[0], self.u(ops[1]))

    def op_S2R(self, mods, ops, ins):
        self.set_reg(ops[0], self.sregs.get(ops[1].name, 0))

    op_S2UR = op_S2R

    def op_CS2R(self, mods, ops, ins):
        self.set_reg64(ops[0], 0)  # only CS2R Rd, SRZ occurs

    def op_LDC(self, mods, ops, ins):
        size = 8 if "64" in mods else 4
        v = self.const(ops[1], size)
        if size == 8:
            self.set_reg64(ops[0], v)
        else:
            if "U16" in mods:
                v &= 0xFFFF
            elif "U8" in mods:
                v &= 0xFF
            self.set_reg(ops[0], v)

    def op_IMAD(self, mods, ops, ins):
        if "MOV" in mods:
            self.set_reg(ops[0], self.u(ops[3]))
            return
        a, bb = self.u(ops[1]) & MASK, self.u(ops[2]) & MASK
        if "WIDE" in mods:
            if "U32" not in mods:
                a, bb = s32(a), s32(bb)
            c = self.reg64(ops[3]) if ops[3].kind in ("reg", "ureg") else self.u(ops[3])
            self.set_reg64(ops[0], (a * bb + c) & 0xFFFFFFFFFFFFFFFF)
            return
        if "HI" in mods:
            if "U32" not in mods:
                a, bb = s32(a), s32(bb)
            self.set_reg(ops[0], ((a * bb) >> 32) + self.u(ops[3]))
            return
        carry = 0
        if "X" in mods and len(ops) > 4:
            carry = 1 if self.pred(ops[4]) else 0
        self.set_reg(ops[0], a * bb + self.u(ops[3]) + carry)

    def op_IADD3(self, mods, ops, ins):
        outs = []
        i = 1
        while ops[i].kind == "pred":
            outs.append(ops[i])
            i += 1
        srcs = ops[i:i + 3]
        cins = ops[i + 3:]
        if "X" in mods:
            vals = []
            for s in srcs:
                v = self.raw(s)
                if s.inv or s.neg:
                    v = ~v & MASK
                vals.append(v)
            total = sum(vals) + sum(1 for p in cins if self.pred(p))
        else:
            total = sum(self.u(s) for s in srcs)
        self.set_reg(ops[0], total)
        carry = total >> 32
        for k, p in enumerate(outs):
            self.set_pred(p, carry > k)

    def op_VIADD(self, mods, ops, ins):
        self.set_reg(ops[0], self.u(ops[1]) + self.u(ops[2]))

    def op_IABS(self, mods, ops, ins):
        self.set_reg(ops[0], abs(s32(self.u(ops[1]))))

    def op_IMNMX(self, mods, ops, ins):
        a, bb = self.u(ops[1]) & MASK, self.u(ops[2]) & MASK
        if "U32" not in mods:
            a, bb = s32(a), s32(bb)
        self.set_reg(ops[0], min(a, bb) if self.pred(ops[3]) else max(a, bb))

    def op_VIMNMX(self, mods, ops, ins):
        a, bb = self.u(ops[1]) & MASK, self.u(ops[2]) & MASK
        if "U32" not in mods:
            a, bb = s32(a), s32(bb)
        self.set_reg(ops[0], min(a, bb) if self.pred(ops[3]) else max(a, bb))

    def op_LOP3(self, mods, ops, ins):
        i = 0
        pout = None
        if ops[0].kind == "pred":
            pout, i = ops[0], 1
        d, a, bb, c, lut = ops[i], self.u(ops[i + 1]), self.u(ops[i + 2]), self.u(ops[i + 3]), \
            self.raw(ops[i + 4])
        a, bb, c = a & MASK, bb & MASK, c & MASK
        r = 0
        for k in range(8):
            if lut >> k & 1:
                r |= ((a if k & 4 else ~a) & (bb if k & 2 else ~bb) & (c if k & 1 else ~c))
        r &= MASK
        self.set_reg(d, r)
        if pout is not None:
            self.set_pred(pout, r != 0)

    def op_PLOP3(self, mods, ops, ins):
        a, bb, c = (1 if self.pred(p) else 0 for p in ops[2:5])
        k = a << 2 | bb << 1 | c
        self.set_pred(ops[0], self.raw(ops[5]) >> k & 1)
        self.set_pred(ops[1], self.raw(ops[6]) >> k & 1)

    def op_SHF(self, mods, ops, ins):
        lo, sh, hi = self.u(ops[1]) & MASK, self.u(ops[2]) & MASK, self.u(ops[3]) & MASK
        wide = "U64" in mods or "S64" in mods
        value = (hi << 32) | lo
        limit = 63 if wide else 32
        sh = min(sh & 0x3F if wide else sh, limit)
        if "L" in mods:
            r = value << sh
            out = (r >> 32) if "HI" in mods else r
        else:
            if "S32" in mods or "S64" in mods:
                sv = value - (1 << 64) if value >> 63 else value
                r = sv >> sh
            else:
                r = value >> sh
            out = (r >> 32) if "HI" in mods else r
        self.set_reg(ops[0], out & MASK)

    def op_LEA(self, mods, ops, ins):
        outs, i = [], 1
        while ops[i].kind == "pred":
            outs.append(ops[i])
            i += 1
        a, bb = self.u(ops[i]) & MASK, ops[i + 1]
        if "HI" in mods:
            c = self.u(ops[i + 2]) & MASK
            sh = self.raw(ops[i + 3])
            part = (((c << 32) | a) << sh) >> 32
            carry = 1 if "X" in mods and len(ops) > i + 4 and self.pred(ops[i + 4]) else 0
            bv = self.raw(bb)
            if bb.inv or bb.neg:
                bv = ~bv & MASK
            total = (part & MASK) + bv + carry
        else:
            # A negated shifted operand is negated after the shift: b - (a << sh).
            sh = self.raw(ops[i + 2])
            shifted = (self.raw(ops[i]) << sh) & MASK
            if ops[i].inv:
                shifted = ~shifted & MASK
            if ops[i].neg:
                shifted = (~shifted & MASK) + 1
            total = shifted + self.u(bb)
        self.set_reg(ops[0], total)
        for k, p in enumerate(outs):
            self.set_pred(p, (total >> 32) > k)

    def op_SEL(self, mods, ops, ins):
        self.set_reg(ops[0], self.u(ops[1]) if self.pred(ops[3]) else self.u(ops[2]))

    def op_ISETP(self, mods, ops, ins):
        cmp = mods[0]
        unsigned = "U32" in mods
        a, bb = self.u(ops[2]) & MASK, self.u(ops[3]) & MASK
        if not unsigned:
            a, bb = s32(a), s32(bb)
        bop = [m for m in mods if m in ("AND", "OR", "XOR")][0]
        pc = self.pred(ops[4])
        if "EX" in mods:
            low = self.pred(ops[5])
            if cmp == "EQ":
                r = a == bb and low
            elif cmp == "NE":
                r = a != bb or low
            elif cmp in ("GT", "GE"):
                r = a > bb or (a == bb and low)
            else:
                r = a < bb or (a == bb and low)
        else:
            r = {"EQ": a == bb, "NE": a != bb, "LT": a < bb, "LE": a <= bb, "GT": a > bb,
                 "GE": a >= bb}[cmp]
        self.set_pred(ops[0], self.combine(r, pc, bop))
        self.set_pred(ops[1], self.combine(not r, pc, bop))

    @staticmethod
    def combine(r, pc, bop):
        return (r and pc) if bop == "AND" else (r or pc) if bop == "OR" else (r != pc)

    def op_POPC(self, mods, ops, ins):
        self.set_reg(ops[0], bin(self.u(ops[1]) & MASK).count("1"))

    def op_FLO(self, mods, ops, ins):
        v = self.u(ops[1]) & MASK
        self.set_reg(ops[0], v.bit_length() - 1 if v else MASK)

    def op_PRMT(self, mods, ops, ins):
        a, sel, bb = self.u(ops[1]) & MASK, self.u(ops[2]) & 0xFFFF, self.u(ops[3]) & MASK
        src = a | (bb << 32)
        out = 0
        for i in range(4):
            s = (sel >> (4 * i)) & 0xF
            byte = (src >> (8 * (s & 7))) & 0xFF
            if s & 8:
                byte = 0xFF if byte & 0x80 else 0
            out |= byte << (8 * i)
        self.set_reg(ops[0], out)

    def op_MOV32I(self, mods, ops, ins):
        self.set_reg(ops[0], self.u(ops[1]))

    # floats
    def op_FADD(self, mods, ops, ins):
        self.set_reg(ops[0], f32_to_bits(f32(self.f(ops[1]) + self.f(ops[2]))))

    def op_FMUL(self, mods, ops, ins):
        a, bb = self.f(ops[1]), self.f(ops[2])
        try:
            v = a * bb
        except OverflowError:
            v = math.inf
        self.set_reg(ops[0], f32_to_bits(f32(v)))

    def op_FFMA(self, mods, ops, ins):
        a, bb, c = self.f(ops[1]), self.f(ops[2]), self.f(ops[3])
        self.set_reg(ops[0], f32_to_bits(f32(a * bb + c)))

    def op_FMNMX(self, mods, ops, ins):
        a, bb = self.f(ops[1]), self.f(ops[2])
        self.set_reg(ops[0], f32_to_bits(min(a, bb) if self.pred(ops[3]) else max(a, bb)))

    def op_FSEL(self, mods, ops, ins):
        v = ops[1] if self.pred(ops[3]) else ops[2]
        self.set_reg(ops[0], f32_to_bits(self.f(v)))

    def op_FSETP(self, mods, ops, ins):
        cmp = mods[0]
        a, bb = self.f(ops[2]), self.f(ops[3])
        nan = math.isnan(a) or math.isnan(bb)
        base = {"EQ": a == bb, "NE": a != bb and not nan, "LT": a < bb, "LE": a <= bb,
                "GT": a > bb, "GE": a >= bb, "NUM": not nan, "NAN": nan,
                "EQU": nan or a == bb, "NEU": nan or a != bb, "LTU": nan or a < bb,
                "LEU": nan or a <= bb, "GTU": nan or a > bb, "GEU": nan or a >= bb}[cmp]
        bop = [m for m in mods if m in ("AND", "OR", "XOR")][0]
        pc = self.pred(ops[4])
        self.set_pred(ops[0], self.combine(base, pc, bop))
        self.set_pred(ops[1], self.combine(not base, pc, bop))

    def op_FCHK(self, mods, ops, ins):
        self.set_pred(ops[0], False)  # the division's fast path

    def op_MUFU(self, mods, ops, ins):
        x = self.f(ops[1])
        fn = mods[0]
        try:
            v = {"RSQ": lambda t: 1 / math.sqrt(t) if t > 0 else (math.inf if t == 0 else math.nan),
                 "RCP": lambda t: 1 / t if t != 0 else math.inf,
                 "SIN": lambda t: math.sin(t * 2 * math.pi),
                 "COS": lambda t: math.cos(t * 2 * math.pi),
                 "LG2": lambda t: math.log2(t) if t > 0 else -math.inf,
                 "EX2": lambda t: 2.0 ** t,
                 "SQRT": lambda t: math.sqrt(t) if t >= 0 else math.nan}[fn](x)
        except (OverflowError, ValueError):
            v = math.nan
        self.set_reg(ops[0], f32_to_bits(f32(v)))

    def op_I2FP(self, mods, ops, ins):
        v = self.u(ops[1]) & MASK
        if "S32" in mods:
            v = s32(v)
        self.set_reg(ops[0], f32_to_bits(f32(float(v))))

    def op_I2F(self, mods, ops, ins):
        v = self.u(ops[1]) & MASK
        if "U16" in mods:
            v &= 0xFFFF
        elif "S16" in mods:
            v = (v & 0xFFFF) - 0x10000 if v & 0x8000 else v & 0xFFFF
        elif "U32" not in mods and "U64" not in mods:
            v = s32(v)
        self.set_reg(ops[0], f32_to_bits(f32(float(v))))

    def op_F2I(self, mods, ops, ins):
        x = self.f(ops[1])
        if math.isnan(x):
            v = 0
        else:
            v = math.trunc(x) if "TRUNC" in mods else round(x)
        if "U32" in mods:
            v = min(max(v, 0), MASK)
        else:
            v = min(max(v, -(1 << 31)), (1 << 31) - 1)
        self.set_reg(ops[0], v)

    def op_HADD2(self, mods, ops, ins):
        def half(op):
            # raw() has already moved an .H1 half down
            x = f16_to_f32(self.raw(op) & 0xFFFF) if op.kind != "fimm" else op.value
            if op.abs:
                x = abs(x)
            if op.neg:
                x = -x
            return x
        if "F32" in mods:
            self.set_reg(ops[0], f32_to_bits(f32(half(ops[1]) + half(ops[2]))))
        else:
            raise SassError(f"HADD2 without .F32: {ins.text}")

    def op_HFMA2(self, mods, ops, ins):
        # Only its constant form: -RZ * RZ + (hi, lo).
        if ops[3].kind == "fimm" and ops[4].kind == "fimm":
            self.set_reg(ops[0], f32_to_f16_bits(ops[3].value) << 16 |
                         f32_to_f16_bits(ops[4].value))
        elif ops[3].kind == "fimm":
            self.set_reg(ops[0], f32_to_f16_bits(ops[3].value) << 16)
        else:
            raise SassError(f"HFMA2 form not understood: {ins.text}")

    def op_F2FP(self, mods, ops, ins):
        a, bb = self.f(ops[1]), self.f(ops[2])
        conv = f32_to_f16_bits if "F16" in mods else f32_to_bf16_bits
        self.set_reg(ops[0], conv(a) << 16 | conv(bb))

    def op_F2F(self, mods, ops, ins):
        x = self.f(ops[1])
        if mods[:2] == ["F16", "F32"]:
            self.set_reg(ops[0], f32_to_f16_bits(x))
        else:
            self.set_reg(ops[0], f32_to_bits(f32(x)))

    # memory
    def address(self, op):
        r = Op("reg")
        r.name = op.name
        addr = self.reg64(r) if op.wide else self.reg(op.name)
        if op.index:
            addr += self.reg(op.index)
        return (addr + (op.value if op.value < 0x80000000 else op.value - (1 << 32))) \
            & 0xFFFFFFFFFFFFFFFF

    @staticmethod
    def width(mods):
        for m, n in (("128", 16), ("64", 8), ("U16", 2), ("S16", 2), ("U8", 1), ("S8", 1)):
            if m in mods:
                return n
        return 4

    def load_into(self, dest, data, mods):
        n = len(data)
        if n <= 4:
            v = int.from_bytes(data, "little")
            if "S16" in mods and v & 0x8000:
                v |= 0xFFFF0000
            self.set_reg(dest, v)
            return
        i = int(dest.name[1:])
        for k in range(n // 4):
            self.R[i + k] = int.from_bytes(data[4 * k:4 * k + 4], "little")

    def store_bytes(self, src, n):
        if n <= 4:
            return (self.reg(src.name) & ((1 << (8 * n)) - 1)).to_bytes(n, "little")
        if src.name == "RZ":
            return bytes(n)
        i = int(src.name[1:])
        return b"".join(self.R[i + k].to_bytes(4, "little") for k in range(n // 4))

    def op_LDG(self, mods, ops, ins):
        n = self.width(mods)
        self.load_into(ops[0], self.mem.read(self.address(ops[1]), n), mods)

    op_LD = op_LDG

    def op_STG(self, mods, ops, ins):
        n = self.width(mods)
        self.mem.write(self.address(ops[0]), self.store_bytes(ops[1], n))

    op_ST = op_STG

    def op_LDL(self, mods, ops, ins):
        n, addr = self.width(mods), self.address(ops[1])
        self.load_into(ops[0], bytes(self.local.get(addr + i, 0) for i in range(n)), mods)

    def op_STL(self, mods, ops, ins):
        n, addr = self.width(mods), self.address(ops[0])
        for i, byte in enumerate(self.store_bytes(ops[1], n)):
            self.local[addr + i] = byte

    def op_RED(self, mods, ops, ins):
        pass  # the non-finite counter: never reached with finite data

    op_REDG = op_RED
    op_ATOMG = op_RED

    def op_SHFL(self, mods, ops, ins):
        # One thread stands for lane 0 of a whole warp: a shuffle returns the source register's
        # own value (the other lanes' words are not modelled). The value only feeds the sign bits
        # of Rademacher z, which no branch reads, so the count is that of the real lane 0.
        if ops[0].kind == "pred":
            self.set_pred(ops[0], True)
            ops = ops[1:]
        self.set_reg(ops[0], self.u(ops[1]))

    def op_VOTE(self, mods, ops, ins):
        # One thread: ANY / ALL of its own predicate; the mask form gives lane 0's bit.
        v = self.pred(ops[-1])
        if ops[0].kind in ("reg", "ureg"):
            self.set_reg(ops[0], 1 if v else 0)
        if len(ops) > 1 and ops[1].kind == "pred":
            self.set_pred(ops[1], v)

    op_VOTEU = op_VOTE


# ---- kernel arguments ----------------------------------------------------------------------

class Layout:
    """A C struct built field by field with natural alignment."""

    def __init__(self):
        self.data = bytearray()
        self.align = 1

    def put(self, fmt, value):
        size = struct.calcsize("<" + fmt)
        self.align = max(self.align, size)
        while len(self.data) % size:
            self.data.append(0)
        self.data += struct.pack("<" + fmt, value)

    def struct(self, other):
        self.align = max(self.align, other.align)
        while len(self.data) % other.align:
            self.data.append(0)
        self.data += other.bytes()

    def bytes(self):
        out = bytearray(self.data)
        while len(out) % self.align:
            out.append(0)
        return bytes(out)


def round_keys(key):
    """zt_round_keys_of (kernels/cuda/z_terms.cuh): the ten rounds' keys."""
    s = Layout()
    lo, hi = key & MASK, key >> 32
    for r in range(10):
        s.put("I", (lo + r * 0x9E3779B9) & MASK)
        s.put("I", (hi + r * 0xBB67AE85) & MASK)
    return s


def terms_struct(dist, keys, scales, generic):
    """zt_cuda_z_terms; the current one also carries term 0's round keys and scale."""
    s = Layout()
    s.put("i", len(keys))
    s.put("i", dist)
    if not generic:
        s.struct(round_keys(keys[0]))
        s.put("f", scales[0])
    s.put("Q", 0)
    s.put("Q", 0)
    for i in range(32):
        s.put("Q", keys[i] if i < len(keys) else 0)
    for i in range(32):
        s.put("f", scales[i] if i < len(scales) else 0.0)
    return s


def coeffs_struct(rule, generic):
    """zt_update_coeffs; the generic kernel's also names the rule."""
    s = Layout()
    if generic:
        s.put("i", rule)
    for v in (1e-3, 0.01, 0.9, 1 - 0.9, 0.999, 1 - 0.999, 1e-8):
        s.put("f", v)
    return s


def scalar(fmt, value):
    s = Layout()
    s.put(fmt, value)
    return s


def span_struct(elem_offset, n):
    s = Layout()
    end = elem_offset + n
    full_begin, full_end = (elem_offset + 3) // 4, end // 4
    for v in (elem_offset, end, full_begin, full_end, 0, 0):
        s.put("Q", v)
    s.put("i", 0)
    return s


# ---- cases ---------------------------------------------------------------------------------

TEMPLATE_RE = re.compile(r"I(.*?)EEEv")


def template_args(mangled):
    m = TEMPLATE_RE.search(mangled)
    if not m:
        return None
    return [int(v) for v in re.findall(r"E?L(?:\d+zt_\w+?|S\d*_|b)(\d+)", m.group(1) + "E")]


def classify(mangled):
    """('perturb' | 'update', template args or None for the generic kernels)"""
    if "zt_perturb_k" in mangled:
        return "perturb", template_args(mangled)
    if "zt_update_k" in mangled:
        return "update", template_args(mangled)
    return None, None


def lcg_values(n, seed, dtype):
    """n tensor elements of dtype, normal values in [-0.05, 0.05)."""
    out = bytearray()
    x = seed
    for _ in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        v = ((x >> 40) / float(1 << 24) - 0.5) * 0.1
        if v == 0.0:
            v = 0.01
        if dtype == F32:
            out += struct.pack("<f", v)
        elif dtype == F16:
            out += struct.pack("<H", f32_to_f16_bits(v))
        else:
            out += struct.pack("<H", f32_to_bf16_bits(v))
    return bytes(out)


def is_warp_kernel(instrs):
    """Whether the kernel shares Philox words across a warp (the Rademacher chunks of
    kernels/cuda/rademacher.cuh): it is then run as lane 0 of a one-warp grid."""
    return any(ins.base == "SHFL" for ins in instrs)


# 4-element blocks of a warp's chunk (kernels/cuda/rademacher.cuh), and lanes per warp
WARP_LANES, CHUNK_BLOCKS4 = 32, 1024


def warp_lane_of(block):
    """The lane that handles 4-element block `block` in kernels/cuda/rademacher.cuh's turns: block
    32*(4q + l/8) + 8w + l%8 of a chunk is lane l's."""
    return 8 * ((block // 32) % 4) + block % 8


def run_case(instrs, kparams, kind, generic, case, n):
    """Instructions one thread issues for n elements, and whether every output it owns was stored
    exactly once (and no other). A warp kernel's thread is lane 0 of one warp: it owns the 4-element
    blocks warp_lane_of gives to lane 0, one in 32."""
    mem = Memory()
    SRC, DST, STATE = 0x7000_0000_0000, 0x7100_0000_0000, 0x7200_0000_0000
    dist = case["dist"]
    terms = terms_struct(dist, [0x243F6A8885A308D3], [f32(1e-3)], generic)
    if kind == "perturb":
        src_t, dst_t = case["src"], case["dst"]
        mem.add(SRC, lcg_values(n, 1, src_t), "src")
        mem.add(DST, bytes(n * DTYPE_SIZE[dst_t]), "dst")
        if generic:
            n_blocks = (n + 3) // 4
            args = [scalar("Q", DST), scalar("i", dst_t), scalar("Q", SRC), scalar("i", src_t),
                    scalar("Q", 0), scalar("Q", n), scalar("Q", 0), scalar("Q", n_blocks), terms]
        else:
            args = [scalar("Q", DST), scalar("Q", SRC), span_struct(0, n), scalar("i", 1), terms]
        out_base, out_bytes = DST, n * DTYPE_SIZE[dst_t]
    else:
        dt, rule, sr = case["dtype"], case["rule"], case["sr"]
        rows = {MOMENTUM: 1, ADAMM: 3}.get(rule, 0)
        mem.add(SRC, lcg_values(n, 2, dt), "theta")
        state = bytearray()
        for r in range(rows):
            state += b"".join(struct.pack("<f", 0.01 * (r + 1)) for _ in range(n))
        mem.add(STATE, bytes(state) or bytes(16), "state")
        state_ptr = STATE if rows else 0
        if generic:
            args = [scalar("Q", SRC), scalar("i", dt), scalar("Q", n), scalar("Q", state_ptr),
                    terms, coeffs_struct(rule, True), scalar("i", sr),
                    scalar("Q", 0x13198A2E03707344), scalar("Q", 0)]
        else:
            args = [scalar("Q", SRC), scalar("Q", n), scalar("Q", state_ptr), terms,
                    coeffs_struct(rule, False), round_keys(0x13198A2E03707344), scalar("i", 1),
                    scalar("Q", 0)]
        out_base, out_bytes = SRC, n * DTYPE_SIZE[dt]
    warp = is_warp_kernel(instrs)
    cbank = bytearray(0x10000)
    struct.pack_into("<III", cbank, 0x0, WARP_LANES if warp else 1, 1, 1)  # blockDim
    struct.pack_into("<III", cbank, 0xC, 1, 1, 1)      # gridDim
    struct.pack_into("<I", cbank, 0x28, 0xFFF0)        # stack
    if sorted(kparams) != list(range(len(args))):
        raise SassError(f"{len(kparams)} parameters, expected {len(args)}")
    for ordinal, arg in enumerate(args):
        offset, size = kparams[ordinal]
        data = arg.bytes()
        if len(data) != size:
            raise SassError(f"parameter {ordinal}: {size} bytes in the object, {len(data)} here")
        cbank[PARAM_BASE + offset:PARAM_BASE + offset + size] = data
    m = Machine(instrs, cbank, mem)
    m.sregs = {"SR_TID.X": 0, "SR_CTAID.X": 0, "SR_TID.Y": 0, "SR_TID.Z": 0,
               "SR_LANEID": 0}
    m.R[1] = 0xFFF0
    m.run()
    stored = [mem.store_count.get(out_base + i, 0) for i in range(out_bytes)]
    if warp:
        size = out_bytes // n
        owned = [warp_lane_of(i // size // 4) == 0 for i in range(out_bytes)]
        return m.count, all(c == (1 if o else 0) for c, o in zip(stored, owned)), m.hits
    return m.count, all(c == 1 for c in stored), m.hits


def cases_for(kind, args, generic):
    """The specialisations a kernel stands for: all of them for a generic kernel."""
    if kind == "perturb":
        pairs = [(F32, F32), (F16, F16), (BF16, BF16), (F16, F32), (BF16, F32), (F32, F16),
                 (F32, BF16)]
        if generic:
            return [{"src": s, "dst": d, "dist": dist} for s, d in pairs
                    for dist in (GAUSS, RADEMACHER)]
        src, dst, dist = args
        return [{"src": src, "dst": dst, "dist": dist}] if (src, dst) in pairs else []
    if generic:
        out = []
        for dt in (F32, F16, BF16):
            for dist in (GAUSS, RADEMACHER):
                for rule in (SGD, SIGN, MOMENTUM, ADAMM):
                    for sr in ((0,) if dt == F32 else (0, 1)):
                        out.append({"dtype": dt, "dist": dist, "rule": rule, "sr": sr})
        return out
    dt, dist, rule, sr = args
    return [{"dtype": dt, "dist": dist, "rule": rule, "sr": sr}]


def case_key(kind, case):
    if kind == "perturb":
        return ("perturb", DTYPE_NAMES[case["src"]] + "->" + DTYPE_NAMES[case["dst"]],
                DIST_NAMES[case["dist"]])
    return ("update", DTYPE_NAMES[case["dtype"]] + (" sr" if case["sr"] else ""),
            DIST_NAMES[case["dist"]] + " " + RULE_NAMES[case["rule"]])


def chunk_round(n):
    """n rounded up to whole warp chunks (4096 elements), at least one."""
    chunk = CHUNK_BLOCKS4 * 4
    return max(chunk, (n + chunk - 1) // chunk * chunk)


def measure(build, cuobjdump, arch, n1, n2, only, profile=False):
    results = {}
    for unit in ("perturb", "update"):
        objs = glob.glob(os.path.join(build, "kernels", "cuda", "*.p", unit + ".cu.o"))
        if not objs:
            raise SassError(f"no {unit}.cu.o under {build}/kernels/cuda: build it first")
        sass, elf = disassemble(cuobjdump, objs[0], arch)
        functions, kparams = parse_functions(sass), parse_kparams(elf)
        for name, lines in functions.items():
            kind, args = classify(name)
            if kind is None:
                continue
            generic = args is None
            instrs = [Instr(a, t) for a, t in lines]
            for case in cases_for(kind, args, generic):
                key = case_key(kind, case)
                if only and not re.search(only, " ".join(key)):
                    continue
                # A warp kernel's lane 0 owns one 4-element block in 32: whole chunks, and its
                # own elements as the divisor (instructions a lane issues per element it owns).
                warp = is_warp_kernel(instrs)
                m1 = chunk_round(n1) if warp else n1
                m2 = m1 + chunk_round(n2 - n1) if warp else n2
                per = (m2 - m1) // WARP_LANES if warp else m2 - m1
                try:
                    c1, ok1, h1 = run_case(instrs, kparams[name], kind, generic, case, m1)
                    c2, ok2, h2 = run_case(instrs, kparams[name], kind, generic, case, m2)
                except SassError as e:
                    raise SassError(f"{name} {' '.join(key)}: {e}") from e
                if profile:
                    print(f"{' '.join(key)} ({name}): executions per {per} owned elements")
                    for ins, a, b in zip(instrs, h1, h2):
                        if b - a:
                            print(f"  {b - a:7d}  /*{ins.addr:04x}*/ {ins.text}")
                if not (ok1 and ok2):
                    raise SassError(f"{name} {key}: not every element stored exactly once")
                results[key] = {"per_element": (c2 - c1) / per,
                                "static": len(instrs), "generic": generic}
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", action="append",
                        help="build directory (repeatable; the first is 'after', the second "
                             "'before'); default: build")
    parser.add_argument("--cuobjdump", help="path of cuobjdump")
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("--n1", type=int, default=64)
    parser.add_argument("--n2", type=int, default=576)
    parser.add_argument("--only", help="regular expression on 'kernel dtypes distribution rule'")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--profile", action="store_true",
                        help="also print, per case, how often each instruction ran per n2 - n1 "
                             "elements (use with --only)")
    o = parser.parse_args()
    builds = o.build or ["build"]
    try:
        cuobjdump = find_tool("cuobjdump", o.cuobjdump)
        measured = [measure(b, cuobjdump, o.arch, o.n1, o.n2, o.only, o.profile)
                    for b in builds]
    except (SassError, subprocess.CalledProcessError) as e:
        print(f"sass_count: {e}", file=sys.stderr)
        return 1
    if o.json:
        print(json.dumps({b: {" ".join(k): v for k, v in m.items()}
                          for b, m in zip(builds, measured)}, indent=1))
        return 0
    keys = sorted(set().union(*[m.keys() for m in measured]))
    header = f"{'kernel':8} {'dtype':11} {'z / rule':22}" + "".join(
        f" {b[-16:]:>16}" for b in builds)
    print(f"SASS instructions per element, {o.arch}, one term, aligned, marginal over "
          f"{o.n2 - o.n1} elements")
    print(header)
    for k in keys:
        row = f"{k[0]:8} {k[1]:11} {k[2]:22}"
        for m in measured:
            row += f" {m[k]['per_element']:16.2f}" if k in m else f" {'-':>16}"
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
