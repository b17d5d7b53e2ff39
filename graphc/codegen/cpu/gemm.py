"""BLIS-style single-precision GEMM generated as LLVM IR (no BLAS, no C compiler).

``C[M,N] (= | +=) op(A)[M,K] @ op(B)[K,N]`` for row-major operands with leading dimensions,
where ``op`` is the identity or a transpose read in place (the backward pass needs A^T@B and
A@B^T). Structure (Goto/BLIS): K is split into balanced blocks of at most KC, N into blocks of
NC; B blocks are packed into KC x NR micro-panels, A blocks into MR x KC micro-panels (zero
padded, so the micro-kernel always computes a full tile), and an MR x NR register tile of
``<W x float>`` accumulators is updated with ``llvm.fma`` and broadcasts of A. Edges are
handled at the store with masked loads/stores, so any M, N, K (including 0) is correct.
An *epilogue* (bias, activation, ...) is emitted into the micro-kernel's final store, so a
fused ``relu(x @ W + b)`` writes C once.

W = 16 lanes with AVX-512 (8 x 32 tile: 16 zmm accumulators), 8 with AVX2 (6 x 16 tile).
"""
from __future__ import annotations

import ctypes
import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
from llvmlite import ir

from graphc.codegen.cpu import jit

__all__ = [
    "GemmConfig", "default_config", "Epilogue", "EpilogueContext", "bias_epilogue",
    "relu_epilogue", "bias_relu_epilogue", "GemmSpec", "build_gemm", "scratch_floats",
    "Gemm", "matmul", "narrow_config", "select_config",
]

F32 = ir.FloatType()
I1 = ir.IntType(1)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()
VOID = ir.VoidType()


# --------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GemmConfig:
    """Blocking parameters. ``nr = nv * vw`` columns, ``mr`` rows per register tile.

    kc: depth of one packed panel pair (A micro-panel mr*kc*4 bytes should sit in L1).
    mc: rows of A packed per block (mc*kc*4 bytes in L2).
    nc: columns of B packed per block (kc*nc*4 bytes in L2/L3; bounds the scratch size).
    """
    vw: int = 16
    mr: int = 8
    nv: int = 2
    kc: int = 512
    mc: int = 64
    nc: int = 2048
    k_unroll: int = 4

    @property
    def nr(self) -> int:
        return self.nv * self.vw

    def __post_init__(self):
        if self.vw not in (4, 8, 16):
            raise ValueError(f"vector width must be 4, 8 or 16, got {self.vw}")
        if self.mc % self.mr or self.nc % self.nr:
            raise ValueError("mc must be a multiple of mr and nc a multiple of nr")


def default_config(vw: int | None = None) -> GemmConfig:
    """Blocking for the host (or for vector width ``vw``): AVX-512 → 8x32 tile of zmm
    accumulators (16 of the 32 registers); AVX2 → the classic 6x16 ymm tile (12 of 16)."""
    vw = jit.vector_width() if vw is None else vw
    if vw == 16:
        return GemmConfig(vw=16, mr=8, nv=2, kc=512, mc=64, nc=2048)
    if vw == 8:
        return GemmConfig(vw=8, mr=6, nv=2, kc=384, mc=72, nc=2048)
    return GemmConfig(vw=4, mr=4, nv=2, kc=256, mc=64, nc=1024)


def scratch_floats(cfg: GemmConfig, threads: int = 1, N: int | None = None,
                   K: int | None = None) -> int:
    """float32 elements of scratch one call needs: per thread a packed A block (mc x kc)
    and a packed B block (kc x nc, shrunk to the problem when N and K are given), plus
    64-byte alignment slack. Must match ``parallel.build_parallel_gemm``'s per-thread
    stride."""
    return threads * _per_thread_floats(cfg, N, K) + 16


