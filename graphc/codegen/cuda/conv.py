"""Convolutions (NHWC activations, HWIO filters) as implicit-GEMM ``numba.cuda`` kernels.

All three ops are one GEMM per group, ``C[M, N] = sum_k A[m, k] * B[k, n]``, whose operand
tiles are gathered from the tensors on the fly (no im2col buffer):

    op                       M (rows)          N (cols)   K (reduced)       A (gathered)  B
    conv2d                   N*OH*OW pixels    Cout/g     KH*KW*Cin/g       x windows     w
    conv2d_backprop_input    N*H*W pixels      Cin/g      KH*KW*Cout/g      dy windows    w^T
    conv2d_backprop_filter   KH*KW*Cin/g taps  Cout/g     N*OH*OW pixels    x windows     dy

A's element (m, k) reads at ``h = h_m + h_k``, ``w = w_m + w_k`` (a row part plus a
reduction part); padding, stride and dilation live in those parts and in the validity test
(zero outside the input; for the input gradient, ``h`` must also be a multiple of the stride:
only those taps of a window hit the pixel). The row parts of a tile are computed once per
tile into shared-memory tables; the reduction parts once per K slab where a thread's slab
column is fixed. Both tiles are staged through shared memory (``cuda.shared.array`` of
compile-time size) and each thread computes an R x R register block (``tiles.py``, as the
matmul), then writes through the kernel's fused epilogue (``_Ctx.store``). A tile is as wide
as the group's output channels need (a 6-channel conv gets 8 columns, not 64) and then takes
more rows to keep its block's threads. Groups are the grid's z axis.

Not done: with stride s > 1 the input gradient's K runs over every tap though only about
1/s^2 of them hit a given pixel (the rest load zeros); splitting the pixels into s x s phase
classes, each a GEMM over only its own taps, would remove that work.

Each output is summed in one fixed order (k ascending within a thread, no atomics), so
results are bit-identical run to run. The filter gradient's K (the batch's pixels) is long
and its output small: ``split_k`` rewrites such a kernel, before rendering, into partial
GEMMs over S chunks of K (grid z = groups x chunks) writing an ``[S, ...]`` workspace, and an
ordinary loop-kernel reduction over S (in order) that carries the epilogue — the second,
deterministic pass. Any conv whose tiles would leave the GPU idle is split the same way.

Grouped convs with fewer than ``GEMM_MIN_GROUP_CHANNELS`` channels per group on either side
(depthwise convs above all) keep the direct kernels below: a per-group GEMM would be at most
a few columns wide with nothing to reuse, and with one group per block its gathers read one
channel at a stride of Cin, where the direct kernel's adjacent threads take adjacent channels.

1-D convs reach here as 2-D ones on an (N, 1, W, C) view (``frontend/layers/conv.py``), and
transposed convs as ``conv2d_backprop_input``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from graphc.codegen.cuda.source import (CudaConfig, block_thread_ids, cast, column_width,
                                        coord_names, decode, grid_stride, indent, literal,
                                        np_ctor, reduction_width)
from graphc.codegen.cuda.tiles import acc_names, matmul_tile, slab_product
from graphc.codegen.kernel import (Acc, Buffer, Load, LoopKernel, Program, Reduction, Store,
                                   TemplateKernel, Var, flatten)

CONV_OPS = ("conv2d", "conv2d_backprop_input", "conv2d_backprop_filter")
GEMM_MIN_GROUP_CHANNELS = 4     # grouped convs thinner than this stay direct (see above)
SPLIT_MIN_SLABS = 8             # a split-K chunk covers at least this many K slabs
SPLIT_MAX = 128                 # most chunks of one split (the workspace is S x the output)
_OUTSIDE = -(1 << 30)           # row table entry of rows past M: every window test fails


def _prod(shape) -> int:
    return int(np.prod(shape)) if len(shape) else 1


@dataclass(frozen=True)
class Geometry:
    """A conv's shapes and attributes, whichever of the three ops it comes from."""
    N: int
    H: int
    W: int
    CIN: int
    OH: int
    OW: int
    KH: int
    KW: int
    CG: int
    COUT: int
    sh: int
    sw: int
    dh: int
    dw: int
    pt: int
    pl: int
    groups: int

    @property
    def OG(self) -> int:
        return self.COUT // self.groups

    @classmethod
    def of(cls, k: TemplateKernel, buffers) -> "Geometry":
        a, b = (buffers[i].shape for i in k.inputs)
        out = buffers[k.output].shape[-4:]     # a split kernel's workspace has a lead axis
        if k.op == "conv2d":
            x, w, y = a, b, out
        elif k.op == "conv2d_backprop_input":
            x, w, y = out, b, a
        else:
            x, w, y = a, out, b
        at = k.attrs
        (sh, sw), (dh, dw) = at["strides"], at["dilation"]
        (pt, _), (pl, _) = at["padding"]
        return cls(x[0], x[1], x[2], x[3], y[1], y[2], w[0], w[1], w[2], w[3],
                   sh, sw, dh, dw, pt, pl, at["groups"])

    def uses_gemm(self) -> bool:
        return self.groups == 1 or min(self.CG, self.OG) >= GEMM_MIN_GROUP_CHANNELS

    def gemm_shape(self, op: str) -> tuple[int, int, int]:
        """(M, N, K) of one group's GEMM (the table in the module docstring)."""
        taps = self.KH * self.KW
        if op == "conv2d":
            return self.N * self.OH * self.OW, self.OG, taps * self.CG
        if op == "conv2d_backprop_input":
            return self.N * self.H * self.W, self.CG, taps * self.OG
        return taps * self.CG, self.OG, self.N * self.OH * self.OW

