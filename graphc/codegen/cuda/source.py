"""Loop kernels of the shared kernel form → Python source text of ``numba.cuda`` kernels.

A kernel without a reduction is a grid-stride loop over its flattened iteration space. A
reduction gives each output element a group of W threads (W a power of two, W = 1 when the
reduced extent is short): thread ``lane`` of a group combines elements lane, lane+W, ... in
order, then the group folds its W partials in shared memory with a fixed tree — the order
depends only on the kernel and the config, never on timing, and there are no atomics, so
results are bit-identical run to run.

Expressions become straight-line code, one temporary per node (memoized by node identity),
each hoisted to the outermost loop level whose variables it needs. A ``Guard`` becomes an
if/else whose loads run only where the guard holds (CUDA does not bounds-check). Every value
is explicitly cast to its IR dtype, so numba's promotions (int32 + int32 → int64, float32 *
float literal → float64) never leak into results and the simulator (numpy scalars) and a real
GPU compute in the same types. ``random_uniform`` uses only int64 arithmetic on values below
2**49 (32-bit multiplies split into 16-bit halves), so it is bit-exact with
``graphc.ir.ops.misc`` on both.

``CudaConfig`` holds every schedule parameter (block sizes, grid caps, reduction widths, GEMM
tiles): one set for a real GPU, a small one for the simulator (Python threads are slow).
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field, replace

import numpy as np

from graphc.codegen.kernel import (Acc, Const, Guard, IndexValue, IxAdd, IxDiv, IxMod, IxMul,
                                   Lit, Load, LoopKernel, Op, Random, Var, walk_exprs)
from graphc.errors import GraphcError
from graphc.ir.dtypes import DType

M32 = 0xFFFFFFFF

# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class CudaConfig:
    """Schedule parameters of every generated kernel (see the module docstring)."""
    simulator: bool = False
    block: int = 256                # threads per block of grid-stride kernels
    max_blocks: int = 132 * 32      # grid cap (grid-stride loops cover the rest)
    red_serial_max: int = 32        # reduced extent up to which one thread does an output
    red_min_items: int = 8          # elements per thread before a group gets more threads
    red_max_threads: int = 256      # W: most threads per output (power of two)
    red_block_threads: int = 256    # W * G: threads per block of a block reduction
    mm_tile: int = 128              # GEMM output tile (TM = TN), multiple of mm_reg
    mm_tile_k: int = 8              # GEMM K slab staged in shared memory per step
    mm_reg: int = 8                 # GEMM register tile per thread (mm_reg x mm_reg)
    mm_small_tile: int = 64         # tile for GEMMs with too few big tiles to fill the GPU
    mm_small_reg: int = 4           # its register tile (64/4 = 16x16 threads, as the big one)
    sm_count: int = 132             # multiprocessors (grid sizing; H100 SXM has 132)

    def __post_init__(self):
        for name in ("red_max_threads", "red_block_threads"):
            v = getattr(self, name)
            if v < 1 or v & (v - 1):
                raise ValueError(f"CudaConfig.{name} must be a power of two, got {v}")
        if self.mm_tile % self.mm_reg or self.mm_small_tile % self.mm_small_reg:
            raise ValueError("CudaConfig: GEMM tiles must be multiples of mm_reg")


GPU_CONFIG = CudaConfig()
# The simulator runs each CUDA thread as a Python thread and every syncthreads as a
# rendezvous of all of them: few threads per block and few blocks keep tests fast, and the
# thresholds still send the occasional reduction through the shared-memory tree.
SIM_CONFIG = CudaConfig(simulator=True, block=32, max_blocks=2, red_serial_max=64,
                        red_min_items=4, red_max_threads=8, red_block_threads=32,
                        mm_tile=16, mm_tile_k=16, mm_reg=4, mm_small_tile=8, mm_small_reg=2,
                        sm_count=1)


def default_config(**overrides) -> CudaConfig:
    """The config for this process: the simulator's when it is active, else the GPU's (with
    the real multiprocessor count when a GPU is present)."""
    from graphc.codegen.cuda import simulator_enabled
    if simulator_enabled():
        cfg = SIM_CONFIG
    else:
        cfg = GPU_CONFIG
        try:
            from numba import cuda
            if cuda.is_available():
                sms = int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
                cfg = replace(cfg, sm_count=sms, max_blocks=sms * 32)
        except Exception:   # no driver: keep the defaults (source text only)
            pass
    return replace(cfg, **overrides) if overrides else cfg

# ----------------------------------------------------------------------------- kernel text


@dataclass
class KernelSource:
    """One generated kernel: its module text and how to launch it."""
    name: str                   # the program's kernel name (k3_add)
    fn_name: str                # the kernel function in ``text``
    text: str                   # a self-contained module defining the kernel
    args: list                  # buffer ids, in parameter order
    arg_dtypes: list            # their DTypes
    grid: tuple                 # (x, y, z)
    block: tuple                # (x, y, z)
    shared_bytes: int           # static shared memory per block
    schedule: str               # what the kernel does, for the launch plan
    work: int = 1               # output elements; 0 means nothing to launch
    meta: dict = field(default_factory=dict)


def _tag(name: str) -> str:
    tail = name.split("_", 1)[1] if "_" in name else name
    return re.sub(r"[^A-Za-z0-9_]", "_", tail)[:40] or "kernel"


def finish_source(kname: str, params: list[str], body: list[str], args, arg_dtypes, grid,
                  block, shared, schedule, work, meta=None) -> KernelSource:
    """Assemble a kernel module; the function name is derived from a hash of the text, so
    identical kernels (same shapes, same code) share one text and one compiled kernel."""
    placeholder = "__KERNEL__"
    lines = [f"def {placeholder}({', '.join(params)}):"]
    lines.extend("    " + ln for ln in body)
    text = "\n".join(lines) + "\n"
    digest = hashlib.sha1(text.encode()).hexdigest()[:10]
    fn_name = f"k_{_tag(kname)}_{digest}"
    return KernelSource(kname, fn_name, text.replace(placeholder, fn_name), list(args),
                        list(arg_dtypes), tuple(grid), tuple(block), int(shared), schedule,
                        int(work), dict(meta or {}))


def indent(lines, n=1):
    pad = "    " * n
    return [pad + ln for ln in lines]

# ----------------------------------------------------------------------------- dtypes

NP = {DType.f32: "np.float32", DType.f64: "np.float64", DType.i32: "np.int32",
      DType.i64: "np.int64", DType.u32: "np.uint32"}


def np_ctor(dt: DType) -> str:
    if dt == DType.bool:
        raise GraphcError("no scalar constructor for bool")
    return NP[dt]


def literal(value, dt: DType) -> str:
    """A typed scalar literal (numba types ``np.float32(0.5)`` as float32, not float64)."""
    if dt == DType.bool:
        return "True" if bool(value) else "False"
    if dt.is_float:
        v = float(value)
        if math.isnan(v):
            body = "math.nan"
        elif math.isinf(v):
            # -ctor(inf), not ctor(-inf): no float64 arithmetic in a float32 kernel.
            return f"{np_ctor(dt)}(math.inf)" if v > 0 else f"(-{np_ctor(dt)}(math.inf))"
        else:
            body = repr(v)
        return f"{np_ctor(dt)}({body})"
    v = int(value)
    if dt == DType.u32:
        v &= M32
    return f"{np_ctor(dt)}({v})"


def cast(src: str, sdt: DType, ddt: DType) -> str:
    """``src`` (of dtype ``sdt``) as ``ddt`` with numpy ``astype`` semantics (float → int
    truncates toward zero; → bool is ``!= 0``, NaN is True; → u32 wraps through int64)."""
    if sdt == ddt:
        return src
    if ddt == DType.bool:
        return f"({src} != 0)"
    if sdt == DType.bool:
        return f"({literal(1, ddt)} if {src} else {literal(0, ddt)})"
    if ddt == DType.u32:
        # Through int64 and a mask: never a negative value into an unsigned conversion
        # (poison on the GPU, OverflowError for numpy scalars).
        return f"np.uint32(np.int64({src}) & {M32})"
    return f"{np_ctor(ddt)}({src})"


def min_literal(dt: DType) -> str:
    if dt.is_float:
        return literal(-math.inf, dt)
    if dt == DType.u32:
        return literal(0, dt)
    return literal(int(np.iinfo(dt.np).min), dt)

# ----------------------------------------------------------------------------- random bits


def _mul32(x: str, c: int) -> str:
    """``(x * c) mod 2**32`` for 0 <= x < 2**32 without any intermediate >= 2**49."""
    lo, hi = c & 0xFFFF, (c >> 16) & 0xFFFF
    return f"((({x} * {lo}) + ((({x} * {hi}) & 0xFFFF) << 16)) & {M32})"


def _rotl(x: str, r: int) -> str:
    return f"((({x} << {r}) | ({x} >> {32 - r})) & {M32})"


def _fmix32_lines(h: str) -> list[str]:
    return [f"{h} = {h} ^ ({h} >> 16)", f"{h} = {_mul32(h, 0x85EBCA6B)}",
            f"{h} = {h} ^ ({h} >> 13)", f"{h} = {_mul32(h, 0xC2B2AE35)}",
            f"{h} = {h} ^ ({h} >> 16)"]


def random_key_lines(key: str, seed: str, counter: str, salt: int) -> list[str]:
    """Lines setting ``key`` to MurmurHash3_x86_32 of (seed, counter) as little-endian
    int64s with hash seed ``salt``. Straight-line code rather than device functions: a
    device function without a signature needs a driver even to be type-checked."""
    lines = [f"# the stream key of random_uniform(salt={int(salt) & M32}): murmur3(seed, step)",
             f"{key} = {int(salt) & M32}"]
    k = f"{key}_w"
    for word in (f"{seed} & {M32}", f"({seed} >> 32) & {M32}", f"{counter} & {M32}",
                 f"({counter} >> 32) & {M32}"):
        lines += [f"{k} = {word}", f"{k} = {_mul32(k, 0xCC9E2D51)}", f"{k} = {_rotl(k, 15)}",
                  f"{k} = {_mul32(k, 0x1B873593)}", f"{key} = {key} ^ {k}",
                  f"{key} = {_rotl(key, 13)}",
                  f"{key} = ({key} * 5 + {0xE6546B64}) & {M32}"]
    lines.append(f"{key} = {key} ^ 16")
    return lines + _fmix32_lines(key)


def random_bits_lines(h: str, key: str, flat: str) -> list[str]:
    """Lines setting ``h`` to the uint32 bits of element ``flat`` of stream ``key``."""
    x = f"{h}_i"
    lines = ["# random_uniform bits of this element (graphc.ir.ops.misc)",
             f"{x} = {flat} & {M32}",
             f"{h} = {key} ^ (({_mul32(x, 0x9E3779B1)} + {0x7F4A7C15}) & {M32})"]
    lines += _fmix32_lines(h)
    lines.append(f"{h} = ({h} + {key}) & {M32}")
    return lines + _fmix32_lines(h)


# ----------------------------------------------------------------------------- namespace


def kernel_namespace(simulator: bool) -> dict:
    """Globals of a generated module. The math names are bound per mode: on the GPU numba's
    ``math`` (libdevice ``expf`` for float32); in the simulator numpy's ufuncs, which keep
    float32 in float32 and give inf/NaN where Python's ``math`` would raise."""
    from numba import cuda
    ns = {"cuda": cuda, "np": np, "math": math}
    if simulator:
        ns.update(_exp=np.exp, _log=np.log, _log1p=np.log1p, _sqrt=np.sqrt, _tanh=np.tanh,
                  _floor=np.floor, _sin=np.sin, _cos=np.cos, _erf=math.erf)
    else:
        ns.update(_exp=math.exp, _log=math.log, _log1p=math.log1p, _sqrt=math.sqrt,
                  _tanh=math.tanh, _floor=math.floor, _sin=math.sin, _cos=math.cos,
                  _erf=math.erf)
    return ns

