"""Direct NHWC convolution kernels — forward, backprop-input, backprop-filter — generated as
LLVM IR specialized on static shapes, with the channel axis in ``<V x float>`` registers, a
register tile of output pixels (or filter taps) and ``llvm.fma`` accumulation.

Every ``emit_*`` adds ONE function to a given ``llvmlite.ir.Module`` and returns it:

    void name(ptr noalias in0, ptr noalias in1, <epilogue args...>, ptr noalias out,
              i64 begin, i64 end)

float32, row-major contiguous NHWC activations and HWIO (``[KH, KW, Cin/groups, Cout]``)
filters, exactly the semantics of ``graphc/ir/ops/nn.py``. A call writes the slice
``[begin, end)`` of the function's *split axis* of ``out`` completely (zero-filling what no
tap reaches) and touches nothing else, so a runtime can hand disjoint slices to threads:

    conv2d                  split axis: batch N of the output            extent N
    conv2d_backprop_input   split axis: batch N of dx                    extent N
    conv2d_backprop_filter  split axis: work units over the filter      extent ``fn.split_extent``
                            (tap tiles x in-channel chunks x out-channel vector groups);
                            each unit reduces over all of N*OH*OW, so there is no cross-thread
                            reduction.

Every output element is summed in one fixed order that does not depend on the split or on
which tile variant computed it (forward: kh, ci, kw; backprop-input: kh, co, kw;
backprop-filter: n, oh, ow), so results are bit-identical run to run and across splits.
``fn.split_extent`` (a Python attribute) gives the extent for every function.

Why direct convolution and not im2col + GEMM: the hot convolutions of the target models
(LeNet: Cin 1/6, Cout 6/16, 5x5) have GEMM shapes like 784x6x25 — far too skinny for the
packed 8x32 GEMM tile, and im2col would write 25x the input to memory. Specializing on the
shape instead lets the register tile cover a whole output row (or 13-24 filter taps)
with the Cout vector fitting one register; see ``benchmarks/bench_conv.py`` for the
measurements.
"""
from __future__ import annotations

import ctypes
import inspect
import math
from typing import Callable, Sequence

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


def _acc_budget(vw: int) -> int:
    """Accumulator vectors in a register tile: AVX-512 has 32 vector registers (also for
    ymm, through EVEX), AVX2 16; the rest hold weights/broadcasts."""
    return 24 if vw == 16 else 12


