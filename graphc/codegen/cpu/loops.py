"""A ``LoopKernel`` (graphc.codegen.kernel) rendered as one LLVM function.

``void @k(ptr noalias %b<i>..., i64 %lo, i64 %hi)``: one pointer per buffer the kernel
touches (constants are module globals), and the [lo, hi) range of its outermost non-unit
parallel axis, so program.py can split a kernel across threads. The body is a loop nest over
the parallel axes (innermost last) plus, for a reduction, inner loops with an accumulator.

Schedule, decided here from the kernel alone:
- ``coalesce``: size-1 axes vanish and adjacent axes every index uses as one row-major axis
  merge (an elementwise kernel over [32,8,8,16] is one loop of 8192), so inner loops are
  long enough to vectorize.
- A reduction whose innermost parallel axis walks a load contiguously is *interchanged*:
  that axis runs inside the reduction loops with one accumulator per element (a stack
  array), so bias gradients and the conv fallbacks vectorize across it while every
  element still sums in its fixed order.
- Outer loops carry ``llvm.loop.vectorize.enable=false``: O3 fully unrolls short inner
  loops, and the loop vectorizer would then vectorize the enclosing loop with gathers;
  the unrolled contiguous body goes to the SLP vectorizer instead.

Each expression node is computed once per iteration (memoized by node identity, the form is
a DAG) in the outermost loop its variables allow, so loop-invariant loads and scalars sit
outside the inner loops without relying on LICM proving them safe. Expression code is
straight-line (guards are selects over clamped loads; a load's loop-invariant part is what
gets clamped, so it stays a contiguous vector load), which keeps inner loops in the shape
LLVM's vectorizer wants. float32 exp/tanh/sigmoid are inline polynomials (vectorizable, 2
ulp); other transcendentals are libm calls. Floating-point semantics follow numpy: only
``contract`` (FMA fusion) on add/sub/mul, never ``reassoc``/``nnan``/``ninf``; reductions
accumulate in a fixed order, so results are deterministic; NaN propagates as in numpy
(maximum/minimum/max/argmax) and integers wrap like numpy's.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from graphc.codegen.kernel import (Acc, Const, Expr, Guard, IndexValue, IxAdd, IxDiv, IxMod,
                                   IxMul, Lit, Load, LoopKernel, Op, Random, Reduction, Store,
                                   Var, ix_add, ix_div, ix_mod, ix_mul, walk_exprs)
from graphc.errors import GraphcError
from graphc.ir.dtypes import DType

F32, F64 = ir.FloatType(), ir.DoubleType()
I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
PTR = ir.PointerType()
VOID = ir.VoidType()

# fast-math flags for elementwise add/sub/mul: contraction into FMA only. Never reassoc
# (reductions stay in order), never nnan/ninf (NaN/Inf must propagate like numpy).
_EW_FLAGS = ("contract",)

# ----------------------------------------------------------------------------- types


def reg_type(dt: DType) -> ir.Type:
    """The LLVM type a value of ``dt`` has in registers (bool is i1)."""
    return {DType.f32: F32, DType.f64: F64, DType.i32: I32, DType.i64: I64, DType.u32: I32,
            DType.bool: I1}[dt]


def mem_type(dt: DType) -> ir.Type:
    """The LLVM type of one element of ``dt`` in memory (numpy bool is one byte)."""
    return I8 if dt == DType.bool else reg_type(dt)


def _signed_int(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def constant(dt: DType, value) -> ir.Constant:
    """``value`` rounded to ``dt`` as numpy would (``np.array(value).astype(dt)``)."""
    ty = reg_type(dt)
    if dt.is_float:
        return ir.Constant(ty, float(np.array(value, dtype=np.float64).astype(dt.np)))
    if dt == DType.bool:
        return ir.Constant(I1, int(bool(value)))
    v = int(np.array(value).astype(dt.np))
    return ir.Constant(ty, _signed_int(v, ty.width))


def min_value(dt: DType) -> ir.Constant:
    """The identity of max: -inf, or the smallest integer."""
    if dt.is_float:
        return ir.Constant(reg_type(dt), -math.inf)
    if dt == DType.bool or dt == DType.u32:
        return ir.Constant(reg_type(dt), 0)
    return ir.Constant(reg_type(dt), -(1 << (reg_type(dt).width - 1)))


def declare(module: ir.Module, name: str, ret, args, pure: bool = True) -> ir.Function:
    """A function declaration, once per module. ``pure``: no side effects we care about
    (libm sets errno, which graphc never reads), so LLVM may hoist, CSE or drop calls."""
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, args), name=name)
        if pure and not name.startswith("llvm."):
            fn.attributes.add("nounwind")
            fn.attributes.add("readnone")
    return fn

# ----------------------------------------------------------------------------- index intervals


def ix_range(ix, extents) -> tuple[int, int]:
    """Inclusive [lo, hi] of an index expression over loop vars ``0 <= Var(a) < extents[a]``
    (``extents[a]`` may also be an inclusive (lo, hi) range of the variable)."""
    if isinstance(ix, Var):
        e = extents[ix.axis]
        return e if isinstance(e, tuple) else (0, max(e - 1, 0))
    if isinstance(ix, Lit):
        return ix.value, ix.value
    if isinstance(ix, IxAdd):
        (a, b), (c, d) = ix_range(ix.a, extents), ix_range(ix.b, extents)
        return a + c, b + d
    if isinstance(ix, IxMul):
        a, b = ix_range(ix.a, extents)
        return (a * ix.c, b * ix.c) if ix.c >= 0 else (b * ix.c, a * ix.c)
    if isinstance(ix, IxDiv):
        a, b = ix_range(ix.a, extents)
        return a // ix.c, b // ix.c
    if isinstance(ix, IxMod):
        a, b = ix_range(ix.a, extents)
        if a >= 0 and b < ix.c:
            return a, b
        if a >= 0 and a // ix.c == b // ix.c:
            return a % ix.c, b % ix.c
        return 0, ix.c - 1
    raise TypeError(ix)


def _ix_vars(ix, out: set):
    if isinstance(ix, Var):
        out.add(ix.axis)
    elif isinstance(ix, (IxAdd,)):
        _ix_vars(ix.a, out)
        _ix_vars(ix.b, out)
    elif isinstance(ix, (IxMul, IxDiv, IxMod)):
        _ix_vars(ix.a, out)
    return out

# ----------------------------------------------------------------------------- private nodes


@dataclass(eq=False)
class DynLoad(Expr):
    """``buffer[base + dyn * stride]`` where ``0 <= dyn < bound``, else zero: a load at a
    data-dependent position (gather). Private to the CPU backend's template expansion."""
    buffer: int
    base: object            # Ix
    dyn: Expr               # an integer expression
    stride: int
    bound: int
    dtype: DType

    def children(self) -> tuple:
        return (self.dyn,)

# ----------------------------------------------------------------------------- walking


#: every Expr node reachable from some roots once (``kernel.walk_exprs``; DynLoad below
#: declares its child)
iter_exprs = walk_exprs