# ----------------------------------------------------------------------------- expressions

ACC = -1    # the pseudo loop variable of ``Acc``: available only where stores are written


class Block:
    """A straight-line region: its lines, the temporaries it defined (memo) and the loop
    variables available in it. A barrier block (a guard branch) keeps its nodes inside."""
    __slots__ = ("lines", "memo", "avail", "barrier")

    def __init__(self, avail, barrier=False):
        self.lines: list[str] = []
        self.memo: dict = {}
        self.avail = frozenset(avail)
        self.barrier = barrier


class Emitter:
    """Renders ``Expr``/``Ix`` trees into blocks of Python source (see the module docstring).

    ``var_names[axis]`` is the source text of loop variable ``axis``; ``acc`` the name of the
    accumulated value; ``arg(buffer_id)`` the kernel parameter of a buffer."""

    def __init__(self, buffers, arg, var_names: dict, acc: str | None = None, prefix="v"):
        self.buffers = buffers
        self.arg = arg
        self.var_names = var_names
        self.acc = acc
        self.prefix = prefix
        self.uses_random = False
        self._n = 0
        self._deps: dict = {}
        self._keep: list = []        # keeps memoized nodes alive (memo keys are ids)

    def fresh(self, p=None) -> str:
        self._n += 1
        return f"{p or self.prefix}{self._n}"

    # -- dependencies -------------------------------------------------------------------
    def ix_deps(self, ix) -> frozenset:
        if isinstance(ix, Var):
            return frozenset((ix.axis,))
        if isinstance(ix, Lit):
            return frozenset()
        if isinstance(ix, IxAdd):
            return self.ix_deps(ix.a) | self.ix_deps(ix.b)
        if isinstance(ix, (IxMul, IxDiv, IxMod)):
            return self.ix_deps(ix.a)
        raise TypeError(ix)

    def deps(self, e) -> frozenset:
        hit = self._deps.get(id(e))
        if hit is not None:
            return hit
        if isinstance(e, Load):
            d = self.ix_deps(e.index)
        elif isinstance(e, Const):
            d = frozenset()
        elif isinstance(e, Op):
            d = frozenset().union(*(self.deps(a) for a in e.args)) if e.args else frozenset()
        elif isinstance(e, Guard):
            d = self.deps(e.then) | self.deps(e.otherwise)
            for ix, _, _ in e.conds:
                d = d | self.ix_deps(ix)
        elif isinstance(e, IndexValue):
            d = self.ix_deps(e.index)
        elif isinstance(e, Random):
            d = self.deps(e.seed) | self.deps(e.counter) | self.ix_deps(e.flat)
        elif isinstance(e, Acc):
            d = frozenset((ACC,))
        else:
            raise TypeError(f"unknown expression node {e!r}")
        self._deps[id(e)] = d
        self._keep.append(e)
        return d

    # -- placement ----------------------------------------------------------------------
    @staticmethod
    def _target(chain, deps) -> int:
        lo = 0
        for i, b in enumerate(chain):
            if b.barrier:
                lo = i
        for i in range(lo, len(chain)):
            if deps <= chain[i].avail:
                return i
        missing = sorted(deps - chain[-1].avail)
        raise GraphcError(f"cuda codegen: loop variable(s) {missing} used where they are "
                          f"not defined")

    @staticmethod
    def _lookup(chain, key):
        for b in reversed(chain):
            hit = b.memo.get(key)
            if hit is not None:
                return hit
        return None

    # -- indices ------------------------------------------------------------------------
    def ix(self, ix, chain) -> str:
        if isinstance(ix, Var):
            return self.var_names[ix.axis]
        if isinstance(ix, Lit):
            return str(int(ix.value))
        if isinstance(ix, IxAdd):
            return f"({self.ix(ix.a, chain)} + {self.ix(ix.b, chain)})"
        if isinstance(ix, IxMul):
            return f"({self.ix(ix.a, chain)} * {ix.c})"
        if isinstance(ix, (IxDiv, IxMod)):
            key = ("ix", ix)
            hit = self._lookup(chain, key)
            if hit is not None:
                return hit
            t = self._target(chain, self.ix_deps(ix))
            sub = chain[:t + 1]
            inner = self.ix(ix.a, sub)
            name = self.fresh("x")
            op = "//" if isinstance(ix, IxDiv) else "%"
            sub[-1].lines.append(f"{name} = {inner} {op} {ix.c}")
            sub[-1].memo[key] = name
            return name
        raise TypeError(ix)

    # -- values -------------------------------------------------------------------------
    def value(self, e, chain) -> str:
        """The source name (or literal) holding ``e``'s value, of dtype ``e.dtype``."""
        if isinstance(e, Const):
            return literal(e.value.item() if isinstance(e.value, np.generic) else e.value,
                           e.dtype)
        if isinstance(e, Acc):
            if self.acc is None:
                raise GraphcError("cuda codegen: 'acc' used outside a reduction's stores")
            return self.acc
        key = id(e)
        hit = self._lookup(chain, key)
        if hit is not None:
            return hit
        t = self._target(chain, self.deps(e))
        sub = chain[:t + 1]
        name = self._render(e, sub)
        sub[-1].memo[key] = name
        return name

    def _render(self, e, chain) -> str:
        blk = chain[-1]
        if isinstance(e, Load):
            idx = self.ix(e.index, chain)
            name = self.fresh()
            buf = self.buffers[e.buffer]
            blk.lines.append(f"{name} = {cast(f'{self.arg(e.buffer)}[{idx}]', buf.dtype, e.dtype)}")
            return name
        if isinstance(e, IndexValue):
            name = self.fresh()
            blk.lines.append(f"{name} = {cast(self.ix(e.index, chain), DType.i64, e.dtype)}")
            return name
        if isinstance(e, Op):
            args = [self.value(a, chain) for a in e.args]
            dts = [a.dtype for a in e.args]
            expr = self._op(e.op, args, dts, e.dtype, e.attrs, blk)
            name = self.fresh()
            blk.lines.append(f"{name} = {expr}")
            return name
        if isinstance(e, Guard):
            conds = []
            for ix, lo, hi in e.conds:
                s = self.ix(ix, chain)
                conds.append(f"{s} >= {int(lo)} and {s} < {int(hi)}")
            tb, eb = Block(blk.avail, barrier=True), Block(blk.avail, barrier=True)
            tv = self.value(e.then, chain + [tb])
            ev = self.value(e.otherwise, chain + [eb])
            name = self.fresh()
            blk.lines.append(f"if {' and '.join(conds)}:")
            blk.lines.extend(indent(tb.lines))
            blk.lines.append(f"    {name} = {cast(tv, e.then.dtype, e.dtype)}")
            blk.lines.append("else:")
            blk.lines.extend(indent(eb.lines))
            blk.lines.append(f"    {name} = {cast(ev, e.otherwise.dtype, e.dtype)}")
            return name
        if isinstance(e, Random):
            self.uses_random = True
            seed, counter = self.value(e.seed, chain), self.value(e.counter, chain)
            kkey = ("rkey", id(e.seed), id(e.counter), e.salt)
            key = self._lookup(chain, kkey)
            if key is None:
                t = self._target(chain, self.deps(e.seed) | self.deps(e.counter))
                sub = chain[:t + 1]
                key = self.fresh("key")
                # int(): Python ints in the simulator (no numpy overflow warnings), int64 on
                # the GPU; every intermediate stays below 2**49 either way.
                sub[-1].lines += [f"{key}_s = int({seed})", f"{key}_c = int({counter})"]
                sub[-1].lines += random_key_lines(key, f"{key}_s", f"{key}_c", e.salt)
                sub[-1].memo[kkey] = key
            flat = self.ix(e.flat, chain)
            h = self.fresh("h")
            blk.lines += random_bits_lines(h, key, flat)
            name = self.fresh()
            # (h >> 8) < 2**24 is exact in float32, and so is the product with 2**-24.
            ctor = np_ctor(e.dtype)
            blk.lines.append(f"{name} = {ctor}({h} >> 8) * {ctor}({2.0 ** -24!r})")
            return name
        raise TypeError(f"unknown expression node {e!r}")

    # -- elementwise ops ----------------------------------------------------------------
    def _op(self, name, args, dts, dt: DType, attrs, blk) -> str:
        x = args[0] if args else None
        xdt = dts[0] if dts else None
        if name == "cast":
            return cast(x, xdt, dt)
        if name in _ARITH:
            sym = _ARITH[name]
            a, b = args
            if xdt.is_float:
                return f"({a} {sym} {b})"
            if xdt == DType.u32:
                return f"np.uint32((np.int64({a}) {sym} np.int64({b})) & {M32})"
            return f"{np_ctor(xdt)}({a} {sym} {b})"
        if name == "div":
            if not xdt.is_float:
                raise GraphcError("div: integer division is not a graphc primitive")
            return f"({args[0]} / {args[1]})"
        if name == "pow":
            if not xdt.is_float:
                raise GraphcError("pow: integer pow is not a graphc primitive")
            return f"({args[0]} ** {args[1]})"
        if name in ("maximum", "minimum"):
            a, b = args
            cmp = ">=" if name == "maximum" else "<="
            if xdt.is_float:
                # numpy: NaN from either side wins.
                return f"({a} if ({a} {cmp} {b} or {a} != {a}) else {b})"
            return f"({a} if {a} {cmp} {b} else {b})"
        if name in _CMP:
            return f"({args[0]} {_CMP[name]} {args[1]})"
        if name == "logical_and":
            return f"({args[0]} and {args[1]})"
        if name == "logical_or":
            return f"({args[0]} or {args[1]})"
        if name == "logical_not":
            return f"(not {x})"
        if name == "select":
            c, a, b = args
            return f"({a} if {c} else {b})"
        if name == "neg":
            if xdt.is_float:
                return f"(-{x})"
            if xdt == DType.u32:
                return f"np.uint32((-np.int64({x})) & {M32})"
            return f"{np_ctor(xdt)}(-{x})"
        if name == "abs":
            if xdt == DType.u32:
                return x
            return f"abs({x})" if xdt.is_float else f"{np_ctor(xdt)}(abs({x}))"
        if name == "sign":
            one, zero = literal(1, xdt), literal(0, xdt)
            if xdt == DType.u32:
                return f"({one} if {x} != 0 else {zero})"
            mone = literal(-1, xdt)
            # Floats keep x itself for 0, -0 and NaN (numpy's sign does).
            rest = x if xdt.is_float else zero
            return f"({one} if {x} > 0 else ({mone} if {x} < 0 else {rest}))"
        if not (xdt is not None and xdt.is_float):
            raise GraphcError(f"{name}: expected a float operand, got {xdt}")
        ctor = np_ctor(dt)
        if name in _UNARY:
            return f"{ctor}({_UNARY[name]}({x}))"
        if name == "sigmoid":
            # Stable both ways, as the reference: exp of -|x| only.
            e = self.fresh()
            one = literal(1.0, dt)
            blk.lines.append(f"{e} = {ctor}(_exp(-abs({x})))")
            return f"({one} / ({one} + {e}) if {x} >= 0 else {e} / ({one} + {e}))"
        raise GraphcError(f"the CUDA backend has no rendering for op '{name}'")


