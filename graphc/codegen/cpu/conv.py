"""Direct NHWC convolution kernels — forward, backprop-input, backprop-filter — generated as
LLVM IR specialized on static shapes, with a channel axis in ``<V x float>`` registers, a
register tile of output pixels (or filter taps) and ``llvm.fma`` accumulation.

Every ``emit_*`` adds ONE function to a given ``llvmlite.ir.Module`` and returns it:

    void name(ptr noalias in0, ptr noalias in1, <epilogue args...>, ptr noalias out,
              i64 begin, i64 end)

float32, row-major contiguous NHWC activations and HWIO (``[KH, KW, Cin/groups, Cout]``)
filters, exactly the semantics of ``graphc/ir/ops/nn.py``. A call writes the slice
``[begin, end)`` of the function's *split axis* of ``out`` completely (zero-filling what no
tap reaches) and touches nothing else, so a runtime can hand disjoint slices to threads:

    conv2d                  batch N of y                                  extent N
    conv2d_backprop_input   batch N of dx                                 extent N
    conv2d_backprop_filter  work units over dw: (group, lane-vector group, extent: see
                            channel chunk, tap tile); each unit reduces     fn.split_extent
                            over all of N*OH*OW — no cross-thread reduction

``fn.split_extent`` (a Python attribute) gives the extent for every function, and
``emit_parallel_entry`` wraps a kernel into a whole-tensor entry on the thread pool.
Every output element is summed in one fixed order that does not depend on the split or on
which tile variant computed it (forward: kh, ci, kw; backprop-input: kh, co, kw;
backprop-filter: n, oh, ow; the reduction-lane variants add a fixed lane-halving tree),
so results are bit-identical run to run and across splits.

Why direct convolution rather than im2col + the packed GEMM (measured, one core of the
Zen 4 VM, LeNet-5 layers at batch 64, ``benchmarks/bench_conv.py``): direct reaches
87 / 74 GFLOP/s (conv1 forward / filter gradient; 6 of 8 lanes busy with Cout = 6) and
110 / 83 / 113 (conv2 forward / input / filter gradient), while gemm.py's kernel alone
on the im2col shapes — not counting the im2col copy (25x the input) or col2im — gets
21 / 13 and 79 / 91 / 68: a 784x25 @ 25x6 product is far too skinny for an 8x32 tile.
Specializing on the shape instead lets a register tile cover a whole output row (or
13-24 filter taps) with Cout in one register. Wider layers stay fast too (3x3, 64 -> 64
channels: 120 / 118 / 113 GFLOP/s direct vs 79 / 92 / 89 GEMM-only), so there is no
im2col path.
"""
from __future__ import annotations

import ctypes
import inspect
from typing import Callable

import numpy as np
from llvmlite import ir

from graphc.codegen.cpu import gemm as G
from graphc.codegen.cpu import jit
from graphc.ir.ops import nn as _nn

__all__ = [
    "emit_conv2d", "emit_conv2d_backprop_input", "emit_conv2d_backprop_filter",
    "emit_parallel_entry", "pick_width", "ctypes_caller", "conv_flops",
]

F32 = ir.FloatType()
I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()
VOID = ir.VoidType()

# Scratch (padded input copy, packed filter) up to this size lives on the stack of the
# calling thread; larger buffers come from aligned_alloc (pool workers have 8 MiB stacks).
_STACK_BYTES = 128 * 1024


# --------------------------------------------------------------------------------------
# choices
# --------------------------------------------------------------------------------------

def _host_width(vector_width: int | None) -> int:
    vw = jit.vector_width() if vector_width is None else int(vector_width)
    if vw not in (4, 8, 16):
        raise ValueError(f"vector width must be 4, 8 or 16, got {vector_width}")
    return vw