def kernel_roots(k: LoopKernel) -> list:
    roots = [s.value for s in k.stores]
    if k.reduction is not None:
        roots.append(k.reduction.value)
    return roots


def buffers_used(k: LoopKernel) -> tuple[set, set]:
    """(buffers read, buffers written) by a loop kernel."""
    reads = {e.buffer for e in iter_exprs(kernel_roots(k)) if isinstance(e, (Load, DynLoad))}
    writes = {s.buffer for s in k.stores}
    return reads, writes


# Rough cost of an op in simple-op units: a libm call (not vectorized) or an inline
# float32 polynomial (vectorized, ~a dozen ops).
_LIBM = frozenset("log log1p erf pow cos sin".split())
_POLY = frozenset("exp tanh sigmoid".split())


def kernel_cost(k: LoopKernel) -> int:
    """Rough operation count of one kernel call (for the parallel split decision)."""
    per = 0
    for e in iter_exprs(kernel_roots(k)):
        if isinstance(e, Op) and (e.op in _LIBM or e.op in _POLY and e.dtype != DType.f32):
            per += 20
        elif isinstance(e, Op) and e.op in _POLY:
            per += 6
        else:
            per += 1
    points = int(np.prod(k.shape)) if k.shape else 1
    if k.reduction is not None:
        points *= int(np.prod(k.reduction.extents)) if k.reduction.extents else 1
    return points * max(per, 1)

# ----------------------------------------------------------------------------- coalescing


def _lin(ix):
    """Linear form of an index: (constant, {axis: coefficient}, [(coefficient, div/mod term)])."""
    if isinstance(ix, Var):
        return 0, {ix.axis: 1}, []
    if isinstance(ix, Lit):
        return ix.value, {}, []
    if isinstance(ix, IxAdd):
        c1, d1, n1 = _lin(ix.a)
        c2, d2, n2 = _lin(ix.b)
        d = dict(d1)
        for a, v in d2.items():
            d[a] = d.get(a, 0) + v
        return c1 + c2, d, n1 + n2
    if isinstance(ix, IxMul):
        c, d, n = _lin(ix.a)
        return c * ix.c, {a: v * ix.c for a, v in d.items()}, [(k * ix.c, t) for k, t in n]
    return 0, {}, [(1, ix)]


def _kernel_indices(k: LoopKernel):
    out = [s.index for s in k.stores]
    for e in iter_exprs(kernel_roots(k)):
        if isinstance(e, Load):
            out.append(e.index)
        elif isinstance(e, Guard):
            out.extend(c[0] for c in e.conds)
        elif isinstance(e, IndexValue):
            out.append(e.index)
        elif isinstance(e, Random):
            out.append(e.flat)
        elif isinstance(e, DynLoad):
            out.append(e.base)
    return out