def _per_thread_floats(cfg: GemmConfig, N: int | None, K: int | None) -> int:
    kc_b = cfg.kc if K is None else min(cfg.kc, max(K, 1))
    nc_b = cfg.nc if N is None else min(cfg.nc, -(-max(N, 1) // cfg.nr) * cfg.nr)
    return cfg.mc * cfg.kc + kc_b * nc_b + 16


# --------------------------------------------------------------------------------------
# epilogues
# --------------------------------------------------------------------------------------

@dataclass
class EpilogueContext:
    """What an epilogue sees besides the builder, the accumulator and the indices.

    width: lanes of the accumulator; mask: ``<W x i1>`` of valid columns at an edge, or
    None for a full vector; args: the extra function arguments the epilogue asked for
    (``Epilogue.arg_types``), in order; module: the module being built.
    """
    width: int
    mask: ir.Value | None
    args: tuple
    module: ir.Module

    def vec_type(self) -> ir.VectorType:
        return ir.VectorType(F32, self.width)

    def load_vector(self, b: ir.IRBuilder, ptr: ir.Value, index: ir.Value) -> ir.Value:
        """``ptr[index : index + W]`` as a vector (masked at an edge: no out-of-bounds read)."""
        p = b.gep(ptr, [index], inbounds=True, source_etype=F32)
        if self.mask is None:
            return b.load(p, typ=self.vec_type(), align=4)
        return _masked_load(b, self.module, p, self.mask, self.width)

    def load_scalar(self, b: ir.IRBuilder, ptr: ir.Value, index: ir.Value) -> ir.Value:
        return b.load(b.gep(ptr, [index], inbounds=True, source_etype=F32), typ=F32)

    def splat(self, b: ir.IRBuilder, x: ir.Value) -> ir.Value:
        return _splat(b, x, self.width)

    def zeros(self) -> ir.Value:
        return ir.Constant(self.vec_type(), None)


EmitFn = Callable[[ir.IRBuilder, ir.Value, ir.Value, ir.Value, EpilogueContext], ir.Value]


@dataclass(frozen=True)
class Epilogue:
    """An epilogue: ``emit(b, acc, row, col, ctx) -> new acc`` is called once per output
    vector ``C[row, col : col + W]`` (``row``, ``col``: i64 global indices) after the last K
    block, with ``acc`` the complete (accumulated) value about to be stored. ``arg_types``
    are extra arguments appended to the generated GEMM function (e.g. the bias pointer),
    passed to ``emit`` as ``ctx.args``. ``key`` names it in function names: give distinct
    epilogues distinct keys. With ``accumulate=True`` the result is
    ``C = epilogue(C_old + A @ B)``. ``emit`` must be elementwise per lane (it may be called
    with an edge ``ctx.mask``; masked-off lanes are never stored)."""
    emit: EmitFn
    arg_types: tuple = ()
    key: str = "custom"


def _relu(b, v, ctx):
    return b.select(b.fcmp_ordered(">", v, ctx.zeros()), v, ctx.zeros())


def relu_epilogue() -> Epilogue:
    return Epilogue(lambda b, acc, row, col, ctx: _relu(b, acc, ctx), (), "relu")


def bias_epilogue(relu: bool = False) -> Epilogue:
    """``acc + bias[col]`` (bias: an extra ``float*`` argument of length N), then optional
    relu."""
    def emit(b, acc, row, col, ctx):
        v = b.fadd(acc, ctx.load_vector(b, ctx.args[0], col))
        return _relu(b, v, ctx) if relu else v
    return Epilogue(emit, (PTR,), "bias_relu" if relu else "bias")


def bias_relu_epilogue() -> Epilogue:
    return bias_epilogue(relu=True)


# --------------------------------------------------------------------------------------
# IR helpers
# --------------------------------------------------------------------------------------

def _intrinsic(module: ir.Module, name: str, ret, args) -> ir.Function:
    # Module.declare_intrinsic does not know vector overloads in llvmlite 0.50: declare by
    # hand, once per module.
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, args), name=name)
    return fn


def _vty(w):
    return ir.VectorType(F32, w)


def _fma(b, module, x, y, z, w):
    fn = _intrinsic(module, f"llvm.fma.v{w}f32", _vty(w), [_vty(w)] * 3)
    return b.call(fn, [x, y, z])


def _masked_load(b, module, ptr, mask, w):
    # Old-style signature (explicit i32 alignment); LLVM >= 21 auto-upgrades it to the
    # align-attribute form, older LLVM takes it as is.
    fn = _intrinsic(module, f"llvm.masked.load.v{w}f32.p0", _vty(w),
                    [PTR, I32, ir.VectorType(I1, w), _vty(w)])
    return b.call(fn, [ptr, I32(4), mask, ir.Constant(_vty(w), None)])


def _masked_store(b, module, val, ptr, mask, w):
    fn = _intrinsic(module, f"llvm.masked.store.v{w}f32.p0", VOID,
                    [_vty(w), PTR, I32, ir.VectorType(I1, w)])
    b.call(fn, [val, ptr, I32(4), mask])


def _splat(b, x, w):
    v = b.insert_element(ir.Constant(_vty(w), ir.Undefined), x, I32(0))
    return b.shuffle_vector(v, ir.Constant(_vty(w), ir.Undefined),
                            ir.Constant(ir.VectorType(I32, w), [0] * w))


def _lane_mask(b, n_valid, base: int, w):
    """<w x i1>: lane l is valid iff base + l < n_valid (n_valid: i64)."""
    lanes = ir.Constant(ir.VectorType(I64, w), [base + i for i in range(w)])
    splat = b.shuffle_vector(
        b.insert_element(ir.Constant(ir.VectorType(I64, w), ir.Undefined), n_valid, I32(0)),
        ir.Constant(ir.VectorType(I64, w), ir.Undefined),
        ir.Constant(ir.VectorType(I32, w), [0] * w))
    return b.icmp_signed("<", lanes, splat)


def _gep(b, ptr, idx):
    return b.gep(ptr, [idx], inbounds=True, source_etype=F32)


def _memset0(b, module, ptr, nfloats):
    fn = _intrinsic(module, "llvm.memset.p0.i64", VOID, [PTR, ir.IntType(8), I64, I1])
    b.call(fn, [ptr, ir.IntType(8)(0), b.mul(nfloats, I64(4)), I1(0)])


def _min(b, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)


