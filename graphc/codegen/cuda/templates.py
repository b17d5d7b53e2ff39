"""Template kernels (contractions and window ops) → ``numba.cuda`` kernel source.

- ``matmul``: a shared-memory tiled GEMM with register blocking: a block computes a
  TILE x TILE output tile with (TILE/REG)^2 threads, each holding REG x REG accumulators in
  registers; K advances in slabs of TILE_K staged in shared memory (A's slab padded by one
  column so its transposed stores are bank-conflict free). Batch dims broadcast (a size-1 or
  missing batch dim of an operand has stride 0). Tile sizes come from ``CudaConfig``.
- ``conv2d`` and its gradients: implicit GEMMs with the same tiling, their operand tiles
  gathered from the NHWC tensors on the fly (``conv.py``, which also splits long reductions).
- Pooling and its gradients: one thread per output element; gradients are gathers over the
  windows that cover each input position, summed in the reference's tap order (bit-exact).
- ``gather``: one thread per output element; ``scatter_add``: one thread per output element
  scanning the indices in order (deterministic, no atomics; O(outputs x indices)).

Every template writes its result through the kernel's optional epilogue (an expression over
``Acc`` and the output coordinates), so a fused bias/activation costs no extra pass.
"""
from __future__ import annotations

import numpy as np

from graphc.codegen.cuda import conv
from graphc.codegen.cuda.source import (ACC, ArgNamer, Block, CudaConfig, Emitter,
                                        KernelSource, cast, coord_names, decode, finish_source,
                                        grid_stride, indent, literal, min_literal, np_ctor,
                                        threads_for)
from graphc.codegen.cuda.tiles import acc_names, matmul_tile, slab_product
from graphc.codegen.kernel import TemplateKernel
from graphc.errors import GraphcError


def _prod(shape) -> int:
    return int(np.prod(shape)) if len(shape) else 1


class _Ctx:
    """What every template renderer shares: buffers, parameter names, the epilogue."""

    def __init__(self, k: TemplateKernel, buffers, cfg: CudaConfig):
        self.k, self.buffers, self.cfg = k, buffers, cfg
        self.argn = ArgNamer(buffers)
        self.ins = [self.argn(b) for b in k.inputs]
        self.out = self.argn(k.output)
        self.obuf = buffers[k.output]
        self.in_bufs = [buffers[b] for b in k.inputs]
        self.dt = self.obuf.dtype
        self.uses_random = False
        self._ep_count = 0

    def store(self, acc: str, flat: str, coords: list[str] | None = None) -> list[str]:
        """Lines writing accumulator ``acc`` (of the output dtype) to flat output index
        ``flat``, through the epilogue when there is one. ``coords`` are the names of the
        output coordinates if the caller already has them."""
        k = self.k
        if k.epilogue is None:
            return [f"{self.out}[{flat}] = {acc}"]
        shape = self.obuf.shape
        lines = []
        if coords is None:
            self._ep_count += 1
            coords = coord_names(shape, f"e{self._ep_count}_")
            lines += decode(flat, shape, coords)
        em = Emitter(self.buffers, self.argn, dict(enumerate(coords)), acc=acc,
                     prefix=f"ep{self._ep_count}_")
        self._ep_count += 1
        blk = Block(set(range(len(shape))) | {ACC}, barrier=True)
        v = em.value(k.epilogue, [blk])
        self.uses_random |= em.uses_random
        lines += blk.lines
        lines.append(f"{self.out}[{flat}] = {cast(v, k.epilogue.dtype, self.dt)}")
        return lines

    def finish(self, body, grid, block, shared, schedule, work, meta=None) -> KernelSource:
        return finish_source(self.k.name, self.argn.params, body, self.argn.ids,
                             self.argn.dtypes, grid, block, shared, schedule, work, meta)

    def grid_stride_loop(self, n: int, inner: list[str]) -> tuple[list[str], int, int]:
        threads = threads_for(n, self.cfg)
        body = [f"for o in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, {n}, "
                f"cuda.gridDim.x * cuda.blockDim.x):"] + indent(inner)
        return body, grid_stride(n, self.cfg, threads), threads


