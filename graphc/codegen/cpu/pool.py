"""Window pooling kernels (max/avg, their gradients, and the max-pool gather) generated as
LLVM IR specialized on static shapes, vectorized over the channel axis of NHWC.

Every ``emit_*`` adds ONE function to a ``llvmlite.ir.Module`` with the ABI of conv.py,

    void name(ptr noalias in0, [ptr noalias in1,] ptr noalias out, i64 begin, i64 end)

and writes images ``[begin, end)`` of ``out`` completely (split axis: batch N, extent in
``fn.split_extent``). Channels go in ``<V x float>`` vectors, full ones in a loop and the
remainder masked; any C works.

Windows are never bounds-checked at run time: along each axis the output positions are
grouped (at generation time) into runs that see the same set of in-bounds taps — the
interior is one run, emitted as a loop, the few border positions get their own code with
their exact tap list. So padding (which acts as -inf for max and is not counted by avg)
simply has no code, and the first in-bounds tap is known statically, which the exact
max-gradient tie rule needs.

Gradients scatter over a zero-filled dx in a fixed order: with non-overlapping windows
(stride >= pool, the common 2x2/2 case) each dx element is stored once; with overlapping
windows contributions are added while walking the windows in *descending* row-major order,
which adds them to each element in ascending tap order — exactly the order of the
reference interpreter, so results match it bit for bit and repeat run to run.
"""
from __future__ import annotations

from llvmlite import ir

from graphc.codegen.cpu.conv import I32, I64, _decl, _Fn, _host_width, _vty, pick_width
from graphc.ir.ops import nn as _nn

__all__ = [
    "emit_max_pool2d", "emit_avg_pool2d", "emit_max_pool2d_grad", "emit_avg_pool2d_grad",
    "emit_max_pool2d_gather",
]


def _geometry(op, x_shape, pool, strides, padding):
    attrs = {"pool": tuple(int(p) for p in pool), "strides": tuple(int(s) for s in strides),
             "padding": tuple(tuple(int(p) for p in q) for q in padding)}
    if len(x_shape) != 4:
        from graphc.errors import ShapeError
        raise ShapeError(f"{op}: input must be rank 4 (NHWC), got {list(x_shape)}")
    oh, ow = _nn._pool_geometry(op, tuple(x_shape), attrs)
    return attrs, oh, ow


def _segments(n_out, k, s, pad, n_in):
    """Runs of output positions along one axis with the same in-bounds taps:
    [(first, count, taps)], in increasing order."""
    segs = []
    for o in range(n_out):
        start = o * s - pad
        taps = tuple(t for t in range(k) if 0 <= start + t < n_in)
        if segs and segs[-1][2] == taps and segs[-1][0] + segs[-1][1] == o:
            segs[-1][1] += 1
        else:
            segs.append([o, 1, taps])
    return [tuple(sg) for sg in segs]