@contextmanager
def _for_range(b: ir.IRBuilder, start, stop, step=1, name="i"):
    """``for (i = start; i < stop; i += step)`` (signed i64). Yields i."""
    step = I64(step) if isinstance(step, int) else step
    start = I64(start) if isinstance(start, int) else start
    pre = b.block
    fn = pre.function
    header = fn.append_basic_block(f"{name}.head")
    body = fn.append_basic_block(f"{name}.body")
    after = fn.append_basic_block(f"{name}.end")
    b.branch(header)
    b.position_at_end(header)
    i = b.phi(I64, name=name)
    i.add_incoming(start, pre)
    b.cbranch(b.icmp_signed("<", i, stop), body, after)
    b.position_at_end(body)
    yield i
    nxt = b.add(i, step, name=f"{name}.next")
    i.add_incoming(nxt, b.block)
    b.branch(header)
    b.position_at_end(after)


def _transpose_swap(b, rows, row_bit, lane_bit, w):
    """One stage of an in-register transpose: exchange bit ``row_bit`` of the row index
    with bit ``lane_bit`` of the lane index across all ``rows`` (a list of <w x float>)."""
    out = list(rows)
    for i in range(len(rows)):
        if i & row_bit:
            continue
        j = i | row_bit
        lo_mask, hi_mask = [], []
        for lane in range(w):
            if lane & lane_bit:
                lo_mask.append(w + (lane ^ lane_bit))   # from rows[j], lane bit cleared
                hi_mask.append(w + lane)                # rows[j] keeps it
            else:
                lo_mask.append(lane)                    # rows[i] keeps it
                hi_mask.append(lane | lane_bit)         # from rows[i], lane bit set
        m = ir.VectorType(I32, w)
        out[i] = b.shuffle_vector(rows[i], rows[j], ir.Constant(m, lo_mask))
        out[j] = b.shuffle_vector(rows[i], rows[j], ir.Constant(m, hi_mask))
    return out


def _transpose_square(b, rows, w):
    """rows: w vectors of w lanes (row r, lane c) → w vectors (row c, lane r)."""
    bit = 1
    while bit < w:
        rows = _transpose_swap(b, rows, bit, bit, w)
        bit <<= 1
    return rows


# --------------------------------------------------------------------------------------
# kernel generation
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GemmSpec:
    """What one generated GEMM computes (everything that changes the machine code)."""
    trans_a: bool = False
    trans_b: bool = False
    accumulate: bool = False
    epilogue: Epilogue | None = None
    cfg: GemmConfig = field(default_factory=default_config)

    def __post_init__(self):
        # A bare callback is an epilogue without extra arguments.
        if self.epilogue is not None and not isinstance(self.epilogue, Epilogue):
            fn = self.epilogue
            object.__setattr__(self, "epilogue",
                               Epilogue(fn, (), getattr(fn, "__name__", "custom")))

    @property
    def key(self) -> str:
        ep = self.epilogue.key if self.epilogue else "none"
        c = self.cfg
        return (f"{'t' if self.trans_a else 'n'}{'t' if self.trans_b else 'n'}"
                f"{'_acc' if self.accumulate else ''}_{ep}_w{c.vw}m{c.mr}n{c.nr}k{c.kc}")