def coalesce(k: LoopKernel) -> LoopKernel:
    """The same kernel over fewer axes: size-1 axes dropped, and adjacent axes merged where
    every index uses them as one row-major flat axis (an elementwise kernel over [32,8,8,16]
    becomes one loop of 8192). Longer inner loops vectorize better; the values computed
    and their order are unchanged (merged reduction axes keep row-major order)."""
    red = k.reduction
    npar = len(k.shape)
    extents = list(k.shape) + (list(red.extents) if red is not None else [])
    if any(e == 0 for e in extents):
        return k
    forms = [_lin(ix) for ix in set(_kernel_indices(k))]
    nonlin_vars = set()
    for _, _, n in forms:
        for _, t in n:
            _ix_vars(t, nonlin_vars)
    groups, cur = [], None        # groups of consecutive axes (outer first)
    for a in range(len(extents)):
        if extents[a] == 1:
            continue
        if cur is not None and (cur[-1] < npar) == (a < npar) and \
                a not in nonlin_vars and cur[-1] not in nonlin_vars and \
                all(d.get(cur[-1], 0) == d.get(a, 0) * extents[a] for _, d, _ in forms):
            cur.append(a)
            continue
        cur = [a]
        groups.append(cur)
    if all(len(g) == 1 for g in groups) and all(e > 1 for e in extents):
        return k
    new_of = {g[-1]: n for n, g in enumerate(groups)}     # innermost axis -> new axis
    single = {g[0]: n for n, g in enumerate(groups) if len(g) == 1}
    new_npar = sum(1 for g in groups if g[0] < npar)
    new_ext = [int(np.prod([extents[a] for a in g])) for g in groups]

    ix_memo = {}

    def ix(x):
        hit = ix_memo.get(x)
        if hit is not None:
            return hit
        c, d, n = _lin(x)
        out = Lit(c)
        for a, v in d.items():
            if v and a in new_of:
                out = ix_add(out, ix_mul(Var(new_of[a]), v // 1))
        for v, t in n:
            out = ix_add(out, ix_mul(nl(t), v))
        ix_memo[x] = out
        return out

    def nl(t):
        if isinstance(t, Var):
            return Var(single[t.axis]) if t.axis in single else Lit(0)
        if isinstance(t, Lit):
            return t
        if isinstance(t, IxAdd):
            return ix_add(nl(t.a), nl(t.b))
        if isinstance(t, IxMul):
            return ix_mul(nl(t.a), t.c)
        if isinstance(t, IxDiv):
            return ix_div(nl(t.a), t.c)
        return ix_mod(nl(t.a), t.c)

    memo = {}

    def ex(e):
        hit = memo.get(id(e))
        if hit is not None:
            return hit
        if isinstance(e, Load):
            out = Load(e.buffer, ix(e.index), e.dtype)
        elif isinstance(e, Op):
            out = Op(e.op, tuple(ex(a) for a in e.args), e.dtype, e.attrs)
        elif isinstance(e, Guard):
            out = Guard(tuple((ix(c[0]), c[1], c[2]) for c in e.conds), ex(e.then),
                        ex(e.otherwise), e.dtype)
        elif isinstance(e, IndexValue):
            out = IndexValue(ix(e.index), e.dtype)
        elif isinstance(e, Random):
            out = Random(ex(e.seed), ex(e.counter), e.salt, ix(e.flat), e.dtype)
        elif isinstance(e, DynLoad):
            out = DynLoad(e.buffer, ix(e.base), ex(e.dyn), e.stride, e.bound, e.dtype)
        else:
            out = e                 # Const, Acc
        memo[id(e)] = out
        return out

    stores = [Store(s.buffer, ix(s.index), ex(s.value)) for s in k.stores]
    new_red = None
    if red is not None:
        new_red = Reduction(tuple(new_ext[new_npar:]), red.combiner, ex(red.value), red.dtype)
    return LoopKernel(k.name, tuple(new_ext[:new_npar]), stores, new_red)

# ----------------------------------------------------------------------------- the emitter


@dataclass
class KernelFunction:
    """A rendered kernel: ``fn(ptr for each of arg_buffers..., i64 lo, i64 hi)``; ``extent``
    is the trip count of the split axis (the outermost non-unit parallel axis; 1 if none)."""
    fn: ir.Function
    arg_buffers: list
    extent: int


class _Scope:
    """A place code can go: a block (code is inserted before its terminator) that dominates
    everything nested in it, and the loop variables it binds (``ACC``: the finished
    accumulator is readable here)."""
    __slots__ = ("block", "binds", "ranges")

    def __init__(self, block, binds, ranges=None):
        self.block, self.binds = block, binds
        self.ranges = ranges        # {axis: (lo, hi)} known inside this scope, if narrower


ACC = "acc"
# The interchanged reduction keeps one accumulator per element of the innermost parallel
# axis on the stack: bounded so the frame stays small.
MAX_INTERCHANGE = 2048
#: kept columns up to this many make an interchanged reduction one task (see ``build``)
MAX_WHOLE_COLUMNS = 16
# At most this many copies of an inner loop when splitting it at guard boundaries.
MAX_SEGMENTS = 8


def ix_coef(ix, axis, extents):
    """d(ix)/d(Var(axis)) when ix is linear in it (div/mod that the ranges prove trivial
    included), else None."""
    if isinstance(ix, Var):
        return 1 if ix.axis == axis else 0
    if isinstance(ix, Lit):
        return 0
    if isinstance(ix, IxAdd):
        a, b = ix_coef(ix.a, axis, extents), ix_coef(ix.b, axis, extents)
        return None if a is None or b is None else a + b
    if isinstance(ix, IxMul):
        a = ix_coef(ix.a, axis, extents)
        return None if a is None else a * ix.c
    a = ix_coef(ix.a, axis, extents)
    if a == 0:
        return 0
    lo, hi = ix_range(ix.a, extents)
    if isinstance(ix, IxDiv):
        return 0 if lo >= 0 and lo // ix.c == hi // ix.c else None
    return a if 0 <= lo and hi < ix.c else None


def _no_vectorize_id(module):
    """A fresh ``llvm.loop`` ID (self-referential, as LLVM wants) saying: do not vectorize."""
    n = getattr(module, "_graphc_loops", 0) + 1
    module._graphc_loops = n
    off = module.add_metadata([ir.MetaDataString(module, "llvm.loop.vectorize.enable"),
                               ir.Constant(I1, 0)])
    tag = module.add_metadata([ir.MetaDataString(module, f"graphc.loop.{n}")])
    md = module.add_metadata([off, tag])
    md.operands = (md,) + tuple(md.operands)
    return md


class _Emitter:
    def __init__(self, module, fn, kernel: LoopKernel, buffers, ptrs: dict, lo, hi):
        self.m, self.fn, self.k = module, fn, kernel
        self.buffers = buffers
        self.ptrs = ptrs
        self.b = ir.IRBuilder()
        red = kernel.reduction
        self.npar = len(kernel.shape)
        self.extents = list(kernel.shape) + (list(red.extents) if red is not None else [])
        self.empty_red = red is not None and any(e == 0 for e in red.extents)
        self.memo: dict = {}
        self.vars_memo: dict = {}
        self.lo, self.hi = lo, hi
        self.chain = []
        self.whole = False

    # -- structure ------------------------------------------------------------------
    def _open(self, pred, axis, start, end, extra_binds=(), inner=True, maybe_empty=False):
        """A do-while loop over [start, end) entered from block ``pred`` (terminated here);
        returns (scope of its body, latch, exit). The body is left open for children.
        ``inner=False``: a loop with loops inside, which LLVM must not vectorize."""
        fn, b = self.fn, self.b
        body = fn.append_basic_block(f"a{axis}.body")
        latch = fn.append_basic_block(f"a{axis}.latch")
        exit_ = fn.append_basic_block(f"a{axis}.exit")
        b.position_at_end(pred)
        if maybe_empty:
            b.cbranch(b.icmp_signed("<", start, end), body, exit_)
        else:
            b.branch(body)
        b.position_at_end(body)
        i = b.phi(I64, name=f"i{axis}")
        i.add_incoming(start, pred)
        b.position_at_end(latch)
        nxt = b.add(i, I64(1), name=f"i{axis}.next", flags=("nuw", "nsw"))
        i.add_incoming(nxt, latch)
        br = b.cbranch(b.icmp_signed("<", nxt, end), body, exit_)
        if not inner:
            # O3 fully unrolls short inner loops first; the loop vectorizer would then
            # vectorize the enclosing loop with gathers across rows. Forbid that: the
            # unrolled contiguous body is left to the SLP vectorizer.
            br.set_metadata("llvm.loop", _no_vectorize_id(self.m))
        binds = {axis: i}
        for x in extra_binds:
            binds[x] = None
        return _Scope(body, binds), latch, exit_

    def _close(self, tail, latch):
        self.b.position_at_end(tail)
        self.b.branch(latch)

    def _range(self, axis, split_axis):
        if axis == split_axis:
            return self.lo, self.hi
        return I64(0), I64(self.extents[axis])

    def _interchange(self, par_axes, red_axes) -> bool:
        """Put the innermost parallel axis inside the reduction loops (one accumulator per
        element of it) when that axis walks some load contiguously: the inner loop then
        vectorizes, while each accumulator still sums in the fixed order."""
        red = self.k.reduction
        if red is None or not par_axes or not red_axes or self.empty_red:
            return False
        last = par_axes[-1]
        if self.extents[last] > MAX_INTERCHANGE or last != self.npar - 1:
            return False
        for e in iter_exprs([red.value]):
            if isinstance(e, Load) and ix_coef(e.index, last, self.extents) == 1:
                return True
        return False

    def build(self):
        k, fn, b = self.k, self.fn, self.b
        entry = fn.append_basic_block("entry")
        top = _Scope(entry, {})
        if any(d == 0 for d in k.shape):
            b.position_at_end(entry)
            b.ret_void()
            return
        red = k.reduction
        par_axes = [a for a in range(self.npar) if self.extents[a] > 1]
        red_axes = [] if red is None or self.empty_red else \
            [a for a in range(self.npar, len(self.extents)) if self.extents[a] > 1]
        split_axis = par_axes[0] if par_axes else None
        self.unit = {a for a in range(len(self.extents)) if self.extents[a] <= 1}
        self.guard_vars = set()
        for e in iter_exprs(kernel_roots(k)):
            if isinstance(e, Guard):
                for c in e.conds:
                    _ix_vars(c[0], self.guard_vars)
        self.interchanged = self._interchange(par_axes, red_axes)
        # A few kept columns under a long reduction (a conv's bias gradient: [N*H*W, C]
        # summed over rows) run whole on one thread with constant column bounds, so LLVM
        # unrolls the column loop and keeps the accumulators in registers; split across
        # threads by column, each thread would walk every row for a handful of columns.
        self.whole = (self.interchanged and par_axes == [self.npar - 1]
                      and self.extents[self.npar - 1] <= MAX_WHOLE_COLUMNS)
        outer = par_axes[:-1] if self.interchanged else par_axes
        b.position_at_end(entry)
        if red is not None:
            if self.interchanged:
                n = self.extents[par_axes[-1]]
                self.acc_arr = [b.alloca(ir.ArrayType(reg_type(red.dtype), n))]
                if red.combiner == "argmax":
                    self.acc_arr.append(b.alloca(ir.ArrayType(I64, n)))
                for a in self.acc_arr:
                    a.type = PTR
            else:
                # Scalar accumulators: allocas that mem2reg turns into phis across however
                # many reduction loops there are.
                self.accs = [b.alloca(reg_type(red.dtype))]
                if red.combiner == "argmax":
                    self.accs.append(b.alloca(I64))
        cur = entry
        exit_fn = fn.append_basic_block("done")
        if split_axis is not None:
            first = fn.append_basic_block("start")
            b.cbranch(b.icmp_signed("<", self.lo, self.hi), first, exit_fn)
            cur = first
        chain = [top]
        closers = []
        segments = self._segments(outer[-1]) if red is None and outer else None
        for n_, a in enumerate(outer[:-1] if segments else outer):
            deeper = n_ < len(outer) - 1 or red_axes or self.interchanged
            s, latch, ex = self._open(cur, a, *self._range(a, split_axis), inner=not deeper)
            chain.append(s)
            closers.append((latch, ex))
            cur = s.block
        if segments:
            # Index-set splitting: one loop per range of the innermost variable over which
            # every guard on it is constant (concat / pad along the inner axis): guards
            # vanish and the loads are contiguous again.
            a = outer[-1]
            later = []
            for s0, s1 in segments:
                b.position_at_end(cur)
                if a == split_axis:
                    start = b.select(b.icmp_signed(">", self.lo, I64(s0)), self.lo, I64(s0))
                    end = b.select(b.icmp_signed("<", self.hi, I64(s1)), self.hi, I64(s1))
                else:
                    start, end = I64(s0), I64(s1)
                s, latch, ex = self._open(cur, a, start, end, maybe_empty=a == split_axis)
                s.ranges = {a: (s0, s1 - 1)}
                self._close(s.block, latch)
                cur = ex
                later.append(lambda c=chain + [s]: self._stores(c))
        elif red is None:
            later = [lambda c=list(chain): self._stores(c)]
        elif not self.interchanged:
            rchain, rclosers = list(chain), []
            for n_, a in enumerate(red_axes):
                s, latch, ex = self._open(cur, a, I64(0), I64(self.extents[a]),
                                          inner=n_ == len(red_axes) - 1)
                rchain.append(s)
                rclosers.append((latch, ex))
                cur = s.block
            # the reduction body, then the post block reading the finished accumulator
            post = fn.append_basic_block("post")
            for latch, ex in reversed(rclosers):
                self._close(cur, latch)
                cur = ex
            b.position_at_end(cur)
            b.branch(post)
            cur = post
            b.position_at_end(post)
            post_chain = chain + [_Scope(post, {ACC: None})]
            later = [lambda c=list(chain): self._emit_reset(c),
                     lambda: self._emit_update(rchain), lambda: self._stores(post_chain)]
        else:
            last = par_axes[-1]
            rng = (I64(0), I64(self.extents[last])) if self.whole else \
                self._range(last, split_axis)
            s, latch, ex = self._open(cur, last, *rng)
            init_chain = chain + [s]
            self._close(s.block, latch)
            cur = ex
            rchain, rclosers = list(chain), []
            for a in red_axes:
                s2, l2, e2 = self._open(cur, a, I64(0), I64(self.extents[a]), inner=False)
                rchain.append(s2)
                rclosers.append((l2, e2))
                cur = s2.block
            s3, l3, e3 = self._open(cur, last, *rng)
            rchain.append(s3)
            self._close(s3.block, l3)
            cur = e3
            for latch2, ex2 in reversed(rclosers):
                self._close(cur, latch2)
                cur = ex2
            s4, l4, e4 = self._open(cur, last, *rng, extra_binds=(ACC,))
            post_chain = chain + [s4]
            self._close(s4.block, l4)
            cur = e4
            later = [lambda: self._emit_reset(init_chain), lambda: self._emit_update(rchain),
                     lambda: self._stores(post_chain)]
        for latch, ex in reversed(closers):
            self._close(cur, latch)
            cur = ex
        b.position_at_end(cur)
        b.branch(exit_fn)
        b.position_at_end(exit_fn)
        b.ret_void()
        # Code goes in once every block is terminated (always inserted before terminators).
        for f in later:
            f()

    def _segments(self, axis):
        """Breakpoints of the guards on ``axis`` alone: [(start, end)] covering its extent,
        or None when there is nothing (or too much) to split."""
        E = self.extents[axis]
        cuts = set()
        for e in iter_exprs(kernel_roots(self.k)):
            if not isinstance(e, Guard):
                continue
            for ix, lo, hi in e.conds:
                c, d, n = _lin(ix)
                coef = d.get(axis, 0)
                if n or coef not in (1, -1) or any(v for a, v in d.items() if a != axis):
                    continue
                # lo <= coef*v + c < hi
                pts = (lo - c, hi - c) if coef == 1 else (c - lo + 1, c - hi + 1)
                cuts.update(p for p in pts if 0 < p < E)
        if not cuts or len(cuts) > MAX_SEGMENTS - 1:
            return None
        edges = [0] + sorted(cuts) + [E]
        return list(zip(edges[:-1], edges[1:]))

    def rng(self, ix, chain):
        """The range of ``ix`` where ``chain`` is (narrowed by split loops)."""
        ranges = None
        for s in chain:
            if s.ranges:
                if ranges is None:
                    ranges = list(self.extents)
                for a, r in s.ranges.items():
                    ranges[a] = r
        return ix_range(ix, self.extents if ranges is None else ranges)

    def _at(self, scope):
        self.b.position_before(scope.block.terminator)

    def _var(self, axis, chain):
        for s in reversed(chain):
            if axis in s.binds:
                return s.binds[axis]
        raise GraphcError(f"kernel {self.k.name}: loop variable i{axis} used out of scope")

    def _place(self, vs, chain):
        for s in reversed(chain):
            if any(v in s.binds for v in vs):
                return s
        return chain[0]

    # -- variables an expression depends on ----------------------------------------------
    def ix_vars(self, ix):
        return frozenset(a for a in _ix_vars(ix, set()) if a not in self.unit)

    def vars_of(self, e) -> frozenset:
        hit = self.vars_memo.get(id(e))
        if hit is not None:
            return hit
        if isinstance(e, Load):
            vs = self.ix_vars(e.index)
        elif isinstance(e, Const):
            vs = frozenset()
        elif isinstance(e, Op):
            vs = frozenset().union(*[self.vars_of(a) for a in e.args])
        elif isinstance(e, Guard):
            vs = frozenset().union(*[self.ix_vars(c[0]) for c in e.conds],
                                   self.vars_of(e.then), self.vars_of(e.otherwise))
        elif isinstance(e, IndexValue):
            vs = self.ix_vars(e.index)
        elif isinstance(e, Random):
            vs = self.vars_of(e.seed) | self.vars_of(e.counter) | self.ix_vars(e.flat)
        elif isinstance(e, DynLoad):
            vs = self.ix_vars(e.base) | self.vars_of(e.dyn)
        elif isinstance(e, Acc):
            if self.k.reduction is None:
                raise GraphcError(f"kernel {self.k.name}: 'acc' outside a reduction")
            vs = frozenset((ACC,))
        else:
            raise TypeError(e)
        self.vars_memo[id(e)] = vs
        return vs

    # -- reduction ------------------------------------------------------------------
    def _acc_ptrs(self, chain):
        if not self.interchanged:
            return self.accs
        i = self._var(self.npar - 1, chain)
        return [self.b.gep(a, [i], inbounds=True, source_etype=t)
                for a, t in zip(self.acc_arr, self._acc_types())]

    def _acc_types(self):
        red = self.k.reduction
        return [reg_type(red.dtype)] + ([I64] if red.combiner == "argmax" else [])

    def _emit_reset(self, chain):
        red, b = self.k.reduction, self.b
        self._at(chain[-1])
        ptrs = self._acc_ptrs(chain)
        init = min_value(red.dtype) if red.combiner in ("max", "argmax") else \
            constant(red.dtype, 0)
        b.store(init, ptrs[0])
        if red.combiner == "argmax":
            b.store(I64(0), ptrs[1])

    def _emit_update(self, chain):
        red, b = self.k.reduction, self.b
        if self.empty_red:
            return
        v = self.value(red.value, chain)
        self._at(chain[-1])
        ptrs = self._acc_ptrs(chain)
        dt = red.dtype
        acc = b.load(ptrs[0], typ=reg_type(dt))
        if red.combiner == "sum":
            if dt.is_float:
                # In order, never reassociated: deterministic. ``contract`` lets a product
                # summand fuse into an FMA (one rounding instead of two, same every run).
                new = b.fadd(acc, v, flags=_EW_FLAGS)
            elif dt == DType.bool:
                new = b.or_(acc, v)
            else:
                new = b.add(acc, v)
            b.store(new, ptrs[0])
        elif red.combiner == "max":
            b.store(minmax_ir(b, acc, v, dt), ptrs[0])
        elif red.combiner == "argmax":
            # First max wins; a NaN is the max (numpy) and the first NaN sticks.
            if dt.is_float:
                upd = b.and_(b.fcmp_unordered(">", v, acc), b.fcmp_ordered("==", acc, acc))
            else:
                upd = (b.icmp_signed if dt in (DType.i32, DType.i64) else b.icmp_unsigned)(
                    ">", v, acc)
            flat = I64(0)
            for a, ext in enumerate(red.extents):
                x = I64(0) if (self.npar + a) in self.unit else self._var(self.npar + a, chain)
                flat = b.add(b.mul(flat, I64(ext)), x)
            old = b.load(ptrs[1], typ=I64)
            b.store(b.select(upd, v, acc), ptrs[0])
            b.store(b.select(upd, flat, old), ptrs[1])
        else:
            raise GraphcError(f"unknown reduction combiner {red.combiner!r}")

    def _stores(self, chain):
        # Every stored value is computed before the first store: a buffer updated in place
        # (a parameter) may also be read by another store of the same iteration.
        b = self.b
        vals = [(st, self.value(st.value, chain), self.index(st.index, chain))
                for st in self.k.stores]
        self._at(chain[-1])
        for st, v, idx in vals:
            buf = self.buffers[st.buffer]
            v = self.convert(v, st.value.dtype, buf.dtype)
            if buf.dtype == DType.bool:
                v = b.zext(v, I8)
            p = b.gep(self.ptrs[st.buffer], [idx], inbounds=True, source_etype=mem_type(buf.dtype))
            b.store(v, p)

    # -- indices --------------------------------------------------------------------
    def index(self, ix, chain) -> ir.Value:
        if isinstance(ix, Lit):
            return I64(ix.value)
        if isinstance(ix, Var):
            return I64(0) if ix.axis in self.unit else self._var(ix.axis, chain)
        scope = self._place(self.ix_vars(ix), chain)
        key = (ix, id(scope))
        hit = self.memo.get(key)
        if hit is not None:
            return hit
        b = self.b
        if isinstance(ix, IxAdd):
            x, y = self.index(ix.a, chain), self.index(ix.b, chain)
            self._at(scope)
            v = b.add(x, y)
        elif isinstance(ix, IxMul):
            x = self.index(ix.a, chain)
            self._at(scope)
            v = b.mul(x, I64(ix.c))
        elif isinstance(ix, (IxDiv, IxMod)):
            x = self.index(ix.a, chain)
            self._at(scope)
            lo, _ = ix_range(ix.a, self.extents)
            if lo >= 0:
                v = (b.udiv if isinstance(ix, IxDiv) else b.urem)(x, I64(ix.c))
            else:
                # Floor semantics for negative values (only under a guard; kept exact so
                # guard conditions mean what the interpreter says).
                q = b.sdiv(x, I64(ix.c))
                r = b.srem(x, I64(ix.c))
                neg = b.icmp_signed("<", r, I64(0))
                if isinstance(ix, IxDiv):
                    v = b.select(neg, b.sub(q, I64(1)), q)
                else:
                    v = b.select(neg, b.add(r, I64(ix.c)), r)
        else:
            raise TypeError(ix)
        self.memo[key] = v
        return v

    def _clamp_outside_inner(self, index, chain, size):
        """A load index that may leave its buffer is clamped; clamping the whole index would
        make every lane's address data-dependent (a gather). When the index is
        ``rest + c * v`` with ``v`` the innermost loop variable, clamp only ``rest`` (loop
        invariant) into the range that keeps every ``v`` in bounds: the load stays
        contiguous. Returns an emitter, or None when that does not apply."""
        inner = next((a for s in reversed(chain) for a in s.binds if a != ACC), None)
        if inner is None or inner in self.guard_vars:
            # Sound only if no guard depends on v: then, per value of the outer variables,
            # either every lane's load is in bounds (``rest`` is inside the clamp range, the
            # clamp changes nothing) or the guard discards every lane.
            return None
        c, d, n = _lin(index)
        coef = d.get(inner, 0)
        if coef == 0 or any(inner in _ix_vars(t, set()) for _, t in n):
            return None
        lo_v, hi_v = self.rng(Var(inner), chain)
        ilo, ihi = sorted((coef * lo_v, coef * hi_v))
        rest = Lit(c)
        for a, v in d.items():
            if a != inner and v:
                rest = ix_add(rest, ix_mul(Var(a), v))
        for v, t in n:
            rest = ix_add(rest, ix_mul(t, v))
        lo_ok, hi_ok = -ilo, size - 1 - ihi
        if lo_ok > hi_ok:
            return None

        def emit(buffer, dtype, scope):
            b = self.b
            rrng = self.rng(rest, chain)
            rscope = self._place(self.ix_vars(rest), chain)
            key = ("clamp", rest, lo_ok, hi_ok, id(rscope))
            r = self.memo.get(key)
            if r is None:
                r = self.index(rest, chain)
                self._at(rscope)
                if rrng[0] < lo_ok:
                    r = b.select(b.icmp_signed("<", r, I64(lo_ok)), I64(lo_ok), r)
                if rrng[1] > hi_ok:
                    r = b.select(b.icmp_signed(">", r, I64(hi_ok)), I64(hi_ok), r)
                self.memo[key] = r
            iv = self._var(inner, chain)
            self._at(scope)
            idx = b.add(r, b.mul(iv, I64(coef)) if coef != 1 else iv)
            return self.load(buffer, idx, (0, size - 1), dtype)
        return emit

    def load(self, buffer: int, idx, rng, dtype: DType) -> ir.Value:
        """buffers[buffer][idx], clamped into the buffer when the index range ``rng`` may
        leave it (such loads only matter where a guard holds; clamping makes them safe)."""
        b = self.b
        buf = self.buffers[buffer]
        if buf.size == 0:
            return constant(dtype, 0)
        lo, hi = rng
        if lo < 0:
            idx = b.select(b.icmp_signed("<", idx, I64(0)), I64(0), idx)
        if hi > buf.size - 1:
            last = I64(buf.size - 1)
            idx = b.select(b.icmp_signed(">", idx, last), last, idx)
        p = b.gep(self.ptrs[buffer], [idx], inbounds=True, source_etype=mem_type(buf.dtype))
        v = b.load(p, typ=mem_type(buf.dtype))
        if buf.dtype == DType.bool:
            v = b.icmp_unsigned("!=", v, I8(0))
        return self.convert(v, buf.dtype, dtype)

    # -- values ---------------------------------------------------------------------
    def value(self, e, chain) -> ir.Value:
        if isinstance(e, Const):
            return constant(e.dtype, e.value)
        scope = self._place(self.vars_of(e), chain)
        key = (id(e), id(scope))
        hit = self.memo.get(key)
        if hit is not None:
            return hit
        v = self._value(e, scope, chain)
        self.memo[key] = v
        return v

    def _value(self, e, scope, chain):
        b = self.b
        if isinstance(e, Load):
            rng = self.rng(e.index, chain)
            size = self.buffers[e.buffer].size
            if (rng[0] < 0 or rng[1] > size - 1) and size > 0:
                split = self._clamp_outside_inner(e.index, chain, size)
                if split is not None:
                    return split(e.buffer, e.dtype, scope)
            idx = self.index(e.index, chain)
            self._at(scope)
            return self.load(e.buffer, idx, rng, e.dtype)
        if isinstance(e, Op):
            args = [self.value(a, chain) for a in e.args]
            self._at(scope)
            return self.op(e.op, args, [a.dtype for a in e.args], e.dtype, e.attrs)
        if isinstance(e, Guard):
            ranges = [(ix, lo, hi, self.rng(ix, chain)) for ix, lo, hi in e.conds]
            if any(rhi < lo or rlo >= hi for _, lo, hi, (rlo, rhi) in ranges):
                return self.value(e.otherwise, chain)       # never holds here
            then, other = self.value(e.then, chain), self.value(e.otherwise, chain)
            conds = []
            for ix, lo, hi, (rlo, rhi) in ranges:
                if rlo >= lo and rhi < hi:
                    continue            # always holds
                v = self.index(ix, chain)
                self._at(scope)
                if rlo < lo:
                    conds.append(b.icmp_signed(">=", v, I64(lo)))
                if rhi >= hi:
                    conds.append(b.icmp_signed("<", v, I64(hi)))
            self._at(scope)
            if not conds:
                return then
            c = conds[0]
            for x in conds[1:]:
                c = b.and_(c, x)
            return b.select(c, then, other)
        if isinstance(e, IndexValue):
            v = self.index(e.index, chain)
            self._at(scope)
            return self.convert(v, DType.i64, e.dtype)
        if isinstance(e, Random):
            key = self.random_key(e.seed, e.counter, e.salt, chain)
            flat = self.index(e.flat, chain)
            self._at(scope)
            return random_value_ir(b, key, flat, e.dtype)
        if isinstance(e, DynLoad):
            d = self.value(e.dyn, chain)
            base = self.index(e.base, chain)
            self._at(scope)
            d64 = self.convert(d, e.dyn.dtype, DType.i64)
            ok = b.and_(b.icmp_signed(">=", d64, I64(0)), b.icmp_signed("<", d64, I64(e.bound)))
            idx = b.add(base, b.mul(b.select(ok, d64, I64(0)), I64(e.stride)))
            lo, hi = self.rng(e.base, chain)
            v = self.load(e.buffer, idx, (lo, hi + (e.bound - 1) * e.stride), e.dtype)
            return b.select(ok, v, constant(e.dtype, 0))
        if isinstance(e, Acc):
            self._at(scope)
            red = self.k.reduction
            ptrs = self._acc_ptrs(chain)
            if red.combiner == "argmax":
                return self.convert(b.load(ptrs[1], typ=I64), DType.i64, e.dtype)
            return self.convert(b.load(ptrs[0], typ=reg_type(red.dtype)), red.dtype, e.dtype)
        raise TypeError(e)

    # -- random ---------------------------------------------------------------------
    def random_key(self, seed_e, counter_e, salt, chain):
        seed, counter = self.value(seed_e, chain), self.value(counter_e, chain)
        scope = self._place(self.vars_of(seed_e) | self.vars_of(counter_e), chain)
        k = ("rkey", id(seed_e), id(counter_e), salt, id(scope))
        hit = self.memo.get(k)
        if hit is not None:
            return hit
        self._at(scope)
        seed = self.convert(seed, seed_e.dtype, DType.i64)
        counter = self.convert(counter, counter_e.dtype, DType.i64)
        v = random_key_ir(self.b, seed, counter, salt)
        self.memo[k] = v
        return v

    # -- ops ------------------------------------------------------------------------
    def intrinsic(self, name, dt, nargs=1):
        ty = reg_type(dt)
        suffix = "f32" if dt == DType.f32 else "f64"
        return declare(self.m, f"llvm.{name}.{suffix}", ty, [ty] * nargs)

    def libm(self, name, dt, nargs=1):
        ty = reg_type(dt)
        return declare(self.m, name + ("f" if dt == DType.f32 else ""), ty, [ty] * nargs)

    def convert(self, v, src: DType, dst: DType):
        return convert_ir(self.b, v, src, dst)

    def maximum(self, a, b_, dt, minimum=False):
        return minmax_ir(self.b, a, b_, dt, minimum)

    def op(self, name, args, dts, dt, attrs):
        b = self.b
        x = args[0] if args else None
        xdt = dts[0] if dts else None
        isf = xdt is not None and xdt.is_float
        if name == "cast":
            return self.convert(x, xdt, dt)
        if name == "add":
            return b.fadd(*args, flags=_EW_FLAGS) if isf else (
                b.or_(*args) if xdt == DType.bool else b.add(*args))
        if name == "sub":
            return b.fsub(*args, flags=_EW_FLAGS) if isf else b.sub(*args)
        if name == "mul":
            return b.fmul(*args, flags=_EW_FLAGS) if isf else (
                b.and_(*args) if xdt == DType.bool else b.mul(*args))
        if name == "div":
            if not isf:
                raise GraphcError("div: integer division is not a graphc primitive")
            return b.fdiv(*args)
        if name == "pow":
            return b.call(self.intrinsic("pow", dt, 2), args)
        if name in ("maximum", "minimum"):
            return self.maximum(args[0], args[1], xdt, name == "minimum")
        if name in _CMP:
            return compare_ir(b, name, args[0], args[1], xdt)
        if name == "logical_and":
            return b.and_(*args)
        if name == "logical_or":
            return b.or_(*args)
        if name == "logical_not":
            return b.xor(x, I1(1))
        if name == "select":
            return b.select(*args)
        if name == "neg":
            return b.fneg(x) if isf else b.sub(ir.Constant(x.type, 0), x)
        if name == "abs":
            if isf:
                return b.call(self.intrinsic("fabs", dt), [x])
            if xdt in (DType.u32, DType.bool):
                return x
            return b.select(b.icmp_signed("<", x, ir.Constant(x.type, 0)),
                            b.sub(ir.Constant(x.type, 0), x), x)
        if name == "sign":
            z = ir.Constant(x.type, 0)
            if isf:
                one = ir.Constant(x.type, 1.0)
                return b.select(b.fcmp_ordered(">", x, z), one,
                                b.select(b.fcmp_ordered("<", x, z), b.fneg(one), x))
            if xdt in (DType.u32, DType.bool):
                return b.zext(b.icmp_unsigned("!=", x, z), x.type) if xdt != DType.bool else x
            return b.select(b.icmp_signed(">", x, z), ir.Constant(x.type, 1),
                            b.select(b.icmp_signed("<", x, z), ir.Constant(x.type, -1), z))
        if not isf:
            raise GraphcError(f"{name}: expected a float operand, got {xdt}")
        if name == "exp" and dt == DType.f32:
            return exp_f32_ir(self.m, b, x)
        if name == "tanh" and dt == DType.f32:
            return tanh_f32_ir(self.m, b, x)
        if name in ("exp", "log", "sqrt", "floor", "sin", "cos"):
            return b.call(self.intrinsic(name, dt), [x])
        if name in ("log1p", "tanh"):
            return b.call(self.libm(name, dt), [x])
        if name == "erf":
            # The reference rounds math.erf (double) to the dtype: do the same.
            if dt == DType.f32:
                d = b.call(declare(self.m, "erf", F64, [F64]), [b.fpext(x, F64)])
                return b.fptrunc(d, F32)
            return b.call(declare(self.m, "erf", F64, [F64]), [x])
        if name == "sigmoid":
            # Stable both ways, as the reference: exp of -|x| only.
            ty = x.type
            one = ir.Constant(ty, 1.0)
            nax = b.fneg(b.call(self.intrinsic("fabs", dt), [x]))
            e = exp_f32_ir(self.m, b, nax) if dt == DType.f32 else \
                b.call(self.intrinsic("exp", dt), [nax])
            den = b.fadd(one, e)
            return b.select(b.fcmp_ordered(">=", x, ir.Constant(ty, 0.0)),
                            b.fdiv(one, den), b.fdiv(e, den))
        raise GraphcError(f"the CPU backend has no rendering for op '{name}'")


_CMP = {"greater": ">", "greater_equal": ">=", "less": "<", "less_equal": "<=",
        "equal": "==", "not_equal": "!="}


def compare_ir(b, name, x, y, dt):
    op = _CMP[name]
    if dt.is_float:
        # numpy: every comparison with NaN is False except !=.
        return b.fcmp_unordered(op, x, y) if op == "!=" else b.fcmp_ordered(op, x, y)
    if dt in (DType.i32, DType.i64):
        return b.icmp_signed(op, x, y)
    return b.icmp_unsigned(op, x, y)


def minmax_ir(b, x, y, dt, minimum=False):
    """numpy maximum/minimum: ``(x >= y || isnan(x)) ? x : y`` (NaN from either side)."""
    op = "<=" if minimum else ">="
    if dt.is_float:
        c = b.or_(b.fcmp_ordered(op, x, y), b.fcmp_unordered("uno", x, x))
    elif dt in (DType.i32, DType.i64):
        c = b.icmp_signed(op, x, y)
    else:
        c = b.icmp_unsigned(op, x, y)
    return b.select(c, x, y)


def convert_ir(b, v, src: DType, dst: DType):
    """numpy ``astype`` from ``src`` to ``dst`` (float → int truncates toward zero)."""
    if src == dst or (reg_type(src) == reg_type(dst) and src != DType.bool and dst != DType.bool
                      and src.is_float == dst.is_float):
        return v
    st, dty = reg_type(src), reg_type(dst)
    if dst == DType.bool:
        if src.is_float:
            return b.fcmp_unordered("!=", v, ir.Constant(st, 0.0))   # NaN is True
        return b.icmp_unsigned("!=", v, ir.Constant(st, 0))
    if src == DType.bool:
        return b.uitofp(v, dty) if dst.is_float else b.zext(v, dty)
    if src.is_float and dst.is_float:
        return b.fpext(v, dty) if dst == DType.f64 else b.fptrunc(v, dty)
    if src.is_float:
        if dst == DType.u32:
            # As C code compiled for x86-64 does (and numpy with it): via int64, wrapping.
            return b.trunc(b.fptosi(v, I64), I32)
        return b.fptosi(v, dty)
    if dst.is_float:
        return b.uitofp(v, dty) if src == DType.u32 else b.sitofp(v, dty)
    # int → int
    if st.width == dty.width:
        return v
    if st.width > dty.width:
        return b.trunc(v, dty)
    return b.zext(v, dty) if src == DType.u32 else b.sext(v, dty)

# ----------------------------------------------------------------------------- vector math
# libm's expf/tanhf are calls LLVM cannot vectorize (no vector math library is wired into
# llvmlite), and sigmoid/tanh-heavy kernels (LSTM gates) would run one call per element.
# These float32 versions are straight-line arithmetic the loop vectorizer handles; accuracy
# within 2 ulp of numpy over the whole range (tests/codegen/test_cpu_primitives.py), and
# exact at the edges (inf, -inf, NaN, overflow, underflow to denormals and zero).


def _f32(v):
    return ir.Constant(F32, float(np.float32(v)))


def _poly(b, x, coefs):
    acc = _f32(coefs[0])
    for c in coefs[1:]:
        acc = b.fadd(b.fmul(acc, x, flags=_EW_FLAGS), _f32(c), flags=_EW_FLAGS)
    return acc


def exp_f32_ir(module, b, x):
    """e**x in float32 (Cephes expf: Cody-Waite reduction by ln 2, degree-6 polynomial)."""
    rint = declare(module, "llvm.rint.f32", F32, [F32])
    n = b.call(rint, [b.fmul(x, _f32(1.44269504088896341))])
    n = b.select(b.fcmp_ordered("<", n, _f32(-200.0)), _f32(-200.0), n)    # keeps fptosi
    n = b.select(b.fcmp_ordered(">", n, _f32(200.0)), _f32(200.0), n)      # defined
    r = b.fsub(x, b.fmul(n, _f32(0.693359375)))
    r = b.fsub(r, b.fmul(n, _f32(-2.12194440e-4)))
    z = b.fmul(r, r)
    p = _poly(b, r, [1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3, 4.1665795894E-2,
                     1.6666665459E-1, 5.0000001201E-1])
    p = b.fadd(b.fadd(b.fmul(p, z, flags=_EW_FLAGS), r, flags=_EW_FLAGS), _f32(1.0),
               flags=_EW_FLAGS)
    # p * 2**n as two exact power-of-two scalings, so results down in the denormal range
    # round once, as libm's do.
    ni = b.fptosi(n, I32)
    n1 = b.ashr(ni, I32(1))
    n2 = b.sub(ni, n1)

    def pow2(k):
        return b.bitcast(b.shl(b.add(k, I32(127)), I32(23)), F32)
    y = b.fmul(b.fmul(p, pow2(n1)), pow2(n2))
    y = b.select(b.fcmp_ordered(">", x, _f32(88.72283935546875)), _f32(math.inf), y)
    y = b.select(b.fcmp_ordered("<", x, _f32(-103.972084045410)), _f32(0.0), y)
    return b.select(b.fcmp_unordered("uno", x, x), x, y)


def tanh_f32_ir(module, b, x):
    """tanh in float32 (Cephes tanhf): an odd polynomial for |x| < 0.625, else
    1 - 2 / (exp(2|x|) + 1) with the sign of x; NaN stays NaN."""
    fabs = declare(module, "llvm.fabs.f32", F32, [F32])
    ax = b.call(fabs, [x])
    z = b.fmul(x, x)
    small = b.fadd(b.fmul(b.fmul(x, z), _poly(b, z, [-5.70498872745E-3, 2.06390887954E-2,
                                                      -5.37397155531E-2, 1.33314422036E-1,
                                                      -3.33332819422E-1]), flags=_EW_FLAGS),
                   x, flags=_EW_FLAGS)
    e = exp_f32_ir(module, b, b.fmul(ax, _f32(2.0)))
    big = b.fsub(_f32(1.0), b.fdiv(_f32(2.0), b.fadd(e, _f32(1.0))))
    copysign = declare(module, "llvm.copysign.f32", F32, [F32, F32])
    big = b.call(copysign, [big, x])
    y = b.select(b.fcmp_ordered("<", ax, _f32(0.625)), small, big)
    return b.select(b.fcmp_unordered("uno", x, x), x, y)

# ----------------------------------------------------------------------------- random bits
# Bit-exact with graphc.ir.ops.misc (random_uniform's docstring): uint32 wrapping arithmetic.


def _rotl(b, x, r):
    return b.or_(b.shl(x, I32(r)), b.lshr(x, I32(32 - r)))


def fmix32_ir(b, h):
    h = b.xor(h, b.lshr(h, I32(16)))
    h = b.mul(h, I32(_signed_int(0x85EBCA6B, 32)))
    h = b.xor(h, b.lshr(h, I32(13)))
    h = b.mul(h, I32(_signed_int(0xC2B2AE35, 32)))
    return b.xor(h, b.lshr(h, I32(16)))


def random_key_ir(b, seed64, counter64, salt: int):
    words = [b.trunc(seed64, I32), b.trunc(b.lshr(seed64, I64(32)), I32),
             b.trunc(counter64, I32), b.trunc(b.lshr(counter64, I64(32)), I32)]
    h = I32(_signed_int(salt, 32))
    for k in words:
        k = b.mul(k, I32(_signed_int(0xCC9E2D51, 32)))
        k = _rotl(b, k, 15)
        k = b.mul(k, I32(_signed_int(0x1B873593, 32)))
        h = b.xor(h, k)
        h = _rotl(b, h, 13)
        h = b.add(b.mul(h, I32(5)), I32(_signed_int(0xE6546B64, 32)))
    return fmix32_ir(b, b.xor(h, I32(16)))


def random_value_ir(b, key, flat64, dt: DType):
    i = b.trunc(flat64, I32)
    x = b.add(b.mul(i, I32(_signed_int(0x9E3779B1, 32))), I32(0x7F4A7C15))
    h = fmix32_ir(b, b.xor(key, x))
    h = fmix32_ir(b, b.add(h, key))
    ty = reg_type(dt)
    # (h >> 8) has 24 bits: exact in f32; times 2**-24 is exact too.
    return b.fmul(b.uitofp(b.lshr(h, I32(8)), ty), ir.Constant(ty, 2.0 ** -24))

# ----------------------------------------------------------------------------- entry point


@contextmanager
def counted_loop(b, fn, n, name: str = "for", start=0):
    """``for i in range(start, n)`` (ints or i64 values) at ``b``'s position in ``fn``; the
    body is emitted inside the ``with`` block, which yields ``i``."""
    n = I64(n) if isinstance(n, int) else n
    start = I64(start) if isinstance(start, int) else start
    pre = b.block
    head = fn.append_basic_block(f"{name}.head")
    body = fn.append_basic_block(f"{name}.body")
    done = fn.append_basic_block(f"{name}.end")
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64)
    i.add_incoming(start, pre)
    b.cbranch(b.icmp_signed("<", i, n), body, done)
    b.position_at_end(body)
    yield i
    nxt = b.add(i, I64(1))
    i.add_incoming(nxt, b.block)
    b.branch(head)
    b.position_at_end(done)


def build_loop_kernel(module: ir.Module, name: str, kernel: LoopKernel, buffers,
                      const_ptrs: dict) -> KernelFunction:
    """Emit ``kernel`` into ``module`` as ``void name(ptr..., i64 lo, i64 hi)``.

    ``buffers``: the program's buffer table (``Buffer`` by id); ``const_ptrs``: buffer id →
    pointer constant (a module global) for buffers that are not passed as arguments."""
    reads, writes = buffers_used(kernel)
    used = sorted((reads | writes) - set(const_ptrs))
    fn = ir.Function(module, ir.FunctionType(VOID, [PTR] * len(used) + [I64, I64]), name=name)
    fn.linkage = "internal"
    # One function per kernel, optimized on its own: keeps O3 time linear in the program
    # size and keeps the noalias facts of the arguments (program.py calls each once).
    fn.attributes.add("noinline")
    fn.attributes.add("nounwind")
    ptrs = dict(const_ptrs)
    for bid, arg in zip(used, fn.args):
        # Distinct buffers never overlap (each materialized value has its own buffer;
        # inputs are only read), which is what lets LLVM vectorize freely.
        arg.add_attribute("noalias")
        arg.name = f"b{bid}"
        ptrs[bid] = arg
    lo, hi = fn.args[len(used)], fn.args[len(used) + 1]
    lo.name, hi.name = "lo", "hi"
    kernel = coalesce(kernel)
    em = _Emitter(module, fn, kernel, buffers, ptrs, lo, hi)
    em.build()
    extent = 1 if em.whole else next((d for d in kernel.shape if d > 1), 1)
    return KernelFunction(fn, used, extent)