class _Pool:
    """Shared state of one pooling kernel: geometry, vector width, window iteration."""

    def __init__(self, F: _Fn, x_shape, attrs, OH, OW, vw):
        self.F = F
        self.N, self.H, self.W, self.C = x_shape
        (self.ph, self.pw), (self.sh, self.sw) = attrs["pool"], attrs["strides"]
        (self.pt, _), (self.pl, _) = attrs["padding"]
        self.OH, self.OW = OH, OW
        self.V = pick_width(self.C, vw)
        self.rsegs = _segments(OH, self.ph, self.sh, self.pt, self.H)
        self.csegs = _segments(OW, self.pw, self.sw, self.pl, self.W)

    def _run(self, first, count, body, reverse):
        F, b = self.F, self.F.b
        if count == 1:
            body(first)
            return
        if not reverse:
            F.loop(first, first + count, lambda o, _: body(o), name="w")
        else:
            F.loop(0, count, lambda k, _: body(b.sub(I64(first + count - 1), k)), name="wr")

    def windows(self, body, reverse=False):
        """body(oh, ow, rtaps, ctaps) for every window, in row-major order (or reversed);
        oh/ow are ints or i64 values."""
        rsegs = self.rsegs[::-1] if reverse else self.rsegs
        csegs = self.csegs[::-1] if reverse else self.csegs
        for r0, rn, rtaps in rsegs:
            def row(oh, rtaps=rtaps):
                for c0, cn, ctaps in csegs:
                    self._run(c0, cn, lambda ow, ctaps=ctaps: body(oh, ow, rtaps, ctaps),
                              reverse)
            self._run(r0, rn, row, reverse)

    def channels(self, body):
        """body(c0, lanes) over channel vectors: full ones in a loop, the rest masked."""
        F, V, C = self.F, self.V, self.C
        nfull = C // V
        F.repeat(0, nfull, lambda cb, _: body(F.mul(cb, V), V), name="cb")
        if C % V:
            body(nfull * V, C % V)

    def in_index(self, n, oh, ow, i, j, c0):
        """Flat index of input element (window (oh, ow), tap (i, j), channel c0) — one
        index expression, so no out-of-object intermediate pointer is ever formed."""
        F, H, W, C = self.F, self.H, self.W, self.C
        return (F.mul(n, H * W * C), F.mul(oh, self.sh * W * C), F.mul(ow, self.sw * C), c0,
                ((i - self.pt) * W + (j - self.pl)) * C)

    def out_index(self, n, oh, ow, c0):
        F, C = self.F, self.C
        return (F.mul(n, self.OH * self.OW * C), F.mul(oh, self.OW * C), F.mul(ow, C), c0)

    def argmax(self, src, n, oh, ow, rtaps, ctaps, c0, lanes):
        """Per lane, the FIRST maximal tap (index i*pw + j) of the window, as <V x i32>,
        with the nn.py rule: strict '>' over taps in row-major order starting from tap 0,
        where a padded tap is -inf (so an all -inf/NaN window keeps padded tap 0)."""
        F, b, V = self.F, self.F.b, self.V
        taps = [(i, j) for i in rtaps for j in ctaps]
        ity = ir.VectorType(I32, V)
        if taps[0] == (0, 0):
            best = F.vload(F.ptr(src, *self.in_index(n, oh, ow, 0, 0, c0)), V, lanes)
            rest = taps[1:]
        else:
            best = ir.Constant(_vty(V), [float("-inf")] * V)
            rest = taps
        idx = ir.Constant(ity, [0] * V)
        for i, j in rest:
            v = F.vload(F.ptr(src, *self.in_index(n, oh, ow, i, j, c0)), V, lanes)
            upd = b.fcmp_ordered(">", v, best)
            best = b.select(upd, v, best)
            idx = b.select(upd, ir.Constant(ity, [i * self.pw + j] * V), idx)
        self.last_max = best        # the maximal value itself (relu_mask reads it)
        return idx, taps

    def is_tap(self, idx, i, j):
        return self.F.b.icmp_signed(
            "==", idx, ir.Constant(ir.VectorType(I32, self.V), [i * self.pw + j] * self.V))

    def coverage_complete(self):
        rows = {o * self.sh - self.pt + i for o in range(self.OH) for i in range(self.ph)}
        cols = {o * self.sw - self.pl + j for o in range(self.OW) for j in range(self.pw)}
        return all(r in rows for r in range(self.H)) and all(c in cols for c in range(self.W))


# --------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------