def render_template(k: TemplateKernel, buffers, cfg: CudaConfig) -> KernelSource:
    fn = _RENDERERS.get(k.op)
    if fn is None:
        raise GraphcError(f"the CUDA backend has no template for op '{k.op}'")
    return fn(_Ctx(k, buffers, cfg))

# ----------------------------------------------------------------------------- matmul


def _matmul(c: _Ctx) -> KernelSource:
    a, b = c.in_bufs
    out = c.obuf
    M, K = a.shape[-2], a.shape[-1]
    N = b.shape[-1]
    ob = out.shape[:-2]
    nb = len(ob)
    NB = _prod(ob)
    cfg = c.cfg
    T, R = matmul_tile(M, N, NB, cfg)
    TK = cfg.mm_tile_k
    BX = BY = T // R
    NT = BX * BY
    MT, NTL = -(-M // T), -(-N // T)
    dt = c.dt
    ctype = np_ctor(dt)
    zero = literal(0, dt)
    A, B = c.ins
    # Batch offsets: coordinates of z in the output batch shape, stride 0 where broadcast.
    zc = coord_names(ob, "z") if nb else []
    offs = []
    for buf, size in ((a, M * K), (b, K * N)):
        bshape = (1,) * (nb - (len(buf.shape) - 2)) + tuple(buf.shape[:-2])
        terms, st = [], size
        for d in range(nb - 1, -1, -1):
            if bshape[d] != 1:
                terms.append(f"{zc[d]} * {st}")
            st *= bshape[d]
        offs.append(" + ".join(reversed(terms)) if terms else "0")
    lines = [f"sA = cuda.shared.array(({TK}, {T + 1}), {ctype})",
             f"sB = cuda.shared.array(({TK}, {T}), {ctype})",
             "tx = cuda.threadIdx.x", "ty = cuda.threadIdx.y", f"tid = ty * {BX} + tx",
             f"for z in range(cuda.blockIdx.z, {NB}, cuda.gridDim.z):"]
    zl = decode("z", ob, zc) + [f"aoff = {offs[0]}", f"boff = {offs[1]}",
                                f"coff = z * {M * N}",
                                f"for tm in range(cuda.blockIdx.y, {MT}, cuda.gridDim.y):"]
    tl = [f"for tn in range(cuda.blockIdx.x, {NTL}, cuda.gridDim.x):"]
    acc = acc_names(R)
    inner = [f"row0 = tm * {T}", f"col0 = tn * {T}"]
    inner += [f"{acc[i][j]} = {zero}" for i in range(R) for j in range(R)]
    kl = [f"for e in range(tid, {T * TK}, {NT}):",
          f"    rr = e // {TK}", f"    kk = e % {TK}",
          "    gr = row0 + rr", "    gk = k0 + kk",
          f"    if gr < {M} and gk < {K}:",
          f"        sA[kk, rr] = {A}[aoff + gr * {K} + gk]",
          "    else:", f"        sA[kk, rr] = {zero}",
          f"for e in range(tid, {TK * T}, {NT}):",
          f"    kk = e // {T}", f"    cc = e % {T}",
          "    gk = k0 + kk", "    gc = col0 + cc",
          f"    if gk < {K} and gc < {N}:",
          f"        sB[kk, cc] = {B}[boff + gk * {N} + gc]",
          "    else:", f"        sB[kk, cc] = {zero}",
          "cuda.syncthreads()"]
    kl += slab_product(R, BX, BY, TK)
    # The next slab overwrites sA/sB: every thread must be done reading this one.
    kl.append("cuda.syncthreads()")
    inner.append(f"for k0 in range(0, {K}, {TK}):")
    inner += indent(kl)
    var_coords = list(zc) + ["r", "cn"]
    for i in range(R):
        for j in range(R):
            inner += [f"r = row0 + ty + {i * BY}", f"cn = col0 + tx + {j * BX}",
                      f"if r < {M} and cn < {N}:"]
            inner += indent(c.store(acc[i][j], f"coff + r * {N} + cn", var_coords))
    body = lines + indent(zl + indent(tl + indent(inner)))
    cap = 65535 if not cfg.simulator else cfg.max_blocks
    grid = (min(NTL, cap), min(MT, cap), min(NB, cap if not cfg.simulator else 1))
    shared = (TK * (T + 1) + TK * T) * dt.itemsize
    sched = (f"matmul {NB}x[{M}x{K}]@[{K}x{N}]: tile {T}x{T}x{TK}, {R}x{R} registers/thread, "
             f"shared-memory slabs")
    return c.finish(body, grid, (BX, BY, 1), shared, sched, NB * M * N,
                    {"tile": T, "tile_k": TK, "reg": R})

# ----------------------------------------------------------------------------- pooling


def _pool_geometry(attrs):
    (PH, PW), (SH, SW) = attrs["pool"], attrs["strides"]
    (pt, _), (pl, _) = attrs["padding"]
    return PH, PW, SH, SW, pt, pl


def _max_pool2d(c: _Ctx) -> KernelSource:
    (x,), (X,) = c.in_bufs, c.ins
    _, H, W, C = x.shape
    PH, PW, SH, SW, pt, pl = _pool_geometry(c.k.attrs)
    names = coord_names(c.obuf.shape, "q")
    n, oh, ow, ch = names
    nan = " or acc != acc" if c.dt.is_float else ""
    # Padding never wins: it is skipped (the reference pads with -inf).
    inner = decode("o", c.obuf.shape, names) + [
        f"acc = {min_literal(c.dt)}",
        f"for i in range({PH}):",
        f"    ih = {oh} * {SH} - {pt} + i",
        f"    if ih >= 0 and ih < {H}:",
        f"        for j in range({PW}):",
        f"            iw = {ow} * {SW} - {pl} + j",
        f"            if iw >= 0 and iw < {W}:",
        f"                v = {X}[(({n} * {H} + ih) * {W} + iw) * {C} + {ch}]",
        f"                acc = acc if (acc >= v{nan}) else v"]
    inner += c.store("acc", "o", names)
    n_out = _prod(c.obuf.shape)
    body, grid, threads = c.grid_stride_loop(n_out, inner)
    return c.finish(body, (grid, 1, 1), (threads, 1, 1), 0,
                    f"max_pool2d: 1 thread/output, {PH * PW} taps", n_out)


def _argmax_tap(X, n, oh, ow, ch, H, W, C, PH, PW, SH, SW, pt, pl, dt, p="") -> list[str]:
    """Lines setting ``{p}bi, {p}bj`` to the first maximal tap (row-major) of window
    (oh, ow): padded taps count as -inf, tap 0 starts the scan, later taps win only when
    strictly greater (so NaN never takes over) — the reference's ``_argmax_tap``."""
    ninf = literal(-np.inf, dt)
    return [f"{p}best = {ninf}", f"{p}bi = 0", f"{p}bj = 0",
            f"for {p}i in range({PH}):",
            f"    {p}ih = {oh} * {SH} - {pt} + {p}i",
            f"    for {p}j in range({PW}):",
            f"        {p}iw = {ow} * {SW} - {pl} + {p}j",
            f"        if {p}ih >= 0 and {p}ih < {H} and {p}iw >= 0 and {p}iw < {W}:",
            f"            {p}v = {X}[(({n} * {H} + {p}ih) * {W} + {p}iw) * {C} + {ch}]",
            "        else:",
            f"            {p}v = {ninf}",
            f"        if ({p}i == 0 and {p}j == 0) or {p}v > {p}best:",
            f"            {p}best = {p}v",
            f"            {p}bi = {p}i",
            f"            {p}bj = {p}j"]


def _max_pool2d_gather(c: _Ctx) -> KernelSource:
    x, g = c.in_bufs
    X, Gb = c.ins
    _, H, W, C = x.shape
    PH, PW, SH, SW, pt, pl = _pool_geometry(c.k.attrs)
    names = coord_names(c.obuf.shape, "q")
    n, oh, ow, ch = names
    inner = decode("o", c.obuf.shape, names)
    inner += _argmax_tap(X, n, oh, ow, ch, H, W, C, PH, PW, SH, SW, pt, pl, c.dt)
    inner += [f"ih = {oh} * {SH} - {pt} + bi", f"iw = {ow} * {SW} - {pl} + bj",
              f"if ih >= 0 and ih < {H} and iw >= 0 and iw < {W}:",
              f"    acc = {Gb}[(({n} * {H} + ih) * {W} + iw) * {C} + {ch}]",
              "else:", f"    acc = {literal(0, c.dt)}"]
    inner += c.store("acc", "o", names)
    n_out = _prod(c.obuf.shape)
    body, grid, threads = c.grid_stride_loop(n_out, inner)
    return c.finish(body, (grid, 1, 1), (threads, 1, 1), 0,
                    "max_pool2d_gather: 1 thread/output, g at the window's first argmax", n_out)


def _covering_windows(ih, iw, PH, PW, SH, SW, pt, pl, OH, OW, body: list[str]) -> list[str]:
    """Loops over taps (i, j) in row-major order with the window (oh, ow) that sees input
    (ih, iw) through that tap, when there is one; ``body`` runs for each."""
    hdiv = f" and th % {SH} == 0" if SH > 1 else ""
    wdiv = f" and tw % {SW} == 0" if SW > 1 else ""
    return [f"for i in range({PH}):",
            f"    th = {ih} + {pt} - i",
            f"    if th >= 0{hdiv}:",
            f"        oh = th // {SH}",
            f"        if oh < {OH}:",
            f"            for j in range({PW}):",
            f"                tw = {iw} + {pl} - j",
            f"                if tw >= 0{wdiv}:",
            f"                    ow = tw // {SW}",
            f"                    if ow < {OW}:"] + indent(body, 6)


def _max_pool2d_grad(c: _Ctx) -> KernelSource:
    x, dy = c.in_bufs
    X, DY = c.ins
    _, H, W, C = x.shape
    _, OH, OW, _ = dy.shape
    PH, PW, SH, SW, pt, pl = _pool_geometry(c.k.attrs)
    names = coord_names(c.obuf.shape, "q")
    n, ih, iw, ch = names
    win = _argmax_tap(X, n, "oh", "ow", ch, H, W, C, PH, PW, SH, SW, pt, pl, c.dt, p="w")
    win += ["if wbi == i and wbj == j:",
            f"    acc = acc + {DY}[(({n} * {OH} + oh) * {OW} + ow) * {C} + {ch}]"]
    inner = decode("o", c.obuf.shape, names) + [f"acc = {literal(0, c.dt)}"]
    inner += _covering_windows(ih, iw, PH, PW, SH, SW, pt, pl, OH, OW, win)
    inner += c.store("acc", "o", names)
    n_out = _prod(c.obuf.shape)
    body, grid, threads = c.grid_stride_loop(n_out, inner)
    return c.finish(body, (grid, 1, 1), (threads, 1, 1), 0,
                    "max_pool2d_grad: 1 thread/input element, gather over covering windows",
                    n_out)


def _valid_count(oh, ow, PH, PW, SH, SW, pt, pl, H, W) -> list[str]:
    return [f"hs = {oh} * {SH} - {pt}", f"ws = {ow} * {SW} - {pl}",
            f"cnt = (min(hs + {PH}, {H}) - max(hs, 0)) * (min(ws + {PW}, {W}) - max(ws, 0))"]


def _avg_pool2d(c: _Ctx) -> KernelSource:
    (x,), (X,) = c.in_bufs, c.ins
    _, H, W, C = x.shape
    PH, PW, SH, SW, pt, pl = _pool_geometry(c.k.attrs)
    names = coord_names(c.obuf.shape, "q")
    n, oh, ow, ch = names
    ctor = np_ctor(c.dt)
    inner = decode("o", c.obuf.shape, names) + [
        f"acc = {literal(0, c.dt)}",
        f"for i in range({PH}):",
        f"    ih = {oh} * {SH} - {pt} + i",
        f"    if ih >= 0 and ih < {H}:",
        f"        for j in range({PW}):",
        f"            iw = {ow} * {SW} - {pl} + j",
        f"            if iw >= 0 and iw < {W}:",
        f"                acc = acc + {X}[(({n} * {H} + ih) * {W} + iw) * {C} + {ch}]"]
    inner += _valid_count(oh, ow, PH, PW, SH, SW, pt, pl, H, W)
    # The reference divides the dtype sum by an int64 count in float64, then rounds.
    inner.append(f"acc = {ctor}(np.float64(acc) / np.float64(cnt))")
    inner += c.store("acc", "o", names)
    n_out = _prod(c.obuf.shape)
    body, grid, threads = c.grid_stride_loop(n_out, inner)
    return c.finish(body, (grid, 1, 1), (threads, 1, 1), 0,
                    f"avg_pool2d: 1 thread/output, {PH * PW} taps", n_out)


def _avg_pool2d_grad(c: _Ctx) -> KernelSource:
    (dy,), (DY,) = c.in_bufs, c.ins
    _, H, W, C = c.obuf.shape
    _, OH, OW, _ = dy.shape
    PH, PW, SH, SW, pt, pl = _pool_geometry(c.k.attrs)
    names = coord_names(c.obuf.shape, "q")
    n, ih, iw, ch = names
    ctor = np_ctor(c.dt)
    win = _valid_count("oh", "ow", PH, PW, SH, SW, pt, pl, H, W)
    win += [f"acc = acc + {ctor}(np.float64({DY}[(({n} * {OH} + oh) * {OW} + ow) * {C} + "
            f"{ch}]) / np.float64(cnt))"]
    inner = decode("o", c.obuf.shape, names) + [f"acc = {literal(0, c.dt)}"]
    inner += _covering_windows(ih, iw, PH, PW, SH, SW, pt, pl, OH, OW, win)
    inner += c.store("acc", "o", names)
    n_out = _prod(c.obuf.shape)
    body, grid, threads = c.grid_stride_loop(n_out, inner)
    return c.finish(body, (grid, 1, 1), (threads, 1, 1), 0,
                    "avg_pool2d_grad: 1 thread/input element, gather over covering windows",
                    n_out)

# ----------------------------------------------------------------------------- indexing


def _split(shape, axis):
    return _prod(shape[:axis]), shape[axis], _prod(shape[axis + 1:])


def _gather(c: _Ctx) -> KernelSource:
    params, indices = c.in_bufs
    P, I = c.ins
    axis = c.k.attrs.get("axis", 0)
    _, NAX, POST = _split(params.shape, axis)
    J = _prod(indices.shape)
    inner = [f"po = o % {POST}", f"t = o // {POST}", f"jj = t % {J}", f"pre = t // {J}",
             f"idx = np.int64({I}[jj])",
             # Out-of-range indices (negatives included) read nothing and give zero.
             f"if idx >= 0 and idx < {NAX}:",
             f"    acc = {P}[(pre * {NAX} + idx) * {POST} + po]",
             "else:", f"    acc = {literal(0, c.dt)}"]
    inner += c.store("acc", "o")
    n_out = _prod(c.obuf.shape)
    body, grid, threads = c.grid_stride_loop(n_out, inner)
    return c.finish(body, (grid, 1, 1), (threads, 1, 1), 0,
                    "gather: 1 thread/output element", n_out)


def _scatter_add(c: _Ctx) -> KernelSource:
    updates, indices = c.in_bufs
    U, I = c.ins
    axis = c.k.attrs.get("axis", 0)
    _, NAX, POST = _split(c.obuf.shape, axis)
    J = _prod(indices.shape)
    # Each output element scans every index in order: deterministic (the reference's
    # np.add.at order) with no atomics, at O(outputs x indices) work.
    inner = [f"po = o % {POST}", f"t = o // {POST}", f"kk = t % {NAX}", f"pre = t // {NAX}",
             f"acc = {literal(0, c.dt)}",
             f"for jj in range({J}):",
             f"    if np.int64({I}[jj]) == kk:",
             f"        acc = acc + {U}[(pre * {J} + jj) * {POST} + po]"]
    inner += c.store("acc", "o")
    n_out = _prod(c.obuf.shape)
    body, grid, threads = c.grid_stride_loop(n_out, inner)
    return c.finish(body, (grid, 1, 1), (threads, 1, 1), 0,
                    f"scatter_add: 1 thread/output element scanning {J} indices in order",
                    n_out)


_RENDERERS = {
    "matmul": _matmul,
    **conv.RENDERERS,
    "max_pool2d": _max_pool2d,
    "max_pool2d_grad": _max_pool2d_grad,
    "max_pool2d_gather": _max_pool2d_gather,
    "avg_pool2d": _avg_pool2d,
    "avg_pool2d_grad": _avg_pool2d_grad,
    "gather": _gather,
    "scatter_add": _scatter_add,
}