def _balanced(n: int, cap: int) -> int:
    """Tile size <= cap that splits n into the fewest, most even tiles."""
    cap = max(1, min(cap, n))
    tiles = -(-n // cap)
    return -(-n // tiles)


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
    border needed) or a scratch copy of ``Hn x Wn`` pixels with the image at (top, left).
    The scratch is zeroed once per call; each image only overwrites its interior, so the
    border stays zero. Removing bounds checks from the inner loops this way costs one
    copy of the image (a few KiB for the target shapes) instead of a branch per tap."""

    def __init__(self, F: _Fn, src, H, W, C, top, left, Hn, Wn):
        self.F, self.src = F, src
        self.H, self.W, self.C = H, W, C
        self.top, self.left = top, left
        self.direct = top == 0 and left == 0 and Hn <= H and Wn <= W
        if self.direct:
            self.pitch = W * C
            return
        self.pitch = Wn * C
        self.buf = F.buffer(Hn * Wn * C)
        self.rows = max(0, min(H, Hn - top))
        self.cols = max(0, min(W, Wn - left))
        F.memset0(self.buf, Hn * Wn * C)

    def image(self, n):
        F = self.F
        H, W, C = self.H, self.W, self.C
        if self.direct:
            return F.ptr(self.src, F.mul(n, H * W * C))
        img = F.ptr(self.src, F.mul(n, H * W * C))

        def row(r, _):
            F.memcpy(F.ptr(self.buf, F.mul(r, self.pitch), (self.top * self.pitch)
                           + self.left * C),
                     F.ptr(img, F.mul(r, W * C)), self.cols * C)
        if self.cols > 0:
            F.loop(0, self.rows, row, name="pad")
        return self.buf


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
    70 FMAs. Padding is a zeroed copy of the image (see ``_Padded``); a Cout that is not a
    multiple of the vector width is padded in a packed filter copy and stored masked.

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
    V = pick_width(og, vw)
    nvec = -(-og // V)
    NV = min(nvec, 2)
    NVV = NV * V
    ncg, kinds = _co_groups(nvec, NV, og, V)
    R = _balanced(OW, max(1, _acc_budget(vw) // NV))
    ep = _as_epilogue(epilogue)
    F = _Fn(module, name, 2, ep.arg_types if ep else (), split_extent=N)
    x, w = F.ins
    b = F.b

    # Filter: read in place when Cout per group is whole vectors; else a zero-padded copy
    # [KH*KW*cg][g][ncg*NVV] so every weight load is a full vector.
    if og % V == 0:
        wbase, WP, GS = w, CO, og
    else:
        GS = ncg * NVV
        WP = g * GS
        wbase = F.buffer(KH * KW * cg * WP)
    Hn = (OH - 1) * sh + (KH - 1) * dh + 1
    Wn = (OW - 1) * sw + (KW - 1) * dw + 1
    pad = _Padded(F, x, H, W, C, pt, pl, Hn, Wn)
    if og % V:
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

            def group(gi, _):
                for q0, qn, nv, lanes in kinds:
                    def cogroup(q, _, nv=nv, lanes=lanes):
                        wq = F.ptr(wbase, F.mul(gi, GS), F.mul(q, NVV))
                        nfull, rem = OW // R, OW % R
                        F.repeat(0, nfull, lambda t, _: tile(
                            xrow, orow, gi, q, wq, F.mul(t, R), R, nv, lanes), name="tile")
                        if rem:
                            tile(xrow, orow, gi, q, wq, nfull * R, rem, nv, lanes)
                    F.repeat(q0, qn, cogroup, name="cog")
            F.repeat(0, g, group, name="grp")
        F.loop(0, OH, row, name="oh")

    def tile(xrow, orow, gi, q, wq, ow0, Rt, nv, lanes):
        accs = [F.zeros(V)] * (Rt * nv)

        def kh_body(kh, accs):
            xk = F.ptr(xrow, F.mul(kh, dh * pitch), F.mul(ow0, sw * C), F.mul(gi, cg))
            wk = F.ptr(wq, F.mul(kh, KW * cg * WP))

            def ci_body(ci, accs):
                xc = F.ptr(xk, ci)
                wc = F.ptr(wk, F.mul(ci, WP))
                accs = list(accs)
                for kw in range(KW):
                    wv = [F.vload(F.ptr(wc, kw * cg * WP + v * V), V) for v in range(nv)]
                    for r in range(Rt):
                        xs = F.splat(F.load(F.ptr(xc, (r * sw + kw * dw) * C)), V)
                        for v in range(nv):
                            accs[r * nv + v] = F.fma(xs, wv[v], accs[r * nv + v])
                return accs
            return F.loop(0, cg, ci_body, accs, name="ci")
        accs = F.loop(0, KH, kh_body, accs, name="kh")
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
    vectors over the in-channels. dy gets a zero column border (``_Padded``) so
    out-of-range ow read zeros; the filter is packed transposed, [KH*KW*og][g][Cin/g
    padded], so the weights for one (tap, co) are a vector over ci. Summation order per
    element: kh, co, kw. The epilogue (e.g. an activation gradient) sees row = flat dx
    pixel and col = input channel of lane 0."""
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
    V = pick_width(cg, vw)
    nvec = -(-cg // V)
    NV = min(nvec, 2)
    NVV = NV * V
    ncg, kinds = _co_groups(nvec, NV, cg, V)
    CGP = ncg * NVV
    WP = g * CGP
    ep = _as_epilogue(epilogue)
    F = _Fn(module, name, 2, ep.arg_types if ep else (), split_extent=N)
    dy, w = F.ins

    # Column plan per residue class rw of iw mod sw: the (kw, ow offset c) pairs that
    # contribute (ow = j + c for iw = rw + sw*j), and the number of such iw.
    classes = []
    ow_lo, ow_hi = 0, OW
    for rw in range(min(sw, W)):
        nj = len(range(rw, W, sw))
        taps = [(kw, (rw + pl - kw * dw) // sw) for kw in range(KW)
                if (rw + pl - kw * dw) % sw == 0]
        # Drop taps that never land inside [0, OW) for any j of this class.
        taps = [(kw, c) for kw, c in taps if c + nj - 1 >= 0 and c <= OW - 1]
        if taps:
            ow_lo = min(ow_lo, min(c for _, c in taps))
            ow_hi = max(ow_hi, max(c for _, c in taps) + nj)
        classes.append((rw, nj, taps))
    acc_cap = max(1, _acc_budget(vw) // NV)

    wt = F.buffer(KH * KW * og * WP)
    pad = _Padded(F, dy, OH, OW, CO, 0, -ow_lo, OH, ow_hi - ow_lo)
    off = -ow_lo if not pad.direct else 0
    pitch = pad.pitch
    # Transposed, padded filter: wt[(t*og + co)*WP + gi*CGP + ci] = w[t, ci, gi*og + co].
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
    F.loop(0, KH * KW, pack, name="pack")

    def image(n, _):
        dyb = pad.image(n)

        def row(ih, _):
            drow = F.idx(F.mul(n, H * W), F.mul(ih, W))

            def group(gi, _):
                for q0, qn, nv, lanes in kinds:
                    def cogroup(q, _, nv=nv, lanes=lanes):
                        wq = F.ptr(wt, F.mul(gi, CGP), F.mul(q, NVV))
                        for rw, nj, taps in classes:
                            R = _balanced(nj, acc_cap)
                            nfull, rem = nj // R, nj % R
                            F.repeat(0, nfull, lambda t, _, rw=rw, taps=taps, R=R: tile(
                                ih, drow, dyb, gi, q, wq, rw, taps, F.mul(t, R), R, nv,
                                lanes), name="tile")
                            if rem:
                                tile(ih, drow, dyb, gi, q, wq, rw, taps, nfull * R, rem, nv,
                                     lanes)
                    F.repeat(q0, qn, cogroup, name="cog")
            F.repeat(0, g, group, name="grp")
        F.loop(0, H, row, name="ih")

    def tile(ih, drow, dyb, gi, q, wq, rw, taps, j0, Rt, nv, lanes):
        accs = [F.zeros(V)] * (Rt * nv)
        b = F.b

        def kh_body(kh, accs):
            num = b.sub(F.idx(ih, pt), F.idx(F.mul(kh, dh)))
            ok = b.and_(b.icmp_signed(">=", num, I64(0)),
                        b.icmp_signed("<=", num, I64((OH - 1) * sh)))
            if sh > 1:
                ok = b.and_(ok, b.icmp_unsigned("==", b.urem(num, I64(sh)), I64(0)))

            def valid(accs):
                oh = b.udiv(num, I64(sh)) if sh > 1 else num
                dr = F.ptr(dyb, F.mul(oh, pitch), F.mul(j0, CO), off * CO + gi * og)
                wk = F.ptr(wq, F.mul(kh, KW * og * WP))

                def co_body(co, accs):
                    dc = F.ptr(dr, co)
                    wc = F.ptr(wk, F.mul(co, WP))
                    accs = list(accs)
                    for kw, c in taps:
                        wv = [F.vload(F.ptr(wc, kw * og * WP + v * V), V) for v in range(nv)]
                        for r in range(Rt):
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

def _bf_plan(KHKW: int, cg: int, NV: int, budget: int):
    """(taps per tile, in-channels per tile): as many accumulators as the budget allows,
    balanced so the remainder tiles are not tiny."""
    CT = _balanced(cg, max(1, budget // NV))
    TT = _balanced(KHKW, max(1, budget // (NV * CT)))
    return TT, CT


def emit_conv2d_backprop_filter(module: ir.Module, name: str, x_shape, dy_shape, filter_shape,
                                strides=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1),
                                groups: int = 1, *,
                                vector_width: int | None = None) -> ir.Function:
    """``void name(x, dy, dw, i64 begin, i64 end)``: the work units [begin, end) of dw.

    The reduction over N*OH*OW is the long axis, so it is the inner loop and the output
    is the register tile: a unit is TT consecutive filter taps (kh, kw) x CT in-channels x
    NV vectors over Cout (TT*CT*NV <= 24 accumulators with AVX-512), and for every
    (n, oh, ow) it loads NV dy vectors and FMAs them with a broadcast input value per
    (tap, ci). The x image is zero-padded (``_Padded``) so taps need no bounds checks.
    Units are ordered (group, Cout vector group, ci chunk, tap tile); ``fn.split_extent``
    is their count. Splitting units (not N) between threads keeps each dw element one
    sequential sum in (n, oh, ow) order: no partial buffers, no cross-thread reduction,
    bit-identical whatever the split."""
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
    V = pick_width(og, vw)
    nvec = -(-og // V)
    NV = min(nvec, 2)
    NVV = NV * V
    ncg, kinds = _co_groups(nvec, NV, og, V)
    T = KH * KW
    TT, CT = _bf_plan(T, cg, NV, _acc_budget(vw))
    ntt, ncc = -(-T // TT), -(-cg // CT)
    units = g * ncg * ncc * ntt
    F = _Fn(module, name, 2, (), split_extent=units)
    x, dy = F.ins
    b = F.b
    Hn = (OH - 1) * sh + (KH - 1) * dh + 1
    Wn = (OW - 1) * sw + (KW - 1) * dw + 1
    pad = _Padded(F, x, H, W, C, pt, pl, Hn, Wn)
    pitch = pad.pitch

    def unit_body(gi, q, cc, tt, TTu, CTu, nv, lanes):
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
        cbase = F.idx(F.mul(gi, cg), F.mul(cc, CT))
        dyoff = F.idx(F.mul(gi, og), F.mul(q, NVV))
        accs = [F.zeros(V)] * (TTu * CTu * nv)

        def n_body(n, accs):
            xb = F.ptr(pad.image(n), cbase)

            def oh_body(oh, accs):
                xr = F.ptr(xb, F.mul(oh, sh * pitch))
                dyr = F.ptr(dy, F.mul(n, OH * OW * CO), F.mul(oh, OW * CO), dyoff)

                def ow_body(ow, accs):
                    xp = F.ptr(xr, F.mul(ow, sw * C))
                    dp = F.ptr(dyr, F.mul(ow, CO))
                    dv = [F.vload(F.ptr(dp, v * V), V, lanes if v == nv - 1 else V)
                          for v in range(nv)]
                    accs = list(accs)
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
        accs = F.loop(0, N, n_body, accs, name="n")
        for j in range(TTu):
            for c in range(CTu):
                base = F.ptr(F.out, F.mul(taps[j], cg * CO), F.mul(cc, CT * CO), c * CO, dyoff)
                for v in range(nv):
                    F.vstore(accs[(j * CTu + c) * nv + v], F.ptr(base, v * V),
                             lanes if v == nv - 1 else V)

    def unit(u, _):
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
        tt_last, cc_last = T - (ntt - 1) * TT, cg - (ncc - 1) * CT
        # Static variants: a full or last tap tile x full or last ci chunk x Cout kind.
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
                tt, ntt, TT, tt_last, lambda TTu: unit_body(gi, q, cc, tt, TTu, CTu, nv,
                                                           lanes))))
    F.loop(F.begin, F.end, unit, name="unit")
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