_ARITH = {"add": "+", "sub": "-", "mul": "*"}
_CMP = {"greater": ">", "greater_equal": ">=", "less": "<", "less_equal": "<=",
        "equal": "==", "not_equal": "!="}
_UNARY = {"exp": "_exp", "log": "_log", "log1p": "_log1p", "sqrt": "_sqrt", "tanh": "_tanh",
          "floor": "_floor", "erf": "_erf", "sin": "_sin", "cos": "_cos"}

# ----------------------------------------------------------------------------- helpers


class ArgNamer:
    """Kernel parameters ``a0, a1, ...`` in order of first use: the text then depends only
    on the kernel's structure, not on buffer numbering, so identical kernels share code."""

    def __init__(self, buffers):
        self.buffers = buffers
        self.ids: list[int] = []
        self._names: dict[int, str] = {}

    def __call__(self, bid: int) -> str:
        name = self._names.get(bid)
        if name is None:
            name = self._names[bid] = f"a{len(self.ids)}"
            self.ids.append(bid)
        return name

    @property
    def params(self) -> list[str]:
        return [self._names[b] for b in self.ids]

    @property
    def dtypes(self) -> list:
        return [self.buffers[b].dtype for b in self.ids]


def decode(flat: str, shape, names: list[str]) -> list[str]:
    """Lines setting ``names[k]`` to the row-major coordinates of ``flat`` in ``shape``
    (axes of extent 1 get no line: their name should be ``"0"``)."""
    lines = []
    strides, acc = [], 1
    for d in reversed(tuple(shape)):
        strides.append(acc)
        acc *= d
    strides.reverse()
    nontrivial = [k for k, d in enumerate(shape) if d != 1]
    for k in nontrivial:
        st, d = strides[k], shape[k]
        if len(nontrivial) == 1:
            expr = flat if st == 1 else f"{flat} // {st}"
        elif k == nontrivial[0]:
            expr = f"{flat} // {st}"
        elif st == 1:
            expr = f"{flat} % {d}"
        else:
            expr = f"({flat} // {st}) % {d}"
        lines.append(f"{names[k]} = {expr}")
    return lines