class _Gen:
    """Emits the four functions of one GEMM into ``module``."""

    def __init__(self, module: ir.Module, name: str, spec: GemmSpec):
        self.m = module
        self.name = name
        self.spec = spec
        self.cfg = spec.cfg
        self.w = self.cfg.vw
        self.vty = _vty(self.w)
        self.valign = 4 * self.w     # packed panels are vector-aligned
        self.extra_types = tuple(spec.epilogue.arg_types) if spec.epilogue else ()

    # ---- packing ------------------------------------------------------------------

    def pack_a(self) -> ir.Function:
        """pack_a(A, lda, i0, k0, mc, kc, dst): dst[p][k][r] = op(A)[i0+p*MR+r, k0+k],
        zero for rows >= mc."""
        cfg = self.cfg
        mr = cfg.mr
        fn = ir.Function(self.m, ir.FunctionType(VOID, [PTR, I64, I64, I64, I64, I64, PTR]),
                         name=f"{self.name}.pack_a")
        fn.linkage = "internal"
        A, lda, i0, k0, mc, kc, dst = fn.args
        A.add_attribute("noalias")
        dst.add_attribute("noalias")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        with _for_range(b, 0, mc, mr, "p") as p:
            rows = _min(b, I64(mr), b.sub(mc, p))
            pdst = _gep(b, dst, b.mul(p, kc))      # panel p starts at p*kc (= p/mr*mr*kc)
            full = b.icmp_signed("==", rows, I64(mr))
            with b.if_else(full) as (then, other):
                with then:
                    self._pack_a_full(b, A, lda, b.add(i0, p), k0, kc, pdst)
                with other:
                    # Partial panel (once per M edge, cold): zero it, then copy the valid
                    # rows with scalar loops (loops, not unrolled code: compile time).
                    _memset0(b, self.m, pdst, b.mul(kc, I64(mr)))
                    with _for_range(b, 0, rows, 1, "r") as r:
                        with _for_range(b, 0, kc, 1, "k") as k:
                            d = _gep(b, pdst, b.add(b.mul(k, I64(mr)), r))
                            b.store(self._a_elem(b, A, lda, b.add(b.add(i0, p), r),
                                                 b.add(k0, k)), d)
        b.ret_void()
        return fn

    def _a_elem(self, b, A, lda, i, k):
        if self.spec.trans_a:       # A stored as K x M: op(A)[i,k] = A[k, i]
            idx = b.add(b.mul(k, lda), i)
        else:
            idx = b.add(b.mul(i, lda), k)
        return b.load(_gep(b, A, idx), typ=F32)

    def _pack_a_full(self, b, A, lda, i, k0, kc, pdst):
        mr, w = self.cfg.mr, self.w
        if self.spec.trans_a:
            # op(A)[i+r, k] = A[k, i+r]: MR contiguous floats per k → one short vector copy.
            vt = _vty(mr)
            with _for_range(b, 0, kc, 1, "k") as k:
                src = _gep(b, A, b.add(b.mul(b.add(k0, k), lda), i))
                v = b.load(src, typ=vt, align=4)
                b.store(v, _gep(b, pdst, b.mul(k, I64(mr))), align=4)
            return
        # op(A)[i+r, k] = A[i+r, k]: MR rows, each contiguous in k. Blocks of W k-values are
        # loaded as MR vectors and transposed in registers; the k remainder goes scalar.
        kmain = b.and_(kc, I64(-w))
        rowp = [_gep(b, A, b.add(b.mul(b.add(i, I64(r)), lda), k0)) for r in range(mr)]
        if mr & (mr - 1) == 0 and mr <= w:
            with _for_range(b, 0, kmain, w, "kb") as kb:
                vs = [b.load(_gep(b, rowp[r], kb), typ=self.vty, align=4) for r in range(mr)]
                outs = self._transpose_rows_to_panel(b, vs, mr, w)
                base = _gep(b, pdst, b.mul(kb, I64(mr)))
                for q, v in enumerate(outs):
                    b.store(v, _gep(b, base, I64(q * w)), align=4)
            kstart = kmain
        else:
            kstart = I64(0)
        with _for_range(b, kstart, kc, 1, "kr") as k:
            for r in range(mr):
                v = b.load(_gep(b, rowp[r], k), typ=F32)
                b.store(v, _gep(b, pdst, b.add(b.mul(k, I64(mr)), I64(r))))

    def _transpose_rows_to_panel(self, b, vs, mr, w):
        """vs[r] lane k (mr rows x w k-values) → mr vectors holding the panel layout
        [k][r] flattened (k-major), i.e. output vector q lane l = element (r = l % mr,
        k = q*(w/mr) + l // mr)."""
        # Bit permutation: input (row bits r, lane bits k); output (row bits = high bits of
        # k, lane bits = (low bits of k, r)). Swap row bit j with lane bit (j + log2(w/mr)),
        # which moves the high k bits into the row index; then permute within each vector.
        lr = int(math.log2(mr))
        lw = int(math.log2(w))
        shift = lw - lr
        rows = list(vs)
        for j in range(lr):
            rows = _transpose_swap(b, rows, 1 << j, 1 << (j + shift), w)
        # Now row index = high k bits; lane bits = (r bits at [shift, lw), low k bits at
        # [0, shift)). Wanted lane = (k_low << lr) | r.
        perm = []
        for lane in range(w):           # destination lane
            r = lane & (mr - 1)
            klow = lane >> lr
            perm.append((r << shift) | klow)
        pm = ir.Constant(ir.VectorType(I32, w), perm)
        und = ir.Constant(self.vty, ir.Undefined)
        return [b.shuffle_vector(v, und, pm) for v in rows]

    def pack_b(self) -> ir.Function:
        """pack_b(B, ldb, k0, j0, kc, nc, dst): dst[q][k][c] = op(B)[k0+k, j0+q*NR+c], zero
        for columns >= nc."""
        cfg, w = self.cfg, self.w
        nr = cfg.nr
        fn = ir.Function(self.m, ir.FunctionType(VOID, [PTR, I64, I64, I64, I64, I64, PTR]),
                         name=f"{self.name}.pack_b")
        fn.linkage = "internal"
        B, ldb, k0, j0, kc, nc, dst = fn.args
        B.add_attribute("noalias")
        dst.add_attribute("noalias")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        with _for_range(b, 0, nc, nr, "q") as q:
            cols = _min(b, I64(nr), b.sub(nc, q))
            qdst = _gep(b, dst, b.mul(q, kc))
            j = b.add(j0, q)
            full = b.icmp_signed("==", cols, I64(nr))
            if not self.spec.trans_b:
                # op(B)[k, j+c] = B[k, j+c]: NR contiguous floats per k.
                with b.if_else(full) as (then, other):
                    with then:
                        with _for_range(b, 0, kc, 1, "k") as k:
                            src = _gep(b, B, b.add(b.mul(b.add(k0, k), ldb), j))
                            d = _gep(b, qdst, b.mul(k, I64(nr)))
                            for v in range(cfg.nv):
                                x = b.load(_gep(b, src, I64(v * w)), typ=self.vty, align=4)
                                b.store(x, _gep(b, d, I64(v * w)), align=self.valign)
                    with other:
                        masks = [_lane_mask(b, cols, v * w, w) for v in range(cfg.nv)]
                        with _for_range(b, 0, kc, 1, "k") as k:
                            src = _gep(b, B, b.add(b.mul(b.add(k0, k), ldb), j))
                            d = _gep(b, qdst, b.mul(k, I64(nr)))
                            for v in range(cfg.nv):
                                x = _masked_load(b, self.m, _gep(b, src, I64(v * w)), masks[v], w)
                                b.store(x, _gep(b, d, I64(v * w)), align=self.valign)
            else:
                # op(B)[k, j+c] = B[j+c, k]: NR rows of B, each contiguous in k. W x W blocks
                # are transposed in registers; the k remainder and partial panels go scalar.
                with b.if_else(full) as (then, other):
                    with then:
                        kmain = b.and_(kc, I64(-w))
                        rowp = [_gep(b, B, b.add(b.mul(b.add(j, I64(c)), ldb), k0))
                                for c in range(nr)]
                        with _for_range(b, 0, kmain, w, "kb") as kb:
                            for v in range(cfg.nv):
                                vs = [b.load(_gep(b, rowp[v * w + c], kb), typ=self.vty, align=4)
                                      for c in range(w)]
                                ts = _transpose_square(b, vs, w)
                                for kk in range(w):
                                    d = _gep(b, qdst, b.add(b.mul(b.add(kb, I64(kk)), I64(nr)),
                                                            I64(v * w)))
                                    b.store(ts[kk], d, align=self.valign)
                        with _for_range(b, 0, I64(nr), 1, "c") as c:
                            rp = _gep(b, B, b.add(b.mul(b.add(j, c), ldb), k0))
                            with _for_range(b, kmain, kc, 1, "kr") as k:
                                x = b.load(_gep(b, rp, k), typ=F32)
                                b.store(x, _gep(b, qdst, b.add(b.mul(k, I64(nr)), c)))
                    with other:
                        _memset0(b, self.m, qdst, b.mul(kc, I64(nr)))
                        with _for_range(b, 0, cols, 1, "c") as c:
                            rp = _gep(b, B, b.add(b.mul(b.add(j, c), ldb), k0))
                            with _for_range(b, 0, kc, 1, "k") as k:
                                x = b.load(_gep(b, rp, k), typ=F32)
                                b.store(x, _gep(b, qdst, b.add(b.mul(k, I64(nr)), c)))
        b.ret_void()
        return fn

    # ---- micro-kernel ---------------------------------------------------------------

    def micro(self) -> ir.Function:
        """micro(kc, Ap, Bp, C, ldc, mrem, nrem, first, last, row, col, *extra):
        C[0:mrem, 0:nrem] (=|+=) Ap-panel @ Bp-panel, epilogue if ``last``."""
        cfg, w = self.cfg, self.w
        mr, nv = cfg.mr, cfg.nv
        args = [I64, PTR, PTR, PTR, I64, I64, I64, I1, I1, I64, I64, *self.extra_types]
        fn = ir.Function(self.m, ir.FunctionType(VOID, args), name=f"{self.name}.micro")
        fn.linkage = "internal"
        kc, Ap, Bp, C, ldc, mrem, nrem, first, last, row, col = fn.args[:11]
        extra = tuple(fn.args[11:])
        for a in (Ap, Bp, C):
            a.add_attribute("noalias")
        entry = fn.append_basic_block("entry")
        b = ir.IRBuilder(entry)
        zero = ir.Constant(self.vty, None)
        U = cfg.k_unroll

        def step(accs, k):
            bk = _gep(b, Bp, b.mul(k, I64(cfg.nr)))
            bv = [b.load(_gep(b, bk, I64(v * w)), typ=self.vty, align=self.valign)
                  for v in range(nv)]
            ak = _gep(b, Ap, b.mul(k, I64(mr)))
            out = []
            for r in range(mr):
                a = _splat(b, b.load(_gep(b, ak, I64(r)), typ=F32), w)
                for v in range(nv):
                    out.append(_fma(b, self.m, a, bv[v], accs[r * nv + v], w))
            return out

        # main loop, unrolled U times
        kmain = b.and_(kc, I64(-U))
        loop = fn.append_basic_block("k.loop")
        mid = fn.append_basic_block("k.mid")
        rem = fn.append_basic_block("k.rem")
        store = fn.append_basic_block("store")
        b.cbranch(b.icmp_signed(">", kmain, I64(0)), loop, mid)
        b.position_at_end(loop)
        k = b.phi(I64, "k")
        k.add_incoming(I64(0), entry)
        phis = [b.phi(self.vty, f"acc{t}") for t in range(mr * nv)]
        for p in phis:
            p.add_incoming(zero, entry)
        accs = list(phis)
        for u in range(U):
            accs = step(accs, b.add(k, I64(u)))
        kn = b.add(k, I64(U))
        k.add_incoming(kn, loop)
        for p, a in zip(phis, accs):
            p.add_incoming(a, loop)
        b.cbranch(b.icmp_signed("<", kn, kmain), loop, mid)
        # remainder
        b.position_at_end(mid)
        mphis = [b.phi(self.vty) for _ in range(mr * nv)]
        for p, a in zip(mphis, accs):
            p.add_incoming(zero, entry)
            p.add_incoming(a, loop)
        b.cbranch(b.icmp_signed("<", kmain, kc), rem, store)
        b.position_at_end(rem)
        k2 = b.phi(I64, "k2")
        k2.add_incoming(kmain, mid)
        rphis = [b.phi(self.vty) for _ in range(mr * nv)]
        for p, a in zip(rphis, mphis):
            p.add_incoming(a, mid)
        raccs = step(rphis, k2)
        k2n = b.add(k2, I64(1))
        k2.add_incoming(k2n, rem)
        for p, a in zip(rphis, raccs):
            p.add_incoming(a, rem)
        b.cbranch(b.icmp_signed("<", k2n, kc), rem, store)
        b.position_at_end(store)
        final = [b.phi(self.vty) for _ in range(mr * nv)]
        for p, a, c in zip(final, mphis, raccs):
            p.add_incoming(a, mid)
            p.add_incoming(c, rem)

        full = b.and_(b.icmp_signed("==", mrem, I64(mr)), b.icmp_signed("==", nrem, I64(cfg.nr)))
        with b.if_else(full) as (then, other):
            with then:
                self._store_tile(b, final, C, ldc, mrem, nrem, first, last, row, col, extra,
                                 edge=False)
            with other:
                self._store_tile(b, final, C, ldc, mrem, nrem, first, last, row, col, extra,
                                 edge=True)
        b.ret_void()
        return fn

    def _store_tile(self, b, accs, C, ldc, mrem, nrem, first, last, row, col, extra, edge):
        cfg, w = self.cfg, self.w
        mr, nv = cfg.mr, cfg.nv
        spec = self.spec
        masks = [_lane_mask(b, nrem, v * w, w) for v in range(nv)] if edge else [None] * nv
        # beta: C is read unless this is the first K block of a plain (non-accumulating) GEMM.
        need_read = b.not_(first) if not spec.accumulate else I1(1)

        # Emit two variants (with / without reading C) to keep the hot store simple.
        with b.if_else(need_read) as (rd, nrd):
            for reading, blk in ((True, rd), (False, nrd)):
                with blk:
                    for r in range(mr):
                        if edge:
                            ok = b.icmp_signed("<", I64(r), mrem)
                            bb_row = b.append_basic_block(f"row{r}")
                            bb_next = b.append_basic_block(f"row{r}.next")
                            b.cbranch(ok, bb_row, bb_next)
                            b.position_at_end(bb_row)
                        crow = _gep(b, C, b.mul(I64(r), ldc))
                        for v in range(nv):
                            p = _gep(b, crow, I64(v * w))
                            acc = accs[r * nv + v]
                            m = masks[v]
                            if reading:
                                old = (b.load(p, typ=self.vty, align=4) if m is None
                                       else _masked_load(b, self.m, p, m, w))
                                acc = b.fadd(acc, old)
                            if spec.epilogue is not None:
                                acc = self._epilogue(b, acc, last, b.add(row, I64(r)),
                                                     b.add(col, I64(v * w)), m, extra)
                            if m is None:
                                b.store(acc, p, align=4)
                            else:
                                _masked_store(b, self.m, acc, p, m, w)
                        if edge:
                            b.branch(bb_next)
                            b.position_at_end(bb_next)

    def _epilogue(self, b, acc, last, row, col, mask, extra):
        # The epilogue applies once, to the finished sum: only on the last K block.
        ctx = EpilogueContext(self.w, mask, extra, self.m)
        pre = b.block
        bb_ep = b.append_basic_block("epi")
        bb_join = b.append_basic_block("epi.join")
        b.cbranch(last, bb_ep, bb_join)
        b.position_at_end(bb_ep)
        out = self.spec.epilogue.emit(b, acc, row, col, ctx)
        ep_end = b.block
        b.branch(bb_join)
        b.position_at_end(bb_join)
        phi = b.phi(self.vty)
        phi.add_incoming(acc, pre)
        phi.add_incoming(out, ep_end)
        return phi

    # ---- driver ---------------------------------------------------------------------

    def tile_fn(self) -> ir.Function:
        """``{name}.tile(M, N, K, A, lda, B, ldb, C, ldc, scratch, row0, col0, *extra)``:
        the whole single-threaded GEMM on one block of C; row0/col0 offset the indices the
        epilogue sees (a thread's slice of a bigger C). scratch: one thread's buffer."""
        cfg = self.cfg
        pack_a, pack_b, micro = self.pack_a(), self.pack_b(), self.micro()
        args = [I64, I64, I64, PTR, I64, PTR, I64, PTR, I64, PTR, I64, I64, *self.extra_types]
        fn = ir.Function(self.m, ir.FunctionType(VOID, args), name=f"{self.name}.tile")
        M, N, K, A, lda, B, ldb, C, ldc, scratch, row0, col0 = fn.args[:12]
        extra = list(fn.args[12:])
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        # 64-byte align the scratch so packed B rows are cache-line (and zmm) aligned.
        s = b.ptrtoint(scratch, I64)
        s = b.and_(b.add(s, I64(63)), I64(-64))
        Ap = b.inttoptr(s, PTR)
        Bp = _gep(b, Ap, I64(cfg.mc * cfg.kc))
        # Balanced K blocks: nk = ceil(K / KC) blocks of ceil(K / nk) — depends only on K,
        # so the summation order is the same at any thread count.
        nk = b.sdiv(b.add(K, I64(cfg.kc - 1)), I64(cfg.kc))
        nk = b.select(b.icmp_signed("<", nk, I64(1)), I64(1), nk)
        kstep = b.sdiv(b.add(K, b.sub(nk, I64(1))), nk)
        kstep = b.select(b.icmp_signed("<", kstep, I64(1)), I64(1), kstep)
        kend = b.select(b.icmp_signed("<", K, I64(1)), I64(1), K)  # K == 0: one empty block
        with _for_range(b, 0, N, cfg.nc, "jc") as jc:
            nc = _min(b, I64(cfg.nc), b.sub(N, jc))
            with _for_range(b, 0, kend, kstep, "pc") as pc:
                kc = _min(b, kstep, b.sub(K, pc))
                kc = b.select(b.icmp_signed("<", kc, I64(0)), I64(0), kc)
                first = b.icmp_signed("==", pc, I64(0))
                last = b.icmp_signed(">=", b.add(pc, kstep), K)
                b.call(pack_b, [B, ldb, pc, jc, kc, nc, Bp])
                with _for_range(b, 0, M, cfg.mc, "ic") as ic:
                    mc = _min(b, I64(cfg.mc), b.sub(M, ic))
                    b.call(pack_a, [A, lda, ic, pc, mc, kc, Ap])
                    with _for_range(b, 0, nc, cfg.nr, "jr") as jr:
                        nrem = _min(b, I64(cfg.nr), b.sub(nc, jr))
                        bpanel = _gep(b, Bp, b.mul(jr, kc))
                        with _for_range(b, 0, mc, cfg.mr, "ir") as ir_:
                            mrem = _min(b, I64(cfg.mr), b.sub(mc, ir_))
                            apanel = _gep(b, Ap, b.mul(ir_, kc))
                            i = b.add(ic, ir_)
                            j = b.add(jc, jr)
                            cptr = _gep(b, C, b.add(b.mul(i, ldc), j))
                            b.call(micro, [kc, apanel, bpanel, cptr, ldc, mrem, nrem, first,
                                           last, b.add(row0, i), b.add(col0, j), *extra])
        b.ret_void()
        return fn