# ----------------------------------------------------------------------------- tiles


@dataclass(frozen=True)
class Tiles:
    TM: int
    TN: int
    TK: int
    R: int

    @property
    def BX(self) -> int:
        return self.TN // self.R

    @property
    def BY(self) -> int:
        return self.TM // self.R

    @property
    def threads(self) -> int:
        return self.BX * self.BY


def gemm_tiles(M: int, N: int, groups: int, cfg: CudaConfig) -> Tiles:
    """The matmul's tile and register block, each side cut to what M or N needs (R times a
    power of two: a 6-channel conv gets 8 columns, not 64), and a K slab that divides the
    thread count (so a thread's slab column is the same in every slab and its
    reduction-side address math is done once per slab)."""
    T, R = matmul_tile(M, N, groups, cfg)
    need_m, need_n = (R * _pow2ceil(-(-d // R)) for d in (M, N))
    TM, TN = min(T, need_m), min(T, need_n)
    # A narrow tile (few output channels) takes more rows instead, up to 4x, so that a
    # block keeps at least a quarter of the config's block size in threads.
    while (TM // R) * (TN // R) < cfg.block // 4 and TM < min(need_m, 4 * T):
        TM *= 2
    TK = math.gcd(cfg.mm_tile_k, (TM // R) * (TN // R))
    return Tiles(TM, TN, TK, R)


def _pow2ceil(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def split_factor(g: Geometry, op: str, cfg: CudaConfig) -> int:
    """Chunks S of K for a conv whose output tiles (x groups) cannot fill the GPU: about two
    blocks per multiprocessor, each chunk at least ``SPLIT_MIN_SLABS`` K slabs long."""
    if not g.uses_gemm():
        return 1
    M, N, K = g.gemm_shape(op)
    t = gemm_tiles(M, N, g.groups, cfg)
    blocks = -(-M // t.TM) * -(-N // t.TN) * g.groups
    if blocks >= cfg.sm_count:
        return 1
    S = min(-(-2 * cfg.sm_count // blocks), K // (SPLIT_MIN_SLABS * t.TK), SPLIT_MAX)
    if S <= 1:
        return 1
    return -(-K // _chunk(K, S, t.TK))     # no empty chunk


def _chunk(K: int, S: int, TK: int) -> int:
    """The K extent of each of S chunks: K / S rounded up to whole slabs."""
    per = -(-K // S)
    return -(-per // TK) * TK


def split_k(program: Program, cfg: CudaConfig) -> Program:
    """``program`` with every implicit-GEMM conv that ``split_factor`` splits replaced by a
    partial kernel (attr ``split_k``: S) into a new ``[S, *out]`` temp and a reduction over S
    that applies the original epilogue. The input program is not modified."""
    buffers, kernels = list(program.buffers), []
    for k in program.kernels:
        S = 1
        if isinstance(k, TemplateKernel) and k.op in CONV_OPS and "split_k" not in k.attrs:
            S = split_factor(Geometry.of(k, buffers), k.op, cfg)
        if S == 1:
            kernels.append(k)
            continue
        out = buffers[k.output]
        ws = Buffer(len(buffers), (S,) + tuple(out.shape), out.dtype, "temp",
                    f"{out.name or k.name}.split{S}")
        buffers.append(ws)
        kernels.append(TemplateKernel(f"{k.name}_part", k.op, list(k.inputs), ws.id,
                                      {**k.attrs, "split_k": S}, None))
        rank = len(out.shape)
        coords = [Var(i) for i in range(rank)]
        part = Load(ws.id, flatten([Var(rank)] + coords, ws.shape), out.dtype)
        value = k.epilogue if k.epilogue is not None else Acc(out.dtype)
        kernels.append(LoopKernel(f"{k.name}_sum", tuple(out.shape),
                                  [Store(k.output, flatten(coords, out.shape), value)],
                                  Reduction((S,), "sum", part, out.dtype)))
    if len(kernels) == len(program.kernels):
        return program
    return replace(program, buffers=buffers, kernels=kernels)

# ----------------------------------------------------------------------------- operands


@dataclass(frozen=True)
class Window:
    """A windowed operand's spatial test and address: ``h`` is valid when ``0 <= h`` and
    ``h < lim_h * div_h`` and ``h % div_h == 0``, and adds ``(h // div_h) * step_h``."""
    lim_h: int
    lim_w: int
    div_h: int
    div_w: int
    step_h: int
    step_w: int


@dataclass
class Operand:
    """How element (x, k) of a GEMM operand is read; x is the operand's own axis (M for A,
    N for B). ``x_part(x, q)`` / ``k_part(k, q)`` are lines defining ``{q}o`` (an address
    term; the two add up) and, with a ``window``, ``{q}h`` and ``{q}w``. ``fast`` names the
    axis that is contiguous in memory: adjacent threads load along it. ``size`` is the
    tensor's element count."""
    arg: str
    size: int                   # elements of the tensor read
    X: int
    fast: str
    x_part: Callable[[str, str], list[str]]
    k_part: Callable[[str, str], list[str]]
    window: Window | None = None


class _Loader:
    """The lines that stage one operand's (TK x TX) tile in shared array ``s``:
    ``top`` once per thread, ``table`` once per x tile (then a syncthreads), ``tile`` once
    per x tile after it, ``slab`` once per K slab."""

    def __init__(self, op: Operand, p: str, s: str, TX: int, TK: int, NT: int, x0: str,
                 zero: str):
        self.op, self.p, self.s, self.TX, self.TK, self.zero = op, p, s, TX, TK, zero
        self.top, self.table, self.tile, self.slab = [], [], [], []
        self.shared_bytes = 0
        fast_n = TK if op.fast == "k" else TX
        if op.window is not None:
            self._tables(NT, x0)
        xs = self._x_lines(f"{p}x", x0)
        ks = self._k_lines(f"{p}k")
        if NT % fast_n == 0 and op.fast == "k":
            # The thread's slab column kk is fixed: its k part once per slab.
            self.top += [f"{p}kk = tid % {TK}", f"{p}x1 = tid // {TK}"]
            self.slab += ks + [f"for {p}xx in range({p}x1, {TX}, {NT // TK}):"]
            self.slab += indent(xs + self._element())
        elif NT % fast_n == 0:
            # The thread's tile row xx is fixed: its x part once per tile.
            self.top += [f"{p}xx = tid % {TX}", f"{p}k1 = tid // {TX}"]
            self.tile += xs
            self.slab += [f"for {p}kk in range({p}k1, {TK}, {NT // TX}):"]
            self.slab += indent(ks + self._element())
        else:
            e = f"{p}e"
            fast, slow = (f"{p}kk", f"{p}xx") if op.fast == "k" else (f"{p}xx", f"{p}kk")
            self.slab += [f"for {e} in range(tid, {TX * TK}, {NT}):",
                          f"    {fast} = {e} % {fast_n}", f"    {slow} = {e} // {fast_n}"]
            self.slab += indent(xs + ks + self._element())

    def _tables(self, NT, x0):
        """Shared tables of the x parts of a windowed operand (rows past X get _OUTSIDE)."""
        p, TX, op = self.p, self.TX, self.op
        q = f"{p}x"
        # int32 entries unless the tensor's offsets need more (h, w are small either way).
        wide = op.size >= 1 << 31
        it = "np.int64" if wide else "np.int32"
        self.top += [f"{p}To = cuda.shared.array({TX}, {it})",
                     f"{p}Th = cuda.shared.array({TX}, np.int32)",
                     f"{p}Tw = cuda.shared.array({TX}, np.int32)"]
        self.shared_bytes += (8 if wide else 4) * TX + 2 * 4 * TX
        body = op.x_part(f"{p}xg", q) + [f"{p}To[{p}t] = {q}o", f"{p}Th[{p}t] = {q}h",
                                         f"{p}Tw[{p}t] = {q}w"]
        self.table += [f"for {p}t in range(tid, {TX}, {NT}):", f"    {p}xg = {x0} + {p}t",
                       f"    if {p}xg < {op.X}:"] + indent(body, 2)
        self.table += ["    else:", f"        {p}To[{p}t] = 0", f"        {p}Th[{p}t] = {_OUTSIDE}",
                       f"        {p}Tw[{p}t] = 0"]

    def _x_lines(self, q, x0):
        p, op = self.p, self.op
        if op.window is not None:
            return [f"{q}o = {p}To[{p}xx]", f"{q}h = {p}Th[{p}xx]", f"{q}w = {p}Tw[{p}xx]"]
        return [f"{p}xg = {x0} + {p}xx", f"{p}xv = {p}xg < {op.X}"] + op.x_part(f"{p}xg", q)

    def _k_lines(self, q):
        p = self.p
        return [f"{p}kg = k0 + {p}kk", f"{p}kv = {p}kg < ke"] + self.op.k_part(f"{p}kg", q)

    def _element(self) -> list[str]:
        p, op, s = self.p, self.op, self.s
        conds = [f"{p}kv"] if op.window is not None else [f"{p}xv", f"{p}kv"]
        addr = f"{p}xo + {p}ko"
        lines = []
        w = op.window
        if w is not None:
            for v, lim, div, step in ((f"{p}h", w.lim_h, w.div_h, w.step_h),
                                      (f"{p}w", w.lim_w, w.div_w, w.step_w)):
                lines.append(f"{v} = {p}x{v[-1]} + {p}k{v[-1]}")
                conds += [f"{v} >= 0", f"{v} < {lim * div}"]
                if div > 1:
                    conds.append(f"{v} % {div} == 0")
                    addr += f" + ({v} // {div}) * {step}"
                else:
                    addr += f" + {v} * {step}"
        return lines + [f"if {' and '.join(conds)}:", f"    {s}[{p}kk, {p}xx] = {op.arg}[{addr}]",
                        "else:", f"    {s}[{p}kk, {p}xx] = {self.zero}"]


def _implicit_gemm(c, g: Geometry, A: Operand, B: Operand, S: int):
    """The kernel of C = A @ B per group (and split-K chunk): see the module docstring."""
    op = c.k.op
    M, N, K = g.gemm_shape(op)
    G = g.groups
    t = gemm_tiles(M, N, G, c.cfg)
    TM, TN, TK, R, BX, BY, NT = t.TM, t.TN, t.TK, t.R, t.BX, t.BY, t.threads
    MT, NTL = -(-M // TM), -(-N // TN)
    dt = c.dt
    ctype, zero = np_ctor(dt), literal(0, dt)
    la = _Loader(A, "a", "sA", TM, TK, NT, "row0", zero)
    lb = _Loader(B, "b", "sB", TN, TK, NT, "col0", zero)
    assert not lb.table, "B is never windowed: its tiles need no tables"
    # A k-fast operand's adjacent threads store down a column: a padded row keeps them
    # in different banks.
    pa, pb = (1 if o.fast == "k" else 0 for o in (A, B))
    body = [f"sA = cuda.shared.array(({TK}, {TM + pa}), {ctype})",
            f"sB = cuda.shared.array(({TK}, {TN + pb}), {ctype})",
            "tx = cuda.threadIdx.x", "ty = cuda.threadIdx.y", f"tid = ty * {BX} + tx"]
    body += la.top + lb.top
    body.append(f"for z in range(cuda.blockIdx.z, {G * S}, cuda.gridDim.z):")
    if S == 1:
        zl = ["gi = z", "kb = 0", f"ke = {K}", "ob = 0"]
    else:
        KC = _chunk(K, S, TK)
        zl = [f"gi = z // {S}", f"sk = z % {S}", f"kb = sk * {KC}", f"ke = min(kb + {KC}, {K})",
              f"ob = sk * {M * g.groups * N}"]
    zl.append(f"for tm in range(cuda.blockIdx.y, {MT}, cuda.gridDim.y):")
    ml = [f"row0 = tm * {TM}"] + la.table
    if la.table:
        # Tables are read by every thread's loads below; the previous tile's last reads
        # happened before the slab loop's syncthreads, so refilling here is safe.
        ml.append("cuda.syncthreads()")
    ml.append(f"for tn in range(cuda.blockIdx.x, {NTL}, cuda.gridDim.x):")
    acc = acc_names(R)
    nl = [f"col0 = tn * {TN}"] + la.tile + lb.tile
    nl += [f"{acc[i][j]} = {zero}" for i in range(R) for j in range(R)]
    kl = la.slab + lb.slab + ["cuda.syncthreads()"] + slab_product(R, BX, BY, TK)
    # The next slab overwrites sA/sB: every thread must be done reading this one.
    kl.append("cuda.syncthreads()")
    nl += [f"for k0 in range(kb, ke, {TK}):"] + indent(kl)
    nl += _tile_stores(c, acc, R, BX, BY, M, N, G * N)
    body += indent(zl + indent(ml + indent(nl)))
    cap = _grid_cap(c.cfg)
    grid = (min(NTL, cap), min(MT, cap), min(G * S, cap if not c.cfg.simulator else 1))
    shared = TK * (TM + pa + TN + pb) * dt.itemsize + la.shared_bytes
    split = f", split-K {S} (chunks of {_chunk(K, S, TK)})" if S > 1 else ""
    sched = (f"{op} implicit GEMM {G}x[{M}x{K}]@[{K}x{N}]{split}: tile {TM}x{TN}x{TK}, "
             f"{R}x{R} registers/thread, gathered shared-memory slabs")
    return c.finish(body, grid, (BX, BY, 1), shared, sched, S * M * G * N,
                    {"tile_m": TM, "tile_n": TN, "tile_k": TK, "reg": R, "split_k": S})


def _grid_cap(cfg: CudaConfig) -> int:
    return 65535 if not cfg.simulator else cfg.max_blocks


def _tile_stores(c, acc, R, BX, BY, M, N, CT) -> list[str]:
    """Stores of the register block: output row r (whose coordinates are the first three
    output axes), channel gi*N + cn, through the epilogue."""
    shape = c.obuf.shape[-4:]
    rows = coord_names(shape[:3], "q")
    coords = rows + ["co"]
    lines = []
    for i in range(R):
        lines += [f"r = row0 + ty + {i * BY}", f"if r < {M}:"]
        inner = decode("r", shape[:3], rows) if c.k.epilogue is not None else []
        for j in range(R):
            inner += [f"cn = col0 + tx + {j * BX}", f"if cn < {N}:"]
            st = [f"co = gi * {N} + cn"]
            st += c.store(acc[i][j], f"ob + r * {CT} + co", coords)
            inner += indent(st)
        lines += indent(inner)
    return lines


def _parts(names_shape, fn):
    """An x/k part: decode the index over ``names_shape`` into coordinates, then ``fn``."""
    def part(ix, p):
        names = coord_names(names_shape, f"{p}d")
        return decode(ix, names_shape, names) + fn(p, *names)
    return part


def _conv2d_gemm(c, g: Geometry, S: int):
    X, Wt = c.ins
    xsize, wsize = (_prod(b.shape) for b in c.in_bufs)
    win = Window(g.H, g.W, 1, 1, g.W * g.CIN, g.CIN)
    A = Operand(X, xsize, g.N * g.OH * g.OW, "k",
                _parts((g.N, g.OH, g.OW), lambda p, n, oh, ow: [
                    f"{p}o = {n} * {g.H * g.W * g.CIN} + gi * {g.CG}",
                    f"{p}h = {oh} * {g.sh} - {g.pt}", f"{p}w = {ow} * {g.sw} - {g.pl}"]),
                _parts((g.KH, g.KW, g.CG), lambda p, kh, kw, ci: [
                    f"{p}o = {ci}", f"{p}h = {kh} * {g.dh}", f"{p}w = {kw} * {g.dw}"]),
                win)
    B = Operand(Wt, wsize, g.OG, "x", lambda x, p: [f"{p}o = gi * {g.OG} + {x}"],
                lambda k, p: [f"{p}o = {k} * {g.COUT}"])
    return _implicit_gemm(c, g, A, B, S)


def _backprop_input_gemm(c, g: Geometry, S: int):
    DY, Wt = c.ins
    dysize, wsize = (_prod(b.shape) for b in c.in_bufs)
    # Output row oh sees input row ih through tap kh when oh*sh - pt + kh*dh == ih: with
    # h = ih + pt - kh*dh, the tap hits when h >= 0, h % sh == 0 and h // sh < OH.
    win = Window(g.OH, g.OW, g.sh, g.sw, g.OW * g.COUT, g.COUT)
    A = Operand(DY, dysize, g.N * g.H * g.W, "k",
                _parts((g.N, g.H, g.W), lambda p, n, ih, iw: [
                    f"{p}o = {n} * {g.OH * g.OW * g.COUT} + gi * {g.OG}",
                    f"{p}h = {ih} + {g.pt}", f"{p}w = {iw} + {g.pl}"]),
                _parts((g.KH, g.KW, g.OG), lambda p, kh, kw, co: [
                    f"{p}o = {co}", f"{p}h = -({kh} * {g.dh})", f"{p}w = -({kw} * {g.dw})"]),
                win)
    B = Operand(Wt, wsize, g.CG, "k", lambda x, p: [f"{p}o = {x} * {g.COUT} + gi * {g.OG}"],
                _parts((g.KH * g.KW, g.OG), lambda p, tap, co: [
                    f"{p}o = {tap} * {g.CG * g.COUT} + {co}"]))
    return _implicit_gemm(c, g, A, B, S)


def _backprop_filter_gemm(c, g: Geometry, S: int):
    X, DY = c.ins
    xsize, dysize = (_prod(b.shape) for b in c.in_bufs)
    win = Window(g.H, g.W, 1, 1, g.W * g.CIN, g.CIN)
    A = Operand(X, xsize, g.KH * g.KW * g.CG, "x",
                _parts((g.KH, g.KW, g.CG), lambda p, kh, kw, ci: [
                    f"{p}o = gi * {g.CG} + {ci}", f"{p}h = {kh} * {g.dh}",
                    f"{p}w = {kw} * {g.dw}"]),
                _parts((g.N, g.OH, g.OW), lambda p, n, oh, ow: [
                    f"{p}o = {n} * {g.H * g.W * g.CIN}", f"{p}h = {oh} * {g.sh} - {g.pt}",
                    f"{p}w = {ow} * {g.sw} - {g.pl}"]),
                win)
    B = Operand(DY, dysize, g.OG, "x", lambda x, p: [f"{p}o = gi * {g.OG} + {x}"],
                lambda k, p: [f"{p}o = {k} * {g.COUT}"])
    return _implicit_gemm(c, g, A, B, S)

# ----------------------------------------------------------------------------- renderers


def _render(gemm, direct):
    def render(c):
        g = Geometry.of(c.k, c.buffers)
        S = c.k.attrs.get("split_k", 1)
        if S > 1 and c.k.epilogue is not None:
            raise ValueError("a split-K conv kernel takes no epilogue (its sum pass does)")
        if g.uses_gemm():
            return gemm(c, g, S)
        return direct(c, g)
    return render

# ----------------------------------------------------------------------------- direct


def _conv2d_direct(c, g: Geometry):
    X, Wt = c.ins
    names = coord_names(c.obuf.shape, "q")
    n, oh, ow, co = names
    inner = decode("o", c.obuf.shape, names)
    inner.append(f"cb = ({co} // {g.OG}) * {g.CG}")
    inner += [f"acc = {literal(0, c.dt)}",
              f"for kh in range({g.KH}):",
              f"    ih = {oh} * {g.sh} - {g.pt} + kh * {g.dh}",
              f"    if ih >= 0 and ih < {g.H}:",
              f"        for kw in range({g.KW}):",
              f"            iw = {ow} * {g.sw} - {g.pl} + kw * {g.dw}",
              f"            if iw >= 0 and iw < {g.W}:",
              f"                xb = (({n} * {g.H} + ih) * {g.W} + iw) * {g.CIN} + cb",
              f"                wb = (kh * {g.KW} + kw) * {g.CG * g.COUT} + {co}",
              f"                for ci in range({g.CG}):",
              f"                    acc = acc + {X}[xb + ci] * {Wt}[wb + ci * {g.COUT}]"]
    inner += c.store("acc", "o", names)
    n_out = _prod(c.obuf.shape)
    body, grid, threads = c.grid_stride_loop(n_out, inner)
    return c.finish(body, (grid, 1, 1), (threads, 1, 1), 0,
                    f"conv2d direct (grouped, {g.CG} in/{g.OG} out channels per group): "
                    f"1 thread/output, {g.KH * g.KW * g.CG} MACs each", n_out)


def _backprop_input_direct(c, g: Geometry):
    DY, Wt = c.ins
    names = coord_names(c.obuf.shape, "q")
    n, ih, iw, ci = names
    inner = decode("o", c.obuf.shape, names)
    inner += [f"gb = ({ci} // {g.CG}) * {g.OG}", f"cl = {ci} % {g.CG}"]
    hdiv = f" and th % {g.sh} == 0" if g.sh > 1 else ""
    wdiv = f" and tw % {g.sw} == 0" if g.sw > 1 else ""
    # Output row oh sees input row ih through tap kh when oh*sh - pt + kh*dh == ih.
    inner += [f"acc = {literal(0, c.dt)}",
              f"for kh in range({g.KH}):",
              f"    th = {ih} + {g.pt} - kh * {g.dh}",
              f"    if th >= 0{hdiv}:",
              f"        oh = th // {g.sh}",
              f"        if oh < {g.OH}:",
              f"            for kw in range({g.KW}):",
              f"                tw = {iw} + {g.pl} - kw * {g.dw}",
              f"                if tw >= 0{wdiv}:",
              f"                    ow = tw // {g.sw}",
              f"                    if ow < {g.OW}:",
              f"                        db = (({n} * {g.OH} + oh) * {g.OW} + ow) * {g.COUT} + gb",
              f"                        wb = ((kh * {g.KW} + kw) * {g.CG} + cl) * {g.COUT} + gb",
              f"                        for cc in range({g.OG}):",
              f"                            acc = acc + {DY}[db + cc] * {Wt}[wb + cc]"]
    inner += c.store("acc", "o", names)
    n_out = _prod(c.obuf.shape)
    body, grid, threads = c.grid_stride_loop(n_out, inner)
    return c.finish(body, (grid, 1, 1), (threads, 1, 1), 0,
                    "conv2d_backprop_input direct (grouped): 1 thread/input element, gather "
                    "over the windows covering it", n_out)


def _backprop_filter_direct(c, g: Geometry):
    X, DY = c.ins
    names = coord_names(c.obuf.shape, "q")
    kh, kw, cl, co = names
    pre = [f"xc = ({co} // {g.OG}) * {g.CG} + {cl}"]
    rn = coord_names((g.N, g.OH, g.OW), "p")
    pn, poh, pow_ = rn
    r_body = decode("r", (g.N, g.OH, g.OW), rn)
    r_body += [f"ih = {poh} * {g.sh} - {g.pt} + {kh} * {g.dh}",
               f"iw = {pow_} * {g.sw} - {g.pl} + {kw} * {g.dw}",
               f"if ih >= 0 and ih < {g.H} and iw >= 0 and iw < {g.W}:",
               f"    acc = acc + {X}[(({pn} * {g.H} + ih) * {g.W} + iw) * {g.CIN} + xc] * "
               f"{DY}[(({pn} * {g.OH} + {poh}) * {g.OW} + {pow_}) * {g.COUT} + {co}]"]
    n_out = _prod(c.obuf.shape)
    return _block_reduce_sum(c, n_out, g.N * g.OH * g.OW, decode("o", c.obuf.shape, names),
                             names, pre, r_body, "conv2d_backprop_filter direct (grouped)")


def _block_reduce_sum(c, n_out: int, R: int, out_decode: list[str], names: list[str],
                      pre: list[str], r_body: list[str], sched: str):
    """A sum over ``R`` terms per output with W threads per output (the loop kernels'
    scheme): ``r_body`` adds the r-th term into ``acc``; ``pre`` runs once per output."""
    cfg, dt = c.cfg, c.dt
    zero = literal(0, dt)
    W = column_width(reduction_width(R, cfg), n_out, cfg)
    if W == 1:
        inner = out_decode + pre + [f"acc = {zero}", f"for r in range({R}):"] + indent(r_body)
        inner += c.store("acc", "o", names)
        body, grid, threads = c.grid_stride_loop(n_out, inner)
        return c.finish(body, (grid, 1, 1), (threads, 1, 1), 0,
                        f"{sched}: 1 thread/output, sequential over {R}", n_out)
    G = max(1, min(cfg.red_block_threads // W, n_out))
    WG = W * G
    # Adjacent threads take adjacent outputs (the filter's output channels, contiguous in
    # dy): a warp's loads coalesce. The summation order is the same either way.
    body = [f"sv = cuda.shared.array({WG}, {np_ctor(dt)})"] + block_thread_ids(W, G, False)
    body.append(f"for base in range(cuda.blockIdx.x * {G}, {n_out}, cuda.gridDim.x * {G}):")
    loop = ["o = base + g"] + out_decode + [f"acc = {zero}", f"if o < {n_out}:"]
    loop += indent(pre + [f"for r in range(lane, {R}, {W}):"] + indent(r_body))
    loop += ["sv[tid] = acc", "cuda.syncthreads()"]
    s = W // 2
    while s >= 1:
        loop += [f"if lane < {s}:",
                 f"    sv[tid] = {cast(f'sv[tid] + sv[tid + {s * G}]', dt, dt)}",
                 "cuda.syncthreads()"]
        s //= 2
    loop += [f"if lane == 0 and o < {n_out}:"]
    loop += indent(["acc = sv[tid]"] + c.store("acc", "o", names))
    loop.append("cuda.syncthreads()")
    body += indent(loop)
    return c.finish(body, (grid_stride(n_out, cfg, G), 1, 1), (WG, 1, 1), WG * dt.itemsize,
                    f"{sched}: {W} threads/output x {G} outputs/block (outputs fastest), "
                    f"shared-memory tree",
                    n_out, {"W": W, "G": G})


RENDERERS = {
    "conv2d": _render(_conv2d_gemm, _conv2d_direct),
    "conv2d_backprop_input": _render(_backprop_input_gemm, _backprop_input_direct),
    "conv2d_backprop_filter": _render(_backprop_filter_gemm, _backprop_filter_direct),
}