def _emit_forward(module, name, x_shape, pool, strides, padding, kind, vector_width):
    op = "max_pool2d" if kind == "max" else "avg_pool2d"
    attrs, OH, OW = _geometry(op, x_shape, pool, strides, padding)
    vw = _host_width(vector_width)
    F = _Fn(module, name, 1, (), split_extent=x_shape[0])
    P = _Pool(F, x_shape, attrs, OH, OW, vw)
    x = F.ins[0]
    b, V = F.b, P.V
    vmax = _decl(module, f"llvm.maximum.v{V}f32", _vty(V), [_vty(V), _vty(V)])

    def image(n, _):
        def window(oh, ow, rtaps, ctaps):
            def chan(c0, lanes):
                acc = None if kind == "max" else F.zeros(V)
                for i in rtaps:
                    for j in ctaps:
                        v = F.vload(F.ptr(x, *P.in_index(n, oh, ow, i, j, c0)), V, lanes)
                        if kind == "max":
                            # llvm.maximum propagates NaN like np.maximum (maxnum would not).
                            acc = v if acc is None else b.call(vmax, [acc, v])
                        else:
                            # 0 + t0 + t1 + ...: the reference's order (its padded taps add
                            # exact zeros).
                            acc = b.fadd(acc, v)
                if kind == "avg":
                    cnt = float(len(rtaps) * len(ctaps))
                    # fp32 division == the reference's float64 division rounded to fp32.
                    acc = b.fdiv(acc, ir.Constant(_vty(V), [cnt] * V))
                F.vstore(acc, F.ptr(F.out, *P.out_index(n, oh, ow, c0)), lanes)
            P.channels(chan)
        P.windows(window)
    F.loop(F.begin, F.end, image, name="n")
    return F.ret()


def emit_max_pool2d(module: ir.Module, name: str, x_shape, pool, strides,
                    padding=((0, 0), (0, 0)), *, vector_width: int | None = None) -> ir.Function:
    """``void name(x, y, i64 begin, i64 end)``: y = max over each window's in-bounds taps
    (padding never wins), images [begin, end)."""
    return _emit_forward(module, name, x_shape, pool, strides, padding, "max", vector_width)


def emit_avg_pool2d(module: ir.Module, name: str, x_shape, pool, strides,
                    padding=((0, 0), (0, 0)), *, vector_width: int | None = None) -> ir.Function:
    """``void name(x, y, i64 begin, i64 end)``: y = mean over each window's in-bounds taps
    (the divisor is their count, a constant per window class), images [begin, end)."""
    return _emit_forward(module, name, x_shape, pool, strides, padding, "avg", vector_width)


# --------------------------------------------------------------------------------------
# gradients and the gather
# --------------------------------------------------------------------------------------

def _scatter_kernel(module, name, op, x_shape, pool, strides, padding, vector_width, n_in,
                    contrib):
    """dx (shape x_shape) from per-window contributions: ``contrib(P, n, oh, ow, rtaps,
    ctaps, c0, lanes) -> (dy_vector_or_None, select(tap) -> vector)``."""
    attrs, OH, OW = _geometry(op, x_shape, pool, strides, padding)
    vw = _host_width(vector_width)
    F = _Fn(module, name, n_in, (), split_extent=x_shape[0])
    P = _Pool(F, x_shape, attrs, OH, OW, vw)
    b, V = F.b, P.V
    H, W, C = P.H, P.W, P.C
    overlap = P.sh < P.ph or P.sw < P.pw
    zero_fill = overlap or not P.coverage_complete()

    def image(n, _):
        if zero_fill:
            F.memset0(F.ptr(F.out, F.mul(n, H * W * C)), H * W * C)

        def window(oh, ow, rtaps, ctaps):
            def chan(c0, lanes):
                part = contrib(P, n, oh, ow, rtaps, ctaps, c0, lanes)
                for i in rtaps:
                    for j in ctaps:
                        p = F.ptr(F.out, *P.in_index(n, oh, ow, i, j, c0))
                        v = part(i, j)
                        if overlap:
                            v = b.fadd(F.vload(p, V, lanes), v)
                        F.vstore(v, p, lanes)
            P.channels(chan)
        # Descending window order: each element's contributions arrive in ascending tap
        # order, as in the reference (only matters when windows overlap).
        P.windows(window, reverse=overlap)
    F.loop(F.begin, F.end, image, name="n")
    return F.ret()