def build_gemm(module: ir.Module, name: str, spec: GemmSpec) -> ir.Function:
    """Emit a GEMM into ``module``; returns the single-threaded entry point

        void {name}.tile(i64 M, i64 N, i64 K, ptr A, i64 lda, ptr B, i64 ldb,
                         ptr C, i64 ldc, ptr scratch, i64 row0, i64 col0, <extra...>)

    computing ``C[M,N] (=|+=) op(A) @ op(B)`` where op(A)[i,k] is ``A[i*lda+k]`` (or
    ``A[k*lda+i]`` with trans_a) and op(B)[k,j] is ``B[k*ldb+j]`` (or ``B[j*ldb+k]`` with
    trans_b); C[i,j] is ``C[i*ldc+j]``. ``scratch`` needs ``scratch_floats(cfg, 1, N, K)``
    floats (any alignment). ``row0``/``col0`` are added to the row/column indices passed to the
    epilogue (0 unless this call computes a slice of a larger C). ``extra`` are the
    epilogue's ``arg_types``. See ``parallel.build_parallel_gemm`` for the multi-threaded
    entry point."""
    return _Gen(module, name, spec).tile_fn()


# --------------------------------------------------------------------------------------
# Python-facing wrapper
# --------------------------------------------------------------------------------------

def narrow_config(cfg: GemmConfig) -> GemmConfig:
    """The tile for skinny outputs (N <= one vector): one accumulator column of 2*mr rows.
    An 8 x 32 tile would compute 32 columns to keep 10 (a classifier layer); 16 x 16 wastes
    less and still holds 16 accumulators."""
    mr = min(2 * cfg.mr, cfg.vw)
    return replace(cfg, mr=mr, nv=1, mc=max(cfg.mc // mr, 1) * mr)


def select_config(M: int, N: int, K: int, cfg: GemmConfig | None = None) -> GemmConfig:
    """The blocking to use for a static shape: the narrow tile when N fits one vector."""
    cfg = cfg or default_config()
    if cfg.nv > 1 and N <= cfg.vw:
        return narrow_config(cfg)
    return cfg


class Gemm:
    """A compiled GEMM callable on numpy float32 arrays (for tests, benchmarks and the
    runtime's glue). ``threads``: the most threads a call may use (None = the cores of
    this process; small problems use fewer, see parallel.py).

    ``g(a, b, c=None, *extra, threads=None)``: ``a`` is op(A) as stored (M x K, or K x M
    with trans_a), ``b`` likewise (K x N, or N x K with trans_b); returns ``c`` (M x N).
    Arrays must be 2-D float32 with a contiguous last axis; their row stride is the leading
    dimension (so a slice ``x[:, 3:40]`` of a bigger array works in place). ``extra``:
    the epilogue's arguments (numpy arrays are passed as pointers, ints/floats by value).

    The kernel is compiled in the constructor; a second, narrow-tile kernel is compiled on
    the first call with N <= W (unless ``cfg`` pins the blocking)."""

    def __init__(self, trans_a: bool = False, trans_b: bool = False, accumulate: bool = False,
                 epilogue: Epilogue | None = None, threads: int | None = None,
                 vector_width: int | None = None, cfg: GemmConfig | None = None,
                 cpu: str | None = None, features: str | None = None):
        from graphc.codegen.cpu import parallel
        parallel.ensure_runtime_symbols()
        self._pinned = cfg is not None
        cfg = cfg or default_config(vector_width)
        self.spec = GemmSpec(trans_a, trans_b, accumulate, epilogue, cfg)
        epilogue = self.spec.epilogue
        self.threads = parallel.default_threads() if threads is None else max(1, int(threads))
        self._cpu, self._features = cpu, features
        arg_types = epilogue.arg_types if epilogue else ()
        self._extra_ct = [ctypes.c_void_p if isinstance(t, ir.PointerType) else
                          (ctypes.c_float if isinstance(t, ir.FloatType) else ctypes.c_int64)
                          for t in arg_types]
        self._kernels: dict[GemmConfig, tuple] = {}
        self._lock = threading.Lock()
        self._scratch = np.empty(0, np.float32)
        self._narrow: GemmConfig | None = None
        self._kernel(cfg)

    def _kernel(self, cfg: GemmConfig):
        k = self._kernels.get(cfg)
        if k is None:
            from graphc.codegen.cpu import parallel
            spec = replace(self.spec, cfg=cfg)
            name = f"gemm_{spec.key}"
            module = jit.ir_module(name)
            parallel.build_parallel_gemm(module, name, spec, max_threads=self.threads)
            jm = jit.JitModule(module, cpu=self._cpu, features=self._features)
            fn = jm.cfunc(name, None, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                          ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
                          ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
                          *self._extra_ct)
            k = self._kernels[cfg] = (jm, fn, str(module))
            # Scratch allocated once (grown for a new config), reused by every call: no
            # malloc in the hot path.
            need = scratch_floats(cfg, self.threads)   # any N, K: one buffer per Gemm
            if self._scratch.size < need:
                self._scratch = np.empty(need, np.float32)
        return k

    @property
    def jit(self) -> jit.JitModule:
        return self._kernels[self.spec.cfg][0]

    @property
    def ir(self) -> str:
        """LLVM IR (before optimization) of the main kernel."""
        return self._kernels[self.spec.cfg][2]

    @staticmethod
    def _ld(x: np.ndarray) -> int:
        if x.ndim != 2 or x.dtype != np.float32:
            raise ValueError("GEMM operands must be 2-D float32 arrays")
        if x.size == 0:
            return max(x.shape[1], 1)
        if (x.shape[1] > 1 and x.strides[1] != 4) or (x.shape[0] > 1 and (
                x.strides[0] % 4 or x.strides[0] < 4 * x.shape[1])):
            raise ValueError("GEMM operands must be row-major with a contiguous last axis")
        return x.strides[0] // 4 if x.shape[0] > 1 else max(x.shape[1], 1)

    def _prepare(self, a, b, c, extra, threads):
        sp = self.spec
        M, K = (a.shape[1], a.shape[0]) if sp.trans_a else a.shape
        Kb, N = (b.shape[1], b.shape[0]) if sp.trans_b else b.shape
        if K != Kb:
            raise ValueError(f"inner dimensions differ: op(A) is {M}x{K}, op(B) is {Kb}x{N}")
        if c is None:
            if sp.accumulate:
                raise ValueError("accumulate=True needs an output array c")
            c = np.empty((M, N), np.float32)
        if c.shape != (M, N):
            raise ValueError(f"C has shape {c.shape}, expected {(M, N)}")
        if len(extra) != len(self._extra_ct):
            raise ValueError(f"the epilogue takes {len(self._extra_ct)} extra argument(s), "
                             f"got {len(extra)}")
        conv = [x.ctypes.data if isinstance(x, np.ndarray) else x for x in extra]
        lda, ldb, ldc = self._ld(a), self._ld(b), self._ld(c)
        nt = self.threads if threads is None else max(1, min(int(threads), self.threads))
        if self._pinned or not (N <= sp.cfg.vw and sp.cfg.nv > 1):
            cfg = sp.cfg
        else:
            cfg = self._narrow or select_config(M, N, K, sp.cfg)
            self._narrow = cfg
        fn = self._kernel(cfg)[1]
        args = (M, N, K, a.ctypes.data, lda, b.ctypes.data, ldb, c.ctypes.data, ldc,
                self._scratch.ctypes.data, nt, *conv)
        return fn, args, c

    def __call__(self, a: np.ndarray, b: np.ndarray, c: np.ndarray | None = None, *extra,
                 threads: int | None = None):
        with self._lock:
            fn, args, c = self._prepare(a, b, c, extra, threads)
            fn(*args)
        return c

    def bind(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, *extra,
             threads: int | None = None) -> Callable[[], None]:
        """Validate once and return a no-argument callable running ``c (=|+=) op(a) @
        op(b)`` on these very buffers — what the runtime does (buffers are planned at
        compile time), without the ~10 µs of per-call Python checks. The arrays must stay
        alive, and a bound call must not overlap another call of this Gemm (shared
        scratch)."""
        with self._lock:
            fn, args, c = self._prepare(a, b, c, extra, threads)
        keep = (a, b, c, extra, self._scratch)

        def run(_fn=fn, _args=args, _keep=keep):
            _fn(*_args)
        return run


_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()


def matmul(a: np.ndarray, b: np.ndarray, *, trans_a: bool = False, trans_b: bool = False,
           threads: int | None = None) -> np.ndarray:
    """``op(a) @ op(b)`` with a cached compiled kernel (convenience for tests/benchmarks)."""
    key = (trans_a, trans_b, threads)
    with _CACHE_LOCK:
        g = _CACHE.get(key)
        if g is None:
            g = _CACHE[key] = Gemm(trans_a, trans_b, threads=threads)
    return g(np.asarray(a, np.float32), np.asarray(b, np.float32))
