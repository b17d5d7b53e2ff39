"""A ``LoopKernel`` (graphc.codegen.kernel) rendered as one LLVM function.

``void @k(ptr noalias %b<i>..., i64 %lo, i64 %hi)``: one pointer per buffer the kernel
touches (constants are module globals), and the [lo, hi) range of its outermost non-unit
parallel axis, so program.py can split a kernel across threads. The body is a loop nest over
the parallel axes (innermost last) plus, for a reduction, inner loops with an accumulator.

Each expression node is computed once per iteration (memoized by node identity, the form is
a DAG) at the shallowest loop level its indices allow, so loop-invariant loads and scalars sit
outside the inner loops without relying on LICM proving them safe. Expression code is
straight-line (guards are selects over clamped loads), which keeps inner loops in the shape
LLVM's vectorizer wants. Floating-point semantics follow numpy: only ``contract`` on
elementwise add/sub/mul; reductions accumulate in a fixed order with no fast-math flags, so
results are deterministic; NaN propagates as in numpy (maximum/minimum/max/argmax).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from graphc.codegen.kernel import (Acc, Const, Expr, Guard, IndexValue, IxAdd, IxDiv, IxMod,
                                   IxMul, Lit, Load, LoopKernel, Op, Random, Var)
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
    """Inclusive [lo, hi] of an index expression over loop vars ``0 <= Var(a) < extents[a]``."""
    if isinstance(ix, Var):
        return 0, max(extents[ix.axis] - 1, 0)
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

# ----------------------------------------------------------------------------- walking


def iter_exprs(roots):
    """Every Expr node reachable from ``roots`` once (DAG walk by identity)."""
    seen, stack, out = set(), list(roots), []
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        out.append(e)
        if isinstance(e, Op):
            stack.extend(e.args)
        elif isinstance(e, Guard):
            stack.extend((e.then, e.otherwise))
        elif isinstance(e, Random):
            stack.extend((e.seed, e.counter))
        elif isinstance(e, DynLoad):
            stack.append(e.dyn)
    return out


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


# A transcendental costs about this many simple ops (a libm call, not vectorized).
_HEAVY = frozenset("exp log log1p tanh sigmoid erf pow cos sin".split())


def kernel_cost(k: LoopKernel) -> int:
    """Rough operation count of one kernel call (for the parallel split decision)."""
    per = 0
    for e in iter_exprs(kernel_roots(k)):
        per += 20 if isinstance(e, Op) and e.op in _HEAVY else 1
    points = int(np.prod(k.shape)) if k.shape else 1
    if k.reduction is not None:
        points *= int(np.prod(k.reduction.extents)) if k.reduction.extents else 1
    return points * max(per, 1)

# ----------------------------------------------------------------------------- the emitter


@dataclass
class KernelFunction:
    """A rendered kernel: ``fn(ptr for each of arg_buffers..., i64 lo, i64 hi)``; ``extent``
    is the trip count of the split axis (the outermost non-unit parallel axis; 1 if none)."""
    fn: ir.Function
    arg_buffers: list
    extent: int


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
        self.ix_memo: dict = {}
        self.lvl_memo: dict = {}
        self.lo, self.hi = lo, hi

    # -- structure ------------------------------------------------------------------
    def build(self):
        k, fn, b = self.k, self.fn, self.b
        entry = fn.append_basic_block("entry")
        exit_ = fn.append_basic_block("exit")
        b.position_at_end(exit_)
        b.ret_void()
        b.position_at_end(entry)
        if any(d == 0 for d in k.shape):
            b.branch(exit_)
            return
        par_axes = [a for a in range(self.npar) if self.extents[a] > 1]
        red_axes = [] if k.reduction is None or self.empty_red else \
            [a for a in range(self.npar, len(self.extents)) if self.extents[a] > 1]
        nest = par_axes + red_axes
        self.depth_of = {a: d for d, a in enumerate(nest)}
        npl = len(par_axes)
        has_red = k.reduction is not None
        self.POST = npl + 0.5
        bodies = [fn.append_basic_block(f"l{d}.a{a}") for d, a in enumerate(nest)]
        latches = [fn.append_basic_block(f"l{d}.latch") for d in range(len(nest))]
        post = fn.append_basic_block("post") if has_red else None
        # blocks[L]: where code needing the loop vars of depths < L goes (L = 0: entry).
        self.blocks = [entry] + bodies
        if has_red:
            self.blocks_post = post
        self.vars = [None] * len(self.extents)
        for a in range(len(self.extents)):
            if self.extents[a] <= 1:
                self.vars[a] = I64(0)
        self.accs = []
        if has_red:
            # Accumulators live in allocas (entry block) that mem2reg turns into phis across
            # however many reduction loops there are.
            self.accs = [b.alloca(reg_type(k.reduction.dtype))]
            if k.reduction.combiner == "argmax":
                self.accs.append(b.alloca(I64))

        def after_loop(d):      # where control goes when loop d is finished
            if has_red and d == npl:
                return post
            return latches[d - 1] if d > 0 else exit_

        inner_next = post if (has_red and not red_axes) else (
            latches[-1] if nest else exit_)
        split = bool(par_axes)
        for d, a in enumerate(nest):
            pred = self.blocks[d]
            b.position_at_end(pred)
            if d == 0 and split:
                b.cbranch(b.icmp_signed("<", self.lo, self.hi), bodies[0], exit_)
            else:
                b.branch(bodies[d])
            start, end = (self.lo, self.hi) if (d == 0 and split) else (I64(0), I64(self.extents[a]))
            b.position_at_end(bodies[d])
            i = b.phi(I64, name=f"i{a}")
            i.add_incoming(start, pred)
            self.vars[a] = i
            b.position_at_end(latches[d])
            nxt = b.add(i, I64(1), name=f"i{a}.next", flags=("nuw", "nsw"))
            i.add_incoming(nxt, latches[d])
            b.cbranch(b.icmp_signed("<", nxt, end), bodies[d], after_loop(d))
        b.position_at_end(self.blocks[-1])
        b.branch(inner_next)
        if has_red:
            b.position_at_end(post)
            b.branch(latches[npl - 1] if npl else exit_)
        self.red_level = npl               # the accumulator is reset at this level
        self.inner_level = len(nest)
        self._emit_body()

    def _at(self, level):
        blk = self.blocks_post if level == getattr(self, "POST", None) and \
            self.k.reduction is not None else self.blocks[int(level)]
        self.b.position_before(blk.terminator)

    # -- levels ---------------------------------------------------------------------
    def ix_level(self, ix) -> int:
        lv = 0
        for a in _ix_vars(ix, set()):
            if self.extents[a] > 1:
                lv = max(lv, self.depth_of[a] + 1)
        return lv

    def level(self, e):
        hit = self.lvl_memo.get(id(e))
        if hit is not None:
            return hit
        if isinstance(e, Load):
            lv = self.ix_level(e.index)
        elif isinstance(e, (Const,)):
            lv = 0
        elif isinstance(e, Op):
            lv = max([self.level(a) for a in e.args], default=0)
        elif isinstance(e, Guard):
            lv = max([self.ix_level(c[0]) for c in e.conds] +
                     [self.level(e.then), self.level(e.otherwise)])
        elif isinstance(e, IndexValue):
            lv = self.ix_level(e.index)
        elif isinstance(e, Random):
            lv = max(self.level(e.seed), self.level(e.counter), self.ix_level(e.flat))
        elif isinstance(e, DynLoad):
            lv = max(self.ix_level(e.base), self.level(e.dyn))
        elif isinstance(e, Acc):
            if self.k.reduction is None:
                raise GraphcError(f"kernel {self.k.name}: 'acc' outside a reduction")
            lv = self.POST
        else:
            raise TypeError(e)
        if lv != getattr(self, "POST", -1) and lv > self.inner_level:
            raise GraphcError(f"kernel {self.k.name}: bad expression level")
        self.lvl_memo[id(e)] = lv
        return lv

    # -- body -----------------------------------------------------------------------
    def _emit_body(self):
        k, b = self.k, self.b
        red = k.reduction
        if red is not None:
            # reset, update, and the stores after the reduction loops
            self._at(self.red_level)
            init = min_value(red.dtype) if red.combiner in ("max", "argmax") else \
                constant(red.dtype, 0)
            b.store(init, self.accs[0])
            if red.combiner == "argmax":
                b.store(I64(0), self.accs[1])
            if not self.empty_red:
                v = self.value(red.value)
                self._at(self.inner_level)
                self._update(red, v)
            self._stores(self.POST)
        else:
            self._stores(self.inner_level)

    def _stores(self, level):
        b = self.b
        for st in self.k.stores:
            v = self.value(st.value)
            idx = self.index(st.index)
            self._at(level)
            buf = self.buffers[st.buffer]
            v = self.convert(v, st.value.dtype, buf.dtype)
            if buf.dtype == DType.bool:
                v = b.zext(v, I8)
            p = b.gep(self.ptrs[st.buffer], [idx], inbounds=True, source_etype=mem_type(buf.dtype))
            b.store(v, p)

    def _update(self, red, v):
        b = self.b
        dt = red.dtype
        acc = b.load(self.accs[0], typ=reg_type(dt))
        if red.combiner == "sum":
            if dt.is_float:
                new = b.fadd(acc, v)          # in order, no reassociation: deterministic
            elif dt == DType.bool:
                new = b.or_(acc, v)
            else:
                new = b.add(acc, v)
            b.store(new, self.accs[0])
        elif red.combiner == "max":
            b.store(self.maximum(acc, v, dt), self.accs[0])
        elif red.combiner == "argmax":
            # First max wins; a NaN is the max (numpy) and the first NaN sticks.
            if dt.is_float:
                upd = b.and_(b.fcmp_unordered(">", v, acc),
                             b.fcmp_ordered("==", acc, acc))
            else:
                upd = (b.icmp_signed if dt in (DType.i32, DType.i64) else b.icmp_unsigned)(
                    ">", v, acc)
            flat = I64(0)
            n = len(self.k.shape)
            for a, ext in enumerate(red.extents):
                flat = b.add(b.mul(flat, I64(ext)), self.vars[n + a])
            old = b.load(self.accs[1], typ=I64)
            b.store(b.select(upd, v, acc), self.accs[0])
            b.store(b.select(upd, flat, old), self.accs[1])
        else:
            raise GraphcError(f"unknown reduction combiner {red.combiner!r}")

    # -- indices --------------------------------------------------------------------
    def index(self, ix) -> ir.Value:
        hit = self.ix_memo.get(ix)
        if hit is not None:
            return hit
        lv = self.ix_level(ix)
        self._at(lv)
        b = self.b
        if isinstance(ix, Var):
            v = self.vars[ix.axis]
        elif isinstance(ix, Lit):
            v = I64(ix.value)
        elif isinstance(ix, IxAdd):
            x, y = self.index(ix.a), self.index(ix.b)
            self._at(lv)
            v = b.add(x, y)
        elif isinstance(ix, IxMul):
            x = self.index(ix.a)
            self._at(lv)
            v = b.mul(x, I64(ix.c))
        elif isinstance(ix, (IxDiv, IxMod)):
            x = self.index(ix.a)
            self._at(lv)
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
        self.ix_memo[ix] = v
        return v

    def load(self, buffer: int, ix, dtype: DType, idx_val=None, rng=None) -> ir.Value:
        """buffers[buffer][ix], clamped into the buffer when the index may leave it (such
        loads only matter where a guard holds; clamping makes them safe everywhere)."""
        b = self.b
        buf = self.buffers[buffer]
        if buf.size == 0:
            return constant(dtype, 0)
        idx = self.index(ix) if idx_val is None else idx_val
        lo, hi = ix_range(ix, self.extents) if rng is None else rng
        if lo < 0 or hi > buf.size - 1:
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
    def value(self, e) -> ir.Value:
        hit = self.memo.get(id(e))
        if hit is not None:
            return hit
        lv = self.level(e)
        v = self._value(e, lv)
        self.memo[id(e)] = v
        return v

    def _value(self, e, lv):
        b = self.b
        if isinstance(e, Load):
            self.index(e.index)
            self._at(lv)
            return self.load(e.buffer, e.index, e.dtype)
        if isinstance(e, Const):
            return constant(e.dtype, e.value)
        if isinstance(e, Op):
            args = [self.value(a) for a in e.args]
            self._at(lv)
            return self.op(e.op, args, [a.dtype for a in e.args], e.dtype, e.attrs)
        if isinstance(e, Guard):
            then, other = self.value(e.then), self.value(e.otherwise)
            conds = []
            for ix, lo, hi in e.conds:
                rlo, rhi = ix_range(ix, self.extents)
                if rlo >= lo and rhi < hi:
                    continue            # always holds
                v = self.index(ix)
                self._at(lv)
                if rlo < lo:
                    conds.append(b.icmp_signed(">=", v, I64(lo)))
                if rhi >= hi:
                    conds.append(b.icmp_signed("<", v, I64(hi)))
            self._at(lv)
            if not conds:
                return then
            c = conds[0]
            for x in conds[1:]:
                c = b.and_(c, x)
            return b.select(c, then, other)
        if isinstance(e, IndexValue):
            v = self.index(e.index)
            self._at(lv)
            return self.convert(v, DType.i64, e.dtype)
        if isinstance(e, Random):
            key = self.random_key(e.seed, e.counter, e.salt)
            flat = self.index(e.flat)
            self._at(lv)
            return self.random_value(key, flat, e.dtype)
        if isinstance(e, DynLoad):
            d = self.value(e.dyn)
            base = self.index(e.base)
            self._at(lv)
            d64 = self.convert(d, e.dyn.dtype, DType.i64)
            ok = b.and_(b.icmp_signed(">=", d64, I64(0)), b.icmp_signed("<", d64, I64(e.bound)))
            safe = b.select(ok, d64, I64(0))
            idx = b.add(base, b.mul(safe, I64(e.stride)))
            lo, hi = ix_range(e.base, self.extents)
            v = self.load(e.buffer, None, e.dtype, idx_val=idx,
                          rng=(lo, hi + (e.bound - 1) * e.stride))
            return b.select(ok, v, constant(e.dtype, 0))
        if isinstance(e, Acc):
            self._at(lv)
            red = self.k.reduction
            if red.combiner == "argmax":
                return self.convert(b.load(self.accs[1], typ=I64), DType.i64, e.dtype)
            return self.convert(b.load(self.accs[0], typ=reg_type(red.dtype)), red.dtype,
                                e.dtype)
        raise TypeError(e)

    # -- random ---------------------------------------------------------------------
    def random_key(self, seed_e, counter_e, salt):
        k = ("rkey", id(seed_e), id(counter_e), salt)
        hit = self.memo.get(k)
        if hit is not None:
            return hit
        seed, counter = self.value(seed_e), self.value(counter_e)
        self._at(max(self.level(seed_e), self.level(counter_e)))
        seed = self.convert(seed, seed_e.dtype, DType.i64)
        counter = self.convert(counter, counter_e.dtype, DType.i64)
        v = random_key_ir(self.b, seed, counter, salt)
        self.memo[k] = v
        return v

    def random_value(self, key, flat, dt):
        return random_value_ir(self.b, key, flat, dt)

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
            e = b.call(self.intrinsic("exp", dt), [b.fneg(b.call(self.intrinsic("fabs", dt), [x]))])
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
    em = _Emitter(module, fn, kernel, buffers, ptrs, lo, hi)
    em.build()
    extent = next((d for d in kernel.shape if d > 1), 1)
    return KernelFunction(fn, used, extent)