def pick_width(n: int, vw: int) -> int:
    """Lanes per vector for a channel axis of ``n`` on a host whose widest vector is ``vw``.

    Cost model: a 16-lane FMA costs two 8-lane ones (Zen 4 double-pumps zmm; xmm and ymm
    FMAs issue at the same rate), so pick the width with the fewest padded 8-lane units,
    ties to the wider one (fewer instructions): 6 -> 8 lanes (6/8 useful, not 6/16),
    16 -> 16, 17 -> 8 (3 ymm, not 2 zmm), 1 -> 8."""
    best = None
    for w in (16, 8, 4):
        if w > vw:
            continue
        cost = -(-n // w) * max(w, 8)
        if best is None or cost < best[0]:
            best = (cost, w)
    return best[1]


def _acc_budget(vw: int, kind: str = "fwd") -> int:
    """Accumulator vectors in a register tile. AVX-512 has 32 vector registers (ymm too,
    through EVEX) and folds each broadcast into its FMA ({1to16} memory operand), so 24
    accumulators leave room for the weights. AVX2 has 16 and needs a register per
    broadcast; measured on the LeNet shapes (haswell code), fewer accumulators than
    registers win: 10 for the forward, 8 for backprop-input (its broadcasts stay live
    across kw), 12 for backprop-filter (one vector operand per position)."""
    if vw == 16:
        return 24
    return {"fwd": 10, "bi": 8, "bf": 12}[kind]


def _balanced(n: int, cap: int) -> int:
    """Tile size <= cap that splits n into the fewest, most even tiles."""
    cap = max(1, min(cap, n))
    tiles = -(-n // cap)
    return -(-n // tiles)


def _tile_plan(n: int, cap: int, interior: Callable[[int, int], bool]):
    """Split n pixels into register tiles of balanced size <= cap: [(start, count, size,
    static)]. Tiles whose every (pixel, tap) pair reads real data (``interior(start,
    size)``) and that come in runs of 2+ become one IR loop; the others (borders,
    remainder) are emitted with static pixel positions, so the taps that would read
    padding are left out at generation time rather than multiplied by zeros."""
    R = _balanced(n, cap)
    tiles = [(s, min(R, n - s)) for s in range(0, n, R)]
    plan = []
    for s, size in tiles:
        inner = size == R and interior(s, size)
        if inner and plan and not plan[-1][3] and plan[-1][2] == size \
                and plan[-1][0] + plan[-1][1] * size == s:
            st, cnt, sz, _ = plan[-1]
            plan[-1] = (st, cnt + 1, sz, False)
        else:
            plan.append((s, 1, size, not inner))
    # A lone interior tile is emitted statically as well (no loop for one iteration).
    return [(st, cnt, sz, static or cnt == 1) for st, cnt, sz, static in plan]


def _emit_tiles(F: "_Fn", plan, tile):
    """Run ``tile(start, size, static)`` over a plan (start: int when static, else i64)."""
    for st, cnt, sz, static in plan:
        if static:
            for k in range(cnt):
                tile(st + k * sz, sz, True)
        else:
            F.loop(0, cnt, lambda t, _, st=st, sz=sz: tile(F.idx(F.mul(t, sz), st), sz,
                                                           False), name="tile")


def _lane_eff(n: int, vw: int) -> float:
    w = pick_width(n, vw)
    return n / (-(-n // w) * w)


def _reduce_lanes(out_ch: int, red_ch: int, vw: int) -> bool:
    """Put the *reduction* channels in the vector lanes (and sum the lanes at the end)
    instead of the output channels? Only when the output channels would leave most lanes
    empty (a 1-channel conv: 1 of 8 lanes) and the reduced channels fill them clearly
    better; the horizontal sums cost log2(V) shuffle+adds per output element."""
    eo, er = _lane_eff(out_ch, vw), _lane_eff(red_ch, vw)
    return eo < 0.5 and er > 1.5 * eo


def conv_flops(y_shape, w_shape) -> int:
    """2 * multiply-adds of a conv2d (also of its two gradient forms)."""
    n, oh, ow, co = y_shape
    kh, kw, cg, _ = w_shape
    return 2 * n * oh * ow * co * kh * kw * cg


# --------------------------------------------------------------------------------------
# IR building
# --------------------------------------------------------------------------------------

def _vty(w):
    return ir.VectorType(F32, w)


def _decl(module, name, ret, args):
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, args), name=name)
    return fn


def _c(v):
    return I64(v) if isinstance(v, int) else v


class _Fn:
    """One generated function with the plain ABI and small builder helpers.

    Index arithmetic accepts Python ints and i64 values mixed; ints fold at generation
    time, so static parts of an address cost nothing."""

    def __init__(self, module: ir.Module, name: str, n_in: int, extra_types=(),
                 split_extent: int = 0):
        args = [PTR] * n_in + list(extra_types) + [PTR, I64, I64]
        self.m = module
        self.fn = ir.Function(module, ir.FunctionType(VOID, args), name=name)
        self.fn.attributes.add("nounwind")
        self.fn.split_extent = split_extent
        a = self.fn.args
        self.ins = list(a[:n_in])
        self.extra = tuple(a[n_in:n_in + len(extra_types)])
        self.out, self.begin, self.end = a[-3], a[-2], a[-1]
        # noalias: the inputs and the output never overlap, which is what lets LLVM keep
        # loaded values and vectorize the copy/pack loops.
        for p in self.ins + [self.out]:
            p.add_attribute("noalias")
        names = [f"in{i}" for i in range(n_in)] + [f"e{i}" for i in range(len(extra_types))]
        for p, nm in zip(a, names + ["out", "begin", "end"]):
            p.name = nm
        self.b = ir.IRBuilder(self.fn.append_basic_block("entry"))
        self._frees = []

    # ---- integers and pointers ---------------------------------------------------------
    def idx(self, *terms):
        const = sum(t for t in terms if isinstance(t, int))
        acc = None
        for t in terms:
            if not isinstance(t, int):
                acc = t if acc is None else self.b.add(acc, t)
        if acc is None:
            return I64(const)
        return self.b.add(acc, I64(const)) if const else acc

    def mul(self, v, c: int):
        if isinstance(v, int):
            return v * c
        if c == 1:
            return v
        if c == 0:
            return 0
        return self.b.mul(v, I64(c))

    def ptr(self, base, *terms):
        if all(isinstance(t, int) for t in terms) and sum(terms) == 0:
            return base
        return self.b.gep(base, [self.idx(*terms)], inbounds=True, source_etype=F32)

    # ---- scalar / vector memory --------------------------------------------------------
    def load(self, p):
        return self.b.load(p, typ=F32, align=4)

    @staticmethod
    def mask(w, lanes):
        return ir.Constant(ir.VectorType(I1, w), [1 if i < lanes else 0 for i in range(w)])

    def vload(self, p, w, lanes=None):
        if lanes is None or lanes >= w:
            return self.b.load(p, typ=_vty(w), align=4)
        fn = _decl(self.m, f"llvm.masked.load.v{w}f32.p0", _vty(w),
                   [PTR, I32, ir.VectorType(I1, w), _vty(w)])
        return self.b.call(fn, [p, I32(4), self.mask(w, lanes), ir.Constant(_vty(w), None)])

    def vstore(self, v, p, lanes=None):
        w = v.type.count
        if lanes is None or lanes >= w:
            self.b.store(v, p, align=4)
            return
        fn = _decl(self.m, f"llvm.masked.store.v{w}f32.p0", VOID,
                   [_vty(w), PTR, I32, ir.VectorType(I1, w)])
        self.b.call(fn, [v, p, I32(4), self.mask(w, lanes)])

    def splat(self, x, w):
        v = self.b.insert_element(ir.Constant(_vty(w), ir.Undefined), x, I32(0))
        return self.b.shuffle_vector(v, ir.Constant(_vty(w), ir.Undefined),
                                     ir.Constant(ir.VectorType(I32, w), [0] * w))

    def hsum(self, v):
        """Sum of the lanes of v by halving (a fixed tree: deterministic)."""
        b, w = self.b, v.type.count
        while w > 1:
            h = w // 2
            und = ir.Constant(v.type, ir.Undefined)
            lo = b.shuffle_vector(v, und, ir.Constant(ir.VectorType(I32, h), list(range(h))))
            hi = b.shuffle_vector(v, und, ir.Constant(ir.VectorType(I32, h),
                                                      list(range(h, w))))
            v = b.fadd(lo, hi)
            w = h
        return b.extract_element(v, I32(0))

    def gather_vector(self, scalars, w):
        """<w x float> with lanes = scalars (the rest zero)."""
        v = self.zeros(w)
        for i, s in enumerate(scalars):
            v = self.b.insert_element(v, s, I32(i))
        return v

    def fma(self, x, y, z):
        w = x.type.count
        fn = _decl(self.m, f"llvm.fma.v{w}f32", _vty(w), [_vty(w)] * 3)
        return self.b.call(fn, [x, y, z])

    @staticmethod
    def zeros(w):
        return ir.Constant(_vty(w), None)

    def memset0(self, p, nfloats):
        if isinstance(nfloats, int) and nfloats <= 0:
            return
        fn = _decl(self.m, "llvm.memset.p0.i64", VOID, [PTR, I8, I64, I1])
        self.b.call(fn, [p, I8(0), self.idx(self.mul(nfloats, 4)), I1(0)])

    def memcpy(self, dst, src, nfloats: int):
        if nfloats <= 0:
            return
        fn = _decl(self.m, "llvm.memcpy.p0.p0.i64", VOID, [PTR, PTR, I64, I1])
        self.b.call(fn, [dst, src, I64(4 * nfloats), I1(0)])

    def buffer(self, nfloats: int):
        """Scratch of ``nfloats`` floats, 64-byte aligned; call before any control flow
        (stack buffers must be static allocas of the entry block)."""
        nbytes = max(4 * nfloats, 4)
        if nbytes <= _STACK_BYTES:
            a = self.b.alloca(ir.ArrayType(F32, max(nfloats, 1)))
            a.align = 64
            a.type = PTR   # llvmlite types allocas as typed pointers; we use opaque ones
            return a
        alloc = _decl(self.m, "aligned_alloc", PTR, [I64, I64])
        p = self.b.call(alloc, [I64(64), I64(-(-nbytes // 64) * 64)])
        self._frees.append(p)
        return p

    def ret(self):
        if self._frees:
            free = _decl(self.m, "free", VOID, [PTR])
            for p in self._frees:
                self.b.call(free, [p])
        self.b.ret_void()
        return self.fn

    # ---- control flow ------------------------------------------------------------------
    def loop(self, start, stop, body: Callable, carry=(), step: int = 1, name="i"):
        """``for i in range(start, stop, step)`` with loop-carried values: ``body(i,
        carry) -> new carry`` (or None without carry). Returns the final carry."""
        b = self.b
        if isinstance(start, int) and isinstance(stop, int) and start >= stop:
            return list(carry)
        start, stop = _c(start), _c(stop)
        pre = b.block
        head = b.append_basic_block(f"{name}.head")
        body_bb = b.append_basic_block(f"{name}.body")
        exit_bb = b.append_basic_block(f"{name}.end")
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64, name)
        phis = [b.phi(c.type) for c in carry]
        i.add_incoming(start, pre)
        for p, c in zip(phis, carry):
            p.add_incoming(c, pre)
        b.cbranch(b.icmp_signed("<", i, stop), body_bb, exit_bb)
        b.position_at_end(body_bb)
        new = body(i, list(phis))
        new = list(new) if new is not None else []
        assert len(new) == len(phis)
        nxt = b.add(i, I64(step))
        latch = b.block
        i.add_incoming(nxt, latch)
        for p, v in zip(phis, new):
            p.add_incoming(v, latch)
        b.branch(head)
        b.position_at_end(exit_bb)
        return list(phis)

    def repeat(self, start: int, count: int, body: Callable, carry=(), name="r"):
        """``count`` iterations from ``start``: static (Python int index) when count is 1,
        an IR loop otherwise — the usual 'uniform part in a loop' helper."""
        if count <= 0:
            return list(carry)
        if count == 1:
            new = body(start, list(carry))
            return list(new) if new is not None else []
        return self.loop(start, start + count, body, carry, name=name)

    def when(self, cond, then: Callable, carry=()):
        """``if cond: carry = then(carry)`` — merged with phis."""
        b = self.b
        pre = b.block
        then_bb = b.append_basic_block("when")
        join = b.append_basic_block("when.end")
        b.cbranch(cond, then_bb, join)
        b.position_at_end(then_bb)
        new = then(list(carry))
        new = list(new) if new is not None else []
        end = b.block
        b.branch(join)
        b.position_at_end(join)
        out = []
        for c, v in zip(carry, new):
            p = b.phi(c.type)
            p.add_incoming(c, pre)
            p.add_incoming(v, end)
            out.append(p)
        return out

    def choose(self, cond, on_true: Callable, on_false: Callable):
        """Emit ``on_true()`` or ``on_false()`` by ``cond`` (no values merged)."""
        with self.b.if_else(cond) as (t, f):
            with t:
                on_true()
            with f:
                on_false()


class _Padded:
    """Per-image view of an NHWC tensor with a zero border: either the tensor itself (no
    border needed) or a scratch copy of ``Hn x Wn`` pixels with the image at (top, left),
    with room for ``slots`` images. The scratch is zeroed once per call; each image only
    overwrites its interior, so the border stays zero. Removing bounds checks from the
    inner loops this way costs one copy of the image (a few KiB for the target shapes)
    instead of a branch per tap."""

    def __init__(self, F: _Fn, src, H, W, C, top, left, Hn, Wn, slots: int = 1):
        self.F, self.src = F, src
        self.H, self.W, self.C = H, W, C
        self.top, self.left = top, left
        self.direct = top == 0 and left == 0 and Hn <= H and Wn <= W
        if self.direct:
            self.pitch = W * C
            self.stride = H * W * C
            return
        self.pitch = Wn * C
        self.stride = Hn * Wn * C
        self.buf = F.buffer(slots * self.stride)
        self.rows = max(0, min(H, Hn - top))
        self.cols = max(0, min(W, Wn - left))
        F.memset0(self.buf, slots * self.stride)

    def image(self, n, slot=0):
        """Base pointer of image n (copied into ``slot`` of the scratch if padded)."""
        F = self.F
        H, W, C = self.H, self.W, self.C
        img = F.ptr(self.src, F.mul(n, H * W * C))
        if self.direct:
            return img
        dst = F.ptr(self.buf, F.mul(slot, self.stride))

        def row(r, _):
            F.memcpy(F.ptr(dst, F.mul(r, self.pitch), self.top * self.pitch + self.left * C),
                     F.ptr(img, F.mul(r, W * C)), self.cols * C)
        if self.cols > 0:
            F.loop(0, self.rows, row, name="pad")
        return dst


def _as_epilogue(ep):
    if ep is None or isinstance(ep, G.Epilogue):
        return ep
    if not callable(ep):
        raise TypeError(f"epilogue must be a gemm.Epilogue or a callable, got {ep!r}")
    try:
        nparams = len(inspect.signature(ep).parameters)
    except (TypeError, ValueError):
        nparams = 5
    if nparams == 3:
        # The bare hook ``(builder, acc_vector, channel_index) -> vector``.
        return G.Epilogue(lambda b, acc, row, col, ctx: ep(b, acc, col), (),
                          getattr(ep, "__name__", "custom"))
    return G.Epilogue(ep, (), getattr(ep, "__name__", "custom"))


def _store_out(F: _Fn, ep, acc, p, lanes, w, row, col):
    """Store one output vector, running the epilogue first (row: flat pixel index,
    col: channel of lane 0)."""
    if ep is not None:
        ctx = G.EpilogueContext(w, F.mask(w, lanes) if lanes < w else None, F.extra, F.m)
        acc = ep.emit(F.b, acc, F.idx(row), F.idx(col), ctx)
    F.vstore(acc, p, lanes)


def _co_groups(nvec: int, NV: int, n: int, V: int):
    """Vector groups over a channel axis of n lanes: (first group, count, vectors per
    group, lanes of the last vector) for the run of full groups and the tail group."""
    ncg = -(-nvec // NV)
    last_lanes = n - (nvec - 1) * V
    kinds = []
    full = nvec // NV if last_lanes == V else (nvec - 1) // NV
    if full:
        kinds.append((0, full, NV, V))
    if ncg > full:
        kinds.append((full, 1, nvec - full * NV, last_lanes))
    return ncg, kinds


def _conv_geometry(op, a_shape, w_shape, strides, padding, dilation, groups):
    attrs = {"strides": tuple(int(s) for s in strides),
             "padding": tuple(tuple(int(p) for p in q) for q in padding),
             "dilation": tuple(int(d) for d in dilation), "groups": int(groups)}
    _nn._conv_attrs_check(op, attrs)
    return attrs, _nn._conv_shape(op, tuple(a_shape), tuple(w_shape), attrs)


# --------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------

def emit_conv2d(module: ir.Module, name: str, x_shape, w_shape, strides=(1, 1),
                padding=((0, 0), (0, 0)), dilation=(1, 1), groups: int = 1, epilogue=None,
                *, vector_width: int | None = None) -> ir.Function:
    """``void name(x, w, <epilogue args>, y, i64 begin, i64 end)``: y[begin:end] =
    conv2d(x, w)[begin:end] over the batch axis (then the epilogue per output vector).

    Schedule: for each image, output row and Cout vector group, a register tile of R
    consecutive output pixels x NV Cout vectors (R*NV <= 24 accumulators with AVX-512)
    accumulates over kh (loop), ci (loop) and kw (unrolled): each tap's weights are one
    vector over Cout, each input value one broadcast — shared between the (pixel, kw)
    pairs that read it, so a 5-wide kernel over a 14-pixel tile loads 18 broadcasts for
    70 FMAs (with AVX-512 the broadcasts fold into the FMAs as {1to16} operands).
    Padding: the image is copied with a zero border (``_Padded``), kernel rows that hit
    padding are skipped by a per-row kh range, and border tiles (static pixel positions)
    leave out the (pixel, kw) pairs in padded columns. A Cout that is not a multiple of
    the vector width is padded in a packed filter copy and stored masked. With very few
    output channels (1 of 8 lanes) the lanes run over the input channels instead and are
    summed at the store.

    ``epilogue``: a ``gemm.Epilogue`` (its ``emit(b, acc, row, col, ctx)`` sees row = flat
    output pixel n*OH*OW + oh*OW + ow, col = output channel of lane 0; its ``arg_types``
    become arguments after w) or a bare ``(builder, acc, channel_index) -> vector``.
    """
    attrs, y_shape = _conv_geometry("conv2d", x_shape, w_shape, strides, padding, dilation,
                                    groups)
    N, H, W, C = x_shape
    KH, KW, cg, CO = w_shape
    _, OH, OW, _ = y_shape
    (sh, sw), (dh, dw) = attrs["strides"], attrs["dilation"]
    (pt, _), (pl, _) = attrs["padding"]
    g = attrs["groups"]
    og = CO // g
    vw = _host_width(vector_width)
    rv = _reduce_lanes(og, cg, vw)
    if rv:
        # Few output channels (e.g. 1): lanes over the in-channels instead, one vector
        # accumulator per (pixel, output channel), lanes summed at the store.
        V = pick_width(cg, vw)
        nvb = -(-cg // V)
        CGP = nvb * V
        kinds = [(0, 1, 1, og)]
        NV, NVV, cap = 1, 0, max(1, _acc_budget(vw) // og)
    else:
        V = pick_width(og, vw)
        nvec = -(-og // V)
        NV = min(nvec, 2)
        NVV = NV * V
        ncg, kinds = _co_groups(nvec, NV, og, V)
        cap = max(1, _acc_budget(vw) // NV)
    ep = _as_epilogue(epilogue)
    F = _Fn(module, name, 2, ep.arg_types if ep else (), split_extent=N)
    x, w = F.ins
    b = F.b

    # Filter: read in place when Cout per group is whole vectors; else a zero-padded copy
    # [KH*KW*cg][g][ncg*NVV] so every weight load is a full vector. (Reduction lanes:
    # [g][og][KH*KW][ci padded], a vector over ci per (co, tap).)
    if rv:
        wbase, WP, GS = F.buffer(g * og * KH * KW * CGP), 0, 0
    elif og % V == 0:
        wbase, WP, GS = w, CO, og
    else:
        GS = ncg * NVV
        WP = g * GS
        wbase = F.buffer(KH * KW * cg * WP)
    Hn = (OH - 1) * sh + (KH - 1) * dh + 1
    Wn = (OW - 1) * sw + (KW - 1) * dw + 1
    pad = _Padded(F, x, H, W, C, pt, pl, Hn, Wn)
    if rv:
        F.memset0(wbase, g * og * KH * KW * CGP)

        def pack_tap(t, _):
            for gi in range(g):
                for co in range(og):
                    def ci_loop(ci, _, gi=gi, co=co):
                        v = F.load(F.ptr(w, F.mul(t, cg * CO), F.mul(ci, CO), gi * og + co))
                        F.b.store(v, F.ptr(wbase, F.mul(t, CGP), ci,
                                           (gi * og + co) * KH * KW * CGP), align=4)
                    F.loop(0, cg, ci_loop, name="pk.ci")
        F.loop(0, KH * KW, pack_tap, name="pack")
    elif og % V:
        F.memset0(wbase, KH * KW * cg * WP)

        def pack_row(r, _):
            src = F.ptr(w, F.mul(r, CO))
            dst = F.ptr(wbase, F.mul(r, WP))
            for gi in range(g):
                F.memcpy(F.ptr(dst, gi * GS), F.ptr(src, gi * og), og)
        F.loop(0, KH * KW * cg, pack_row, name="pack")
    pitch = pad.pitch

    def image(n, _):
        xb = pad.image(n)

        def row(oh, _):
            xrow = F.ptr(xb, F.mul(oh, sh * pitch))
            orow = F.idx(F.mul(n, OH * OW), F.mul(oh, OW))
            khr = kh_range(oh)

            def group(gi, _):
                for q0, qn, nv, lanes in kinds:
                    def cogroup(q, _, nv=nv, lanes=lanes):
                        wq = F.ptr(wbase, F.mul(gi, GS), F.mul(q, NVV))
                        _emit_tiles(F, plan, lambda ow0, Rt, static: tile(
                            xrow, orow, khr, gi, q, wq, ow0, Rt, nv, lanes, static))
                    F.repeat(q0, qn, cogroup, name="cog")
            F.repeat(0, g, group, name="grp")
        F.loop(0, OH, row, name="oh")

    def kh_range(oh):
        # The kernel rows that land on real input rows: (pt - oh*sh)/dh <= kh <=
        # (H - 1 + pt - oh*sh)/dh — the padded rows are skipped, not multiplied by zero.
        if pt == 0 and Hn <= H:
            return 0, KH
        a = b.sub(I64(pt), F.mul(oh, sh))
        pos = b.icmp_signed(">", a, I64(0))
        lo = b.select(pos, b.sdiv(b.add(a, I64(dh - 1)), I64(dh)) if dh > 1 else a, I64(0))
        top = b.add(a, I64(H - 1))
        hi = b.add(b.sdiv(top, I64(dh)) if dh > 1 else top, I64(1))
        hi = b.select(b.icmp_signed("<", top, I64(0)), I64(0), hi)
        hi = b.select(b.icmp_signed(">", hi, I64(KH)), I64(KH), hi)
        return lo, hi

    def col_ok(ow, kw):
        c = ow * sw - pl + kw * dw
        return 0 <= c < W

    plan = _tile_plan(OW, cap, lambda s0, n0: all(
        col_ok(ow, kw) for ow in range(s0, s0 + n0) for kw in range(KW)))

    def tile_rv(xrow, orow, khr, gi, ow0, Rt, static):
        accs = [F.zeros(V)] * (Rt * og)
        wg = F.ptr(wbase, F.mul(gi, og * KH * KW * CGP))

        def kh_body(kh, accs):
            xk = F.ptr(xrow, F.mul(kh, dh * pitch), F.mul(ow0, sw * C), F.mul(gi, cg))
            wk = F.ptr(wg, F.mul(kh, KW * CGP))

            def block(cb, accs, lanes):
                accs = list(accs)
                xc = F.ptr(xk, F.mul(cb, V))
                wc = F.ptr(wk, F.mul(cb, V))
                for kw in range(KW):
                    rs = [r for r in range(Rt) if not static or col_ok(ow0 + r, kw)]
                    if not rs:
                        continue
                    wv = [F.vload(F.ptr(wc, co * KH * KW * CGP + kw * CGP), V)
                          for co in range(og)]
                    for r in rs:
                        # Masked: lanes past the group's channels may hold inf/NaN.
                        xv = F.vload(F.ptr(xc, (r * sw + kw * dw) * C), V, lanes)
                        for co in range(og):
                            accs[r * og + co] = F.fma(xv, wv[co], accs[r * og + co])
                return accs
            accs = F.repeat(0, cg // V, lambda cb, a: block(cb, a, V), accs, name="cb")
            if cg % V:
                accs = block(cg // V, accs, cg % V)
            return accs
        accs = F.loop(khr[0], khr[1], kh_body, accs, name="kh")
        Vo = pick_width(og, vw)
        for r in range(Rt):
            pix = F.idx(orow, ow0, r)
            vec = F.gather_vector([F.hsum(accs[r * og + co]) for co in range(og)], Vo)
            col = F.mul(gi, og)
            _store_out(F, ep, vec, F.ptr(F.out, F.mul(pix, CO), col), og, Vo, pix, col)

    def tile(xrow, orow, khr, gi, q, wq, ow0, Rt, nv, lanes, static):
        if rv:
            return tile_rv(xrow, orow, khr, gi, ow0, Rt, static)
        accs = [F.zeros(V)] * (Rt * nv)

        def kh_body(kh, accs):
            xk = F.ptr(xrow, F.mul(kh, dh * pitch), F.mul(ow0, sw * C), F.mul(gi, cg))
            wk = F.ptr(wq, F.mul(kh, KW * cg * WP))

            def ci_body(ci, accs):
                xc = F.ptr(xk, ci)
                wc = F.ptr(wk, F.mul(ci, WP))
                accs = list(accs)
                for kw in range(KW):
                    rs = [r for r in range(Rt) if not static or col_ok(ow0 + r, kw)]
                    if not rs:
                        continue
                    wv = [F.vload(F.ptr(wc, kw * cg * WP + v * V), V) for v in range(nv)]
                    for r in rs:
                        xs = F.splat(F.load(F.ptr(xc, (r * sw + kw * dw) * C)), V)
                        for v in range(nv):
                            accs[r * nv + v] = F.fma(xs, wv[v], accs[r * nv + v])
                return accs
            return F.loop(0, cg, ci_body, accs, name="ci")
        accs = F.loop(khr[0], khr[1], kh_body, accs, name="kh")
        for r in range(Rt):
            pix = F.idx(orow, ow0, r)
            op = F.ptr(F.out, F.mul(pix, CO))
            for v in range(nv):
                col = F.idx(F.mul(gi, og), F.mul(q, NVV), v * V)
                ln = lanes if v == nv - 1 else V
                _store_out(F, ep, accs[r * nv + v], F.ptr(op, col), ln, V, pix, col)

    F.loop(F.begin, F.end, image, name="n")
    return F.ret()


# --------------------------------------------------------------------------------------
# gradient w.r.t. the input
# --------------------------------------------------------------------------------------

def emit_conv2d_backprop_input(module: ir.Module, name: str, dy_shape, w_shape, input_shape,
                               strides=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1),
                               groups: int = 1, epilogue=None, *,
                               vector_width: int | None = None) -> ir.Function:
    """``void name(dy, w, <epilogue args>, dx, i64 begin, i64 end)``: dx[begin:end] over the
    batch axis, without scatter: each dx pixel gathers from the dy positions that read it.

    dx[ih, iw, ci] = sum over kh with oh*sh = ih + pt - kh*dh (0 <= oh < OH; a runtime
    test per kh, outside the hot loop), over co, and over the kw with ow*sw = iw + pl -
    kw*dw — which kw qualify depends only on iw mod sw, so columns are processed per
    residue class with a static kw list and a register tile of R same-class pixels x NV
    vectors over the in-channels. Border tiles are emitted with static positions and
    leave out the (pixel, kw) pairs whose ow falls outside [0, OW) — no zero padding is
    read or multiplied (LeNet conv2: 60 -> 83 GFLOP/s). The filter is packed transposed,
    [KH*KW*og][g][Cin/g padded], so the weights for one (tap, co) are a vector over ci.
    Summation order per element: kh, co, kw. With very few input channels (a 1-channel
    ``Conv2DTranspose`` output) the lanes run over co instead and are summed at the
    store. The epilogue (e.g. an activation gradient, or bias + activation when this is
    a transposed convolution's forward) sees row = flat dx pixel and col = input channel
    of lane 0."""
    attrs, y_shape = _conv_geometry("conv2d_backprop_input", input_shape, w_shape, strides,
                                    padding, dilation, groups)
    if tuple(dy_shape) != tuple(y_shape):
        from graphc.errors import ShapeError
        raise ShapeError(f"conv2d_backprop_input: dy shape: expected {list(y_shape)} "
                         f"(conv2d of input_shape {list(input_shape)} with filter "
                         f"{list(w_shape)}), got {list(dy_shape)}")
    N, H, W, C = input_shape
    KH, KW, cg, CO = w_shape
    _, OH, OW, _ = y_shape
    (sh, sw), (dh, dw) = attrs["strides"], attrs["dilation"]
    (pt, _), (pl, _) = attrs["padding"]
    g = attrs["groups"]
    og = CO // g
    vw = _host_width(vector_width)
    rv = _reduce_lanes(cg, og, vw)
    if rv:
        # Few input channels (e.g. a 1-channel Conv2DTranspose output): lanes over the
        # output channels co — contiguous in both dy and w, so no packing — one vector
        # accumulator per (pixel, ci), lanes summed at the store.
        V = pick_width(og, vw)
        kinds = [(0, 1, 1, cg)]
        NV, NVV, CGP, WP = 1, 0, 0, 0
        acc_cap = max(1, _acc_budget(vw, "bi") // cg)
    else:
        V = pick_width(cg, vw)
        nvec = -(-cg // V)
        NV = min(nvec, 2)
        NVV = NV * V
        ncg, kinds = _co_groups(nvec, NV, cg, V)
        CGP = ncg * NVV
        WP = g * CGP
        acc_cap = max(1, _acc_budget(vw, "bi") // NV)
    ep = _as_epilogue(epilogue)
    F = _Fn(module, name, 2, ep.arg_types if ep else (), split_extent=N)
    dy, w = F.ins

    # Column plan per residue class rw of iw mod sw: the (kw, ow offset c) pairs that
    # can contribute (ow = j + c for iw = rw + sw*j), and register tiles over j; a pair
    # whose ow falls outside [0, OW) is dropped from static (border) tiles, and loops run
    # only over tiles where every pair is in range — so dy needs no zero border.
    classes = []
    for rw in range(min(sw, W)):
        nj = len(range(rw, W, sw))
        taps = [(kw, (rw + pl - kw * dw) // sw) for kw in range(KW)
                if (rw + pl - kw * dw) % sw == 0]
        taps = [(kw, c) for kw, c in taps if c + nj - 1 >= 0 and c <= OW - 1]
        plan = _tile_plan(nj, acc_cap, lambda j0, n0, taps=taps: all(
            0 <= j + c < OW for j in range(j0, j0 + n0) for _, c in taps))
        classes.append((rw, plan, taps))

    pitch = OW * CO
    wt = w if rv else F.buffer(KH * KW * og * WP)
    # Transposed, padded filter: wt[(t*og + co)*WP + gi*CGP + ci] = w[t, ci, gi*og + co].
    if not rv:
        F.memset0(wt, KH * KW * og * WP)

    def pack(t, _):
        for gi in range(g):
            def ci_loop(ci, _, gi=gi):
                src = F.ptr(w, F.mul(t, cg * CO), F.mul(ci, CO), gi * og)
                dst = F.ptr(wt, F.mul(t, og * WP), gi * CGP, ci)

                def co_loop(co, _):
                    F.b.store(F.load(F.ptr(src, co)), F.ptr(dst, F.mul(co, WP)), align=4)
                F.loop(0, og, co_loop, name="pk.co")
            F.loop(0, cg, ci_loop, name="pk.ci")
    if not rv:
        F.loop(0, KH * KW, pack, name="pack")

    def image(n, _):
        dyb = F.ptr(dy, F.mul(n, OH * OW * CO))

        def row(ih, _):
            drow = F.idx(F.mul(n, H * W), F.mul(ih, W))

            def group(gi, _):
                for q0, qn, nv, lanes in kinds:
                    def cogroup(q, _, nv=nv, lanes=lanes):
                        wq = F.ptr(wt, F.mul(gi, CGP), F.mul(q, NVV))
                        for rw, plan, taps in classes:
                            _emit_tiles(F, plan, lambda j0, Rt, static, rw=rw, taps=taps: tile(
                                ih, drow, dyb, gi, q, wq, rw, taps, j0, Rt, nv, lanes,
                                static))
                    F.repeat(q0, qn, cogroup, name="cog")
            F.repeat(0, g, group, name="grp")
        F.loop(0, H, row, name="ih")

    def row_ok(ih, kh):
        """(dy row reached from dx row ih through kernel row kh, is it a real row?)"""
        b = F.b
        num = b.sub(F.idx(ih, pt), F.idx(F.mul(kh, dh)))
        ok = b.and_(b.icmp_signed(">=", num, I64(0)),
                    b.icmp_signed("<=", num, I64((OH - 1) * sh)))
        if sh > 1:
            ok = b.and_(ok, b.icmp_unsigned("==", b.urem(num, I64(sh)), I64(0)))
            return b.udiv(num, I64(sh)), ok
        return num, ok

    def tile_rv(ih, drow, dyb, gi, rw, taps, j0, Rt, static):
        accs = [F.zeros(V)] * (Rt * cg)

        def kh_body(kh, accs):
            oh, ok = row_ok(ih, kh)

            def valid(accs):
                dr = F.ptr(dyb, F.mul(oh, pitch), F.mul(j0, CO), F.mul(gi, og))
                wk = F.ptr(w, F.mul(kh, KW * cg * CO), F.mul(gi, og))

                def block(cb, accs, lanes):
                    accs = list(accs)
                    dc = F.ptr(dr, F.mul(cb, V))
                    wc = F.ptr(wk, F.mul(cb, V))
                    for kw, c in taps:
                        rs = [r for r in range(Rt) if not static or 0 <= j0 + r + c < OW]
                        if not rs:
                            continue
                        wv = [F.vload(F.ptr(wc, (kw * cg + ci) * CO), V, lanes)
                              for ci in range(cg)]
                        for r in rs:
                            dv = F.vload(F.ptr(dc, (r + c) * CO), V, lanes)
                            for ci in range(cg):
                                accs[r * cg + ci] = F.fma(dv, wv[ci], accs[r * cg + ci])
                    return accs
                accs = F.repeat(0, og // V, lambda cb, a: block(cb, a, V), accs, name="cb")
                if og % V:
                    accs = block(og // V, accs, og % V)
                return accs
            return F.when(ok, valid, accs)
        if taps:
            accs = F.loop(0, KH, kh_body, accs, name="kh")
        Vo = pick_width(cg, vw)
        for r in range(Rt):
            pix = F.idx(drow, rw, F.mul(F.idx(j0, r) if not isinstance(j0, int) else j0 + r,
                                        sw))
            vec = F.gather_vector([F.hsum(accs[r * cg + ci]) for ci in range(cg)], Vo)
            col = F.mul(gi, cg)
            _store_out(F, ep, vec, F.ptr(F.out, F.mul(pix, C), col), cg, Vo, pix, col)

    def tile(ih, drow, dyb, gi, q, wq, rw, taps, j0, Rt, nv, lanes, static):
        if rv:
            return tile_rv(ih, drow, dyb, gi, rw, taps, j0, Rt, static)
        accs = [F.zeros(V)] * (Rt * nv)

        def kh_body(kh, accs):
            oh, ok = row_ok(ih, kh)

            def valid(accs):
                dr = F.ptr(dyb, F.mul(oh, pitch), F.mul(j0, CO), F.mul(gi, og))
                wk = F.ptr(wq, F.mul(kh, KW * og * WP))

                def co_body(co, accs):
                    dc = F.ptr(dr, co)
                    wc = F.ptr(wk, F.mul(co, WP))
                    accs = list(accs)
                    for kw, c in taps:
                        rs = [r for r in range(Rt) if not static or 0 <= j0 + r + c < OW]
                        if not rs:
                            continue
                        wv = [F.vload(F.ptr(wc, kw * og * WP + v * V), V) for v in range(nv)]
                        for r in rs:
                            ds = F.splat(F.load(F.ptr(dc, (r + c) * CO)), V)
                            for v in range(nv):
                                accs[r * nv + v] = F.fma(ds, wv[v], accs[r * nv + v])
                    return accs
                return F.loop(0, og, co_body, accs, name="co")
            return F.when(ok, valid, accs)
        if taps:
            accs = F.loop(0, KH, kh_body, accs, name="kh")
        for r in range(Rt):
            pix = F.idx(drow, rw, F.mul(F.idx(j0, r) if not isinstance(j0, int) else j0 + r,
                                        sw))
            op = F.ptr(F.out, F.mul(pix, C))
            for v in range(nv):
                col = F.idx(F.mul(gi, cg), F.mul(q, NVV), v * V)
                ln = lanes if v == nv - 1 else V
                _store_out(F, ep, accs[r * nv + v], F.ptr(op, col), ln, V, pix, col)

    F.loop(F.begin, F.end, image, name="n")
    return F.ret()


# --------------------------------------------------------------------------------------
# gradient w.r.t. the filter
# --------------------------------------------------------------------------------------

def _bf_plan(T: int, BA: int, NV: int, budget: int, threads: int = 2):
    """(taps per tile, broadcast channels per tile) for backprop-filter units.

    Cost model per reduction position of a unit: its FMAs, but at least 8 (below 8
    independent accumulators the 4-cycle FMA latency is exposed), plus its loads. Score:
    the busier half when the units are split into ``threads`` contiguous slices (what
    ``emit_parallel_entry`` does), then the 1-thread total. E.g. LeNet conv2 (25 taps x
    6 in-channels) gets 8 units of 7/6 taps x 3 channels instead of 7 units of 4 taps x 6
    channels whose last one (1 tap, 6 accumulators) is latency-bound."""
    best = None
    for ct in range(1, min(BA, max(1, budget // NV)) + 1):
        ncc = -(-BA // ct)
        ct = -(-BA // ncc)
        for tt in range(1, min(T, max(1, budget // (NV * ct))) + 1):
            ntt = -(-T // tt)
            tt = -(-T // ntt)
            taps = [tt] * (ntt - 1) + [T - (ntt - 1) * tt]
            chans = [ct] * (ncc - 1) + [BA - (ncc - 1) * ct]
            costs = [max(a * c * NV, 8) + a * c + NV + 2 for c in chans for a in taps]
            e = len(costs)
            halves = [sum(costs[e * k // threads: e * (k + 1) // threads])
                      for k in range(threads)]
            score = (max(halves), sum(costs))
            if best is None or score < best[0]:
                best = (score, tt, ct)
    return best[1], best[2]


def emit_conv2d_backprop_filter(module: ir.Module, name: str, x_shape, dy_shape, filter_shape,
                                strides=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1),
                                groups: int = 1, *,
                                vector_width: int | None = None) -> ir.Function:
    """``void name(x, dy, dw, i64 begin, i64 end)``: the work units [begin, end) of dw.

    The reduction over N*OH*OW is the long axis, so it is the inner loop and the output
    is the register tile: a unit is TT consecutive filter taps (kh, kw) x CT in-channels x
    NV vectors over Cout (TT*CT*NV <= 24 accumulators with AVX-512), and for every
    (n, oh, ow) it loads NV dy vectors and FMAs them with a broadcast input value per
    (tap, ci). (With a Cout too narrow for the lanes, e.g. 1, the roles swap: lanes over
    Cin, broadcasts of dy.) Units are ordered (group, lane vector group, channel chunk,
    tap tile); ``fn.split_extent`` is their count. Splitting units (not N) between
    threads keeps each dw element one sequential sum in (n, oh, ow) order: no partial
    buffers, no cross-thread reduction, bit-identical whatever the split.

    The batch is walked in chunks of images (>= ~512 positions): every unit of the slice
    sweeps the chunk — its x (zero-padded copy, ``_Padded``) and dy then stay in cache
    across units — and parks its partial sums in dw between chunks (a float32 store and
    reload: the same bits as keeping them in registers). Without chunking, wide layers
    (128 -> 128 channels) streamed all of dy once per unit and ran at ~40 GFLOP/s."""
    attrs, y_shape = _conv_geometry("conv2d_backprop_filter", x_shape, filter_shape, strides,
                                    padding, dilation, groups)
    if tuple(dy_shape) != tuple(y_shape):
        from graphc.errors import ShapeError
        raise ShapeError(f"conv2d_backprop_filter: dy shape: expected {list(y_shape)} "
                         f"(conv2d of {list(x_shape)} with filter_shape "
                         f"{list(filter_shape)}), got {list(dy_shape)}")
    N, H, W, C = x_shape
    KH, KW, cg, CO = filter_shape
    _, OH, OW, _ = y_shape
    (sh, sw), (dh, dw) = attrs["strides"], attrs["dilation"]
    (pt, _), (pl, _) = attrs["padding"]
    g = attrs["groups"]
    og = CO // g
    vw = _host_width(vector_width)
    # Lanes over Cout, broadcasts of x (the usual); or, when Cout is too narrow for the
    # lanes (e.g. 1) and Cin fills them better, lanes over Cin with broadcasts of dy.
    swap = _reduce_lanes(og, cg, vw)
    LA, BA = (cg, og) if swap else (og, cg)   # lane axis, broadcast axis (per group)
    V = pick_width(LA, vw)
    nvec = -(-LA // V)
    NV = min(nvec, 2)
    NVV = NV * V
    ncg, kinds = _co_groups(nvec, NV, LA, V)
    T = KH * KW
    TT, CT = _bf_plan(T, BA, NV, _acc_budget(vw, "bf"))
    ntt, ncc = -(-T // TT), -(-BA // CT)
    units = g * ncg * ncc * ntt
    F = _Fn(module, name, 2, (), split_extent=units)
    x, dy = F.ins
    b = F.b
    Hn = (OH - 1) * sh + (KH - 1) * dh + 1
    Wn = (OW - 1) * sw + (KW - 1) * dw + 1
    NB = min(N, max(1, -(-512 // (OH * OW))))          # images per chunk
    pad = _Padded(F, x, H, W, C, pt, pl, Hn, Wn, slots=NB)
    pitch = pad.pitch
    nchunks = -(-N // NB)
    stage = F.buffer(TT * CT * NVV) if swap else None

    def unit_body(gi, q, cc, tt, TTu, CTu, nv, lanes, chunk, bases, nb):
        # Tap offsets into the padded image; taps are runtime only when there are
        # several tap tiles.
        toffs, taps = [], []
        for j in range(TTu):
            if isinstance(tt, int):
                t = tt * TT + j
                kh, kw = divmod(t, KW)
                toffs.append(kh * dh * pitch + kw * dw * C)
                taps.append(t)
            else:
                t = F.idx(F.mul(tt, TT), j)
                kh, kw = b.udiv(t, I64(KW)), b.urem(t, I64(KW))
                toffs.append(F.idx(F.mul(kh, dh * pitch), F.mul(kw, dw * C)))
                taps.append(t)
        lane0, bc0 = F.mul(q, NVV), F.mul(cc, CT)
        cbase = F.idx(F.mul(gi, cg), lane0 if swap else bc0)
        dyoff = F.idx(F.mul(gi, og), bc0 if swap else lane0)
        nacc = TTu * CTu * nv

        def ln_of(v):
            return lanes if v == nv - 1 else V

        def slot(j, c, v):
            """dw address of accumulator (tap j, broadcast channel c, vector v)."""
            return F.ptr(F.out, F.mul(taps[j], cg * CO), F.mul(cc, CT * CO), c * CO, dyoff,
                         v * V)

        # Swapped roles: a dw vector over ci is Cout apart in memory; accumulators go
        # through a contiguous staging buffer and small copy loops (not per-lane code:
        # that made these kernels slow to compile).
        E = (nv - 1) * V + lanes              # valid lanes of an accumulator group

        def stage_copy(to_dw):
            def jc_body(jc, _):
                j, c = b.udiv(jc, I64(CTu)), b.urem(jc, I64(CTu))
                t = F.idx(F.mul(tt, TT), j)
                row = F.ptr(F.out, F.mul(t, cg * CO), F.mul(lane0, CO), dyoff, c)

                def e_body(e, _):
                    pd = F.ptr(row, F.mul(e, CO))
                    ps = F.ptr(stage, F.mul(jc, nv * V), e)
                    if to_dw:
                        b.store(F.load(ps), pd, align=4)
                    else:
                        b.store(F.load(pd), ps, align=4)
                F.loop(0, E, e_body, name="st.e")
            F.loop(0, TTu * CTu, jc_body, name="st.jc")

        def load_partial(_):
            if swap:
                stage_copy(False)
                return [F.vload(F.ptr(stage, k * V), V) for k in range(nacc)]
            accs = []
            for j in range(TTu):
                for c in range(CTu):
                    for v in range(nv):
                        accs.append(F.vload(slot(j, c, v), V, ln_of(v)))
            return accs
        accs = [F.zeros(V)] * nacc
        if nchunks > 1:
            accs = F.when(b.icmp_unsigned("!=", chunk, I64(0)), load_partial, accs)

        def n_body(i, accs):
            xb = F.ptr(bases(i), cbase)
            n = F.idx(F.mul(chunk, NB), i)

            def oh_body(oh, accs):
                xr = F.ptr(xb, F.mul(oh, sh * pitch))
                dyr = F.ptr(dy, F.mul(n, OH * OW * CO), F.mul(oh, OW * CO), dyoff)

                def ow_body(ow, accs):
                    xp = F.ptr(xr, F.mul(ow, sw * C))
                    dp = F.ptr(dyr, F.mul(ow, CO))
                    accs = list(accs)
                    if swap:
                        ds = [F.splat(F.load(F.ptr(dp, c)), V) for c in range(CTu)]
                        for j in range(TTu):
                            xt = F.ptr(xp, toffs[j])
                            xv = [F.vload(F.ptr(xt, v * V), V, ln_of(v)) for v in range(nv)]
                            for c in range(CTu):
                                for v in range(nv):
                                    k = (j * CTu + c) * nv + v
                                    accs[k] = F.fma(ds[c], xv[v], accs[k])
                        return accs
                    dv = [F.vload(F.ptr(dp, v * V), V, ln_of(v)) for v in range(nv)]
                    for j in range(TTu):
                        xt = F.ptr(xp, toffs[j])
                        for c in range(CTu):
                            xs = F.splat(F.load(F.ptr(xt, c)), V)
                            for v in range(nv):
                                k = (j * CTu + c) * nv + v
                                accs[k] = F.fma(xs, dv[v], accs[k])
                    return accs
                return F.loop(0, OW, ow_body, accs, name="ow")
            return F.loop(0, OH, oh_body, accs, name="oh")
        accs = F.loop(0, nb, n_body, accs, name="n")
        if swap:
            for k in range(nacc):
                F.vstore(accs[k], F.ptr(stage, k * V))
            stage_copy(True)
            return
        for j in range(TTu):
            for c in range(CTu):
                for v in range(nv):
                    F.vstore(accs[(j * CTu + c) * nv + v], slot(j, c, v), ln_of(v))

    def unit(u, chunk, bases, nb):
        # u = ((gi*ncg + q)*ncc + cc)*ntt + tt
        def split(v, k):
            if k == 1:
                return v, 0
            return b.udiv(v, I64(k)), b.urem(v, I64(k))
        rest, tt = split(u, ntt)
        rest, cc = split(rest, ncc)
        gi, q = split(rest, ncg)
        tt = 0 if ntt == 1 else tt
        cc = 0 if ncc == 1 else cc
        q = 0 if ncg == 1 else q
        gi = 0 if g == 1 else gi
        tt_last, cc_last = T - (ntt - 1) * TT, BA - (ncc - 1) * CT

        # Static variants: a full or last tap tile x full or last channel chunk x lane kind.
        def by(var, count, full_size, last_size, emit):
            if count == 1:
                return emit(last_size)
            if last_size == full_size:
                return emit(full_size)
            F.choose(b.icmp_unsigned("==", var, I64(count - 1)),
                     lambda: emit(last_size), lambda: emit(full_size))

        def by_kind(emit):
            if len(kinds) == 1:
                return emit(*kinds[0][2:])
            F.choose(b.icmp_unsigned("==", q, I64(ncg - 1)),
                     lambda: emit(*kinds[1][2:]), lambda: emit(*kinds[0][2:]))
        by_kind(lambda nv, lanes: by(
            cc, ncc, CT, cc_last, lambda CTu: by(
                tt, ntt, TT, tt_last, lambda TTu: unit_body(
                    gi, q, cc, tt, TTu, CTu, nv, lanes, chunk, bases, nb))))

    def chunk_body(chunk, _):
        # Images of this chunk: NB, or the rest for the last one.
        nb = N - (nchunks - 1) * NB if nchunks == 1 else b.select(
            b.icmp_unsigned("==", chunk, I64(nchunks - 1)), I64(N - (nchunks - 1) * NB),
            I64(NB))
        n0 = F.mul(chunk, NB)
        if pad.direct:
            def bases(i):
                return pad.image(F.idx(n0, i))
        else:
            def copy(i, _):
                pad.image(F.idx(n0, i), i)
            F.loop(0, nb, copy, name="copy")

            def bases(i):
                return F.ptr(pad.buf, F.mul(i, pad.stride))
        F.loop(F.begin, F.end, lambda u, _: unit(u, chunk, bases, nb), name="unit")
    F.repeat(0, nchunks, chunk_body, name="chunk")
    return F.ret()


# --------------------------------------------------------------------------------------
# parallel entry and Python calling (tests, benchmarks, runtime glue)
# --------------------------------------------------------------------------------------

def emit_parallel_entry(module: ir.Module, name: str, kernel: ir.Function,
                        tasks: int) -> ir.Function:
    """``void name(<kernel args without begin, end>)``: runs ``kernel`` over its whole split
    axis as ``tasks`` contiguous slices on the process's thread pool (parallel.py's
    ``graphc_parallel_for``; slice t is [E*t/T, E*(t+1)/T)). Deterministic: the slices
    are static, and each output element is computed by exactly one slice in a fixed
    order."""
    from graphc.codegen.cpu import parallel
    extent = kernel.split_extent
    argtys = [a.type for a in kernel.args[:-2]]
    fn = ir.Function(module, ir.FunctionType(VOID, argtys), name=name)
    fn.split_extent = extent
    tasks = max(1, min(int(tasks), extent))
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    if tasks == 1:
        b.call(kernel, list(fn.args) + [I64(0), I64(extent)])
        b.ret_void()
        return fn
    ctx_ty = ir.LiteralStructType(argtys)
    task = ir.Function(module, parallel.TASK_FN_TYPE, name=f"{name}.task")
    task.linkage = "internal"
    ctxp, t = task.args
    tb = ir.IRBuilder(task.append_basic_block("entry"))
    vals = [tb.load(tb.gep(ctxp, [I32(0), I32(i)], source_etype=ctx_ty), typ=ty)
            for i, ty in enumerate(argtys)]
    lo = tb.udiv(tb.mul(t, I64(extent)), I64(tasks))
    hi = tb.udiv(tb.mul(tb.add(t, I64(1)), I64(extent)), I64(tasks))
    tb.call(kernel, vals + [lo, hi])
    tb.ret_void()
    ctx = parallel._alloca(b, ctx_ty)
    for i, a in enumerate(fn.args):
        b.store(a, b.gep(ctx, [I32(0), I32(i)], source_etype=ctx_ty))
    b.call(parallel.declare_parallel_for(module), [task, ctx, I64(tasks)])
    b.ret_void()
    return fn


def ctypes_caller(jm: "jit.JitModule", fn: ir.Function):
    """A Python callable for a generated function of ``jm``: numpy float32 arrays for the
    pointer arguments, ints / floats for the others (the ctypes call releases the GIL)."""
    cts = []
    for a in fn.args:
        if isinstance(a.type, ir.PointerType):
            cts.append(ctypes.c_void_p)
        elif isinstance(a.type, ir.FloatType):
            cts.append(ctypes.c_float)
        else:
            cts.append(ctypes.c_int64)
    cf = jm.cfunc(fn.name, None, *cts)

    def call(*args):
        conv = []
        for a in args:
            if isinstance(a, np.ndarray):
                if a.dtype != np.float32 or not a.flags.c_contiguous:
                    raise ValueError("kernel buffers must be C-contiguous float32 arrays")
                conv.append(a.ctypes.data)
            else:
                conv.append(a)
        cf(*conv)
    call.split_extent = getattr(fn, "split_extent", None)
    return call