def emit_max_pool2d_grad(module: ir.Module, name: str, x_shape, pool, strides,
                         padding=((0, 0), (0, 0)), *, relu_mask: bool = False,
                         vector_width: int | None = None) -> ir.Function:
    """``void name(x, dy, dx, i64 begin, i64 end)``: each window's dy goes to the FIRST
    maximal element of its window (row-major tap order; ties are not split); overlapping
    windows add up (in the reference's order). Images [begin, end). ``relu_mask``: x is a
    relu's output and dx that relu's input gradient: each contribution is
    ``select(max > 0, dy, dy * 0)`` (relumask.py)."""
    def contrib(P, n, oh, ow, rtaps, ctaps, c0, lanes):
        F = P.F
        x, dy = F.ins
        idx, _ = P.argmax(x, n, oh, ow, rtaps, ctaps, c0, lanes)
        g = F.vload(F.ptr(dy, *P.out_index(n, oh, ow, c0)), P.V, lanes)
        zero = F.zeros(P.V)
        if relu_mask:
            g = F.b.select(F.b.fcmp_ordered(">", P.last_max, zero), g, F.b.fmul(g, zero))
        return lambda i, j: F.b.select(P.is_tap(idx, i, j), g, zero)
    return _scatter_kernel(module, name, "max_pool2d_grad", x_shape, pool, strides, padding,
                           vector_width, 2, contrib)


def emit_avg_pool2d_grad(module: ir.Module, name: str, input_shape, pool, strides,
                         padding=((0, 0), (0, 0)), *,
                         vector_width: int | None = None) -> ir.Function:
    """``void name(dy, dx, i64 begin, i64 end)``: each window's dy / (its count of in-bounds
    taps) spread over those taps; overlapping windows add up (in the reference's order).
    ``input_shape`` is dx's shape. Images [begin, end)."""
    def contrib(P, n, oh, ow, rtaps, ctaps, c0, lanes):
        F = P.F
        (dy,) = F.ins
        g = F.vload(F.ptr(dy, *P.out_index(n, oh, ow, c0)), P.V, lanes)
        cnt = float(len(rtaps) * len(ctaps))
        share = F.b.fdiv(g, ir.Constant(_vty(P.V), [cnt] * P.V))
        return lambda i, j: share
    return _scatter_kernel(module, name, "avg_pool2d_grad", input_shape, pool, strides,
                           padding, vector_width, 1, contrib)


def emit_max_pool2d_gather(module: ir.Module, name: str, x_shape, pool, strides,
                           padding=((0, 0), (0, 0)), *,
                           vector_width: int | None = None) -> ir.Function:
    """``void name(x, g, y, i64 begin, i64 end)``: y (shaped like max_pool2d(x)) = g read at
    each window's first argmax of x (0 where that is a padded tap). Images [begin, end)."""
    attrs, OH, OW = _geometry("max_pool2d_gather", x_shape, pool, strides, padding)
    vw = _host_width(vector_width)
    F = _Fn(module, name, 2, (), split_extent=x_shape[0])
    P = _Pool(F, x_shape, attrs, OH, OW, vw)
    x, gsrc = F.ins
    b, V = F.b, P.V

    def image(n, _):
        def window(oh, ow, rtaps, ctaps):
            def chan(c0, lanes):
                idx, taps = P.argmax(x, n, oh, ow, rtaps, ctaps, c0, lanes)
                acc = F.zeros(V)
                for i, j in taps:
                    gv = F.vload(F.ptr(gsrc, *P.in_index(n, oh, ow, i, j, c0)), V, lanes)
                    acc = b.select(P.is_tap(idx, i, j), gv, acc)
                F.vstore(acc, F.ptr(F.out, *P.out_index(n, oh, ow, c0)), lanes)
            P.channels(chan)
        P.windows(window)
    F.loop(F.begin, F.end, image, name="n")
    return F.ret()