def coord_names(shape, prefix: str) -> list[str]:
    return ["0" if d == 1 else f"{prefix}{k}" for k, d in enumerate(shape)]


def grid_stride(n_items: int, cfg: CudaConfig, per_block: int) -> int:
    return max(1, min(-(-n_items // per_block), cfg.max_blocks))


def threads_for(n: int, cfg: CudaConfig) -> int:
    """Threads per block of a grid-stride kernel over ``n`` items: the config's block, or
    fewer (rounded up to a warp on a GPU) when there is less work."""
    if n >= cfg.block:
        return cfg.block
    if cfg.simulator:
        return max(1, n)
    return max(32, -(-n // 32) * 32)

# ----------------------------------------------------------------------------- loop kernels


def _prod(shape) -> int:
    return int(np.prod(shape)) if len(shape) else 1


def _unit_stride_axes(ix, out: set) -> None:
    """Loop variables with coefficient 1 in a flat index (through +, never through /, %)."""
    if isinstance(ix, Var):
        out.add(ix.axis)
    elif isinstance(ix, IxAdd):
        _unit_stride_axes(ix.a, out)
        _unit_stride_axes(ix.b, out)


def reduction_is_contiguous(value, red_axes) -> bool:
    """Whether some load of a reduction's element walks memory with unit stride along a
    reduction axis (a row sum): then a group's lanes should be adjacent threads. Otherwise
    (a column sum: bias gradients) adjacent threads should take adjacent outputs, so that a
    warp's loads coalesce."""
    red_axes = set(red_axes)
    for e in walk_exprs([value]):
        if isinstance(e, Load):
            unit: set = set()
            _unit_stride_axes(e.index, unit)
            if unit & red_axes:
                return True
    return False


def block_thread_ids(W: int, G: int, lanes_fast: bool) -> list[str]:
    """``tid``, ``lane`` (0..W-1 within an output's group) and ``g`` (the group) of a block
    of W*G threads; with ``lanes_fast`` a group is W adjacent threads, else its lanes are G
    apart and adjacent threads serve adjacent outputs."""
    lines = ["tid = cuda.threadIdx.x"]
    if G == 1:
        return lines + ["lane = tid", "g = 0"]
    if lanes_fast:
        return lines + [f"lane = tid % {W}", f"g = tid // {W}"]
    return lines + [f"lane = tid // {G}", f"g = tid % {G}"]


def reduction_width(R: int, cfg: CudaConfig) -> int:
    """W, the threads that share one output of a reduction over ``R`` elements."""
    if R <= cfg.red_serial_max:
        return 1
    w = 1
    while w < cfg.red_max_threads and w * cfg.red_min_items < R:
        w *= 2
    return w


def column_width(W: int, nout: int, cfg: CudaConfig) -> int:
    """W for a reduction whose adjacent outputs are adjacent in memory (outputs fastest):
    leave room in the block for up to a warp of outputs, so a warp's loads coalesce."""
    if W <= 1:
        return W
    outs = 1
    while outs < min(nout, 32):
        outs *= 2
    return max(2, min(W, cfg.red_block_threads // outs))


def render_loop_kernel(k: LoopKernel, buffers, cfg: CudaConfig) -> KernelSource:
    """The ``numba.cuda`` source of one loop kernel (see the module docstring)."""
    if k.reduction is None:
        return _render_elementwise(k, buffers, cfg)
    return _render_reduction(k, buffers, cfg)


def _stores(em: Emitter, k: LoopKernel, chain) -> None:
    blk = chain[-1]
    for st in k.stores:
        val = em.value(st.value, chain)
        idx = em.ix(st.index, chain)
        buf = em.buffers[st.buffer].dtype
        blk.lines.append(f"{em.arg(st.buffer)}[{idx}] = {cast(val, st.value.dtype, buf)}")


def _render_elementwise(k: LoopKernel, buffers, cfg) -> KernelSource:
    n = _prod(k.shape)
    names = coord_names(k.shape, "i")
    argn = ArgNamer(buffers)
    em = Emitter(buffers, argn, dict(enumerate(names)))
    # The prologue holds what depends on no loop variable (scalar loads such as the RNG's
    # seed and step, the stream key): computed once per thread, not once per element.
    pro = Block(())
    par = Block(range(len(k.shape)))
    _stores(em, k, [pro, par])
    threads = threads_for(n, cfg)
    body = pro.lines + [f"for o in range(cuda.blockIdx.x * cuda.blockDim.x + "
                        f"cuda.threadIdx.x, {n}, cuda.gridDim.x * cuda.blockDim.x):"]
    body += indent(decode("o", k.shape, names) + par.lines)
    grid = grid_stride(n, cfg, threads)
    return finish_source(k.name, argn.params, body, argn.ids, argn.dtypes,
                         (grid, 1, 1), (threads, 1, 1), 0,
                         f"elementwise over {n}: grid-stride, 1 thread/element", n)


def _combine_serial(comb: str, acc: str, v: str, dt: DType) -> str:
    if comb == "sum":
        return f"{acc} = {cast(f'{acc} + {v}', dt, dt) if not dt.is_float else f'{acc} + {v}'}"
    if comb == "max":
        nan = f" or {acc} != {acc}" if dt.is_float else ""
        return f"{acc} = {acc} if ({acc} >= {v}{nan}) else {v}"
    raise GraphcError(comb)


def _render_reduction(k: LoopKernel, buffers, cfg) -> KernelSource:
    red = k.reduction
    npar = len(k.shape)
    nout = _prod(k.shape)
    R = _prod(red.extents)
    dt = red.dtype
    comb = red.combiner
    if comb not in ("sum", "max", "argmax"):
        raise GraphcError(f"cuda codegen: unknown reduction combiner '{comb}'")
    if comb == "sum" and dt == DType.bool:
        raise GraphcError("cuda codegen: sum of bool is not a primitive")
    lanes_fast = reduction_is_contiguous(red.value, range(npar, npar + len(red.extents)))
    W = reduction_width(R, cfg)
    if not lanes_fast:
        W = column_width(W, nout, cfg)
    pnames = coord_names(k.shape, "i")
    rnames = coord_names(red.extents, "j")
    var_names = dict(enumerate(pnames))
    var_names.update({npar + q: nm for q, nm in enumerate(rnames)})
    argn = ArgNamer(buffers)
    acc_name = "bidx" if comb == "argmax" else "acc"
    em = Emitter(buffers, argn, var_names, acc=acc_name)
    par_vars = set(range(npar))
    pro = Block(())
    par = Block(par_vars)
    inner = Block(par_vars | set(range(npar, npar + len(red.extents))))
    v = em.value(red.value, [pro, par, inner])
    v = cast(v, red.value.dtype, dt)
    # The per-thread update, over elements in increasing order.
    if comb == "argmax":
        nan = f" or ({v} != {v} and best == best)" if dt.is_float else ""
        update = [f"if bidx == {R} or {v} > best{nan}:", f"    best = {v}", "    bidx = r"]
        init = [f"best = {min_literal(dt)}", f"bidx = {R}"]
    else:
        update = [_combine_serial(comb, "acc", v, dt)]
        init = [f"acc = {literal(0, dt) if comb == 'sum' else min_literal(dt)}"]
    rloop = ([f"for r in range({R}):" if W == 1 else f"for r in range(lane, {R}, {W}):"]
             + indent(decode("r", red.extents, rnames) + inner.lines + update))
    ctype = np_ctor(dt)
    if W == 1:
        threads = threads_for(nout, cfg)
        post = Block(par_vars | {ACC})
        _stores(em, k, [pro, par, post])
        body = pro.lines + [f"for o in range(cuda.blockIdx.x * cuda.blockDim.x + "
                            f"cuda.threadIdx.x, {nout}, cuda.gridDim.x * cuda.blockDim.x):"]
        body += indent(decode("o", k.shape, pnames) + par.lines + init + rloop + post.lines)
        grid = grid_stride(nout, cfg, threads)
        schedule = f"reduce {comb} of {R} into {nout}: 1 thread/output, sequential"
        return finish_source(k.name, argn.params, body, argn.ids, argn.dtypes,
                             (grid, 1, 1), (threads, 1, 1), 0, schedule, nout)
    # W threads per output, G outputs per block, a fixed shared-memory tree.
    G = max(1, min(cfg.red_block_threads // W, nout))
    WG = W * G
    post = Block(par_vars | {ACC}, barrier=True)
    _stores(em, k, [post])
    body = [f"sv = cuda.shared.array({WG}, {ctype})"] + pro.lines
    shared = WG * dt.itemsize
    if comb == "argmax":
        body.append(f"si = cuda.shared.array({WG}, np.int64)")
        shared += WG * 8
    body += block_thread_ids(W, G, lanes_fast)
    body.append(f"for base in range(cuda.blockIdx.x * {G}, {nout}, cuda.gridDim.x * {G}):")
    loop = ["o = base + g"] + decode("o", k.shape, pnames) + init
    work = par.lines + rloop
    loop += ([f"if o < {nout}:"] + indent(work)) if G > 1 else work
    if comb == "argmax":
        loop += ["sv[tid] = best", "si[tid] = bidx"]
    else:
        loop += ["sv[tid] = acc"]
    loop.append("cuda.syncthreads()")
    s = W // 2
    while s >= 1:
        p = s if lanes_fast else s * G     # the partner: lane + s of the same output
        loop.append(f"if lane < {s}:")
        if comb == "sum":
            loop.append(f"    sv[tid] = {cast(f'sv[tid] + sv[tid + {p}]', dt, dt)}")
        elif comb == "max":
            nan = " or av != av" if dt.is_float else ""
            loop += ["    av = sv[tid]", f"    bv = sv[tid + {p}]",
                     f"    sv[tid] = av if (av >= bv{nan}) else bv"]
        else:
            # b beats a: a larger value, a NaN over a number (numpy: the first NaN wins),
            # or the same value (or both NaN) at a smaller index; R marks "no element".
            fl = dt.is_float
            beats = (f"bi != {R} and (ai == {R} or bv > av"
                     + (" or (bv != bv and av == av)" if fl else "")
                     + " or (bi < ai and (bv == av" + (" or (bv != bv and av != av)" if fl else "")
                     + ")))")
            loop += ["    av = sv[tid]", "    ai = si[tid]", f"    bv = sv[tid + {p}]",
                     f"    bi = si[tid + {p}]", f"    if {beats}:", "        sv[tid] = bv",
                     "        si[tid] = bi"]
        loop.append("cuda.syncthreads()")
        s //= 2
    fin = ["bidx = si[tid]"] if comb == "argmax" else ["acc = sv[tid]"]
    loop += [f"if lane == 0 and o < {nout}:" if G > 1 else "if lane == 0:"]
    loop += indent(fin + post.lines)
    # The next output reuses sv: nobody may overwrite it before lane 0 has read it.
    loop.append("cuda.syncthreads()")
    body += indent(loop)
    grid = grid_stride(nout, cfg, G)
    schedule = (f"reduce {comb} of {R} into {nout}: {W} threads/output x {G} outputs/block "
                f"({'lanes' if lanes_fast else 'outputs'} fastest), shared-memory tree")
    return finish_source(k.name, argn.params, body, argn.ids, argn.dtypes,
                         (grid, 1, 1), (WG, 1, 1), shared, schedule, nout,
                         {"W": W, "G": G, "lanes_fast": lanes_fast})
