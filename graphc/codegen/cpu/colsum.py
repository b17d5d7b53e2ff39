"""Column sums with few columns, rewritten to run at vector speed.

A bias gradient of a convolution sums a ``[rows, C]`` array over its rows for a handful of
channels C (LeNet's first layer: 50,176 rows x 6; its second: 6,400 x 16). As a loop kernel that is one scalar
accumulator per column, each a chain of dependent adds: latency-bound (~4 cycles a row,
41.6 us for that LeNet sum on the 2-core Zen 4 VM) and on one thread (``loops.py`` keeps
few kept columns whole).

Viewed flat, the ``rows x C`` elements are contiguous, so this pass cuts them into blocks
of L elements, a multiple of ``lcm(C, 16)`` and at least 64 (whole rows, whole 16-float
vectors, four of them at least) and rewrites the kernel into two:

1. ``part[p, j] = sum_b x[(p*B + b)*L + j]`` over the B blocks of each of P fixed chunks: L
   accumulators that vectorize across j, chunks split across threads;
2. ``out[c] = sum_{p, u} part[p, u*C + c]``: P * L / C terms per column, then the
   original kernel's stores (its epilogue of ``acc``).

P and L depend on the shape only, so the (fixed) summation order does not depend on the
thread count: results are bit-identical run to run and across threads. The order differs
from the single-chain loop's, as numpy's pairwise sum differs from both.
"""
from __future__ import annotations

import math

from graphc.codegen.epilogue import substitute
from graphc.codegen.kernel import (Acc, Const, Load, LoopKernel, Op, Reduction, Store, Var,
                                   ix_add, ix_mul, row_major_strides)

#: A float vector's lanes the block length is a multiple of (AVX-512; two AVX2 vectors).
LANES = 16
#: The shortest block: four AVX-512 vectors, so four independent add chains per thread.
MIN_BLOCK = 64
#: The most columns rewritten (wider sums already vectorize across their columns, with as
#: many chains as vectors of columns).
MAX_COLUMNS = 32
#: Chunks of blocks (the parallel axis of the first kernel), tried in this order.
CHUNKS = (8, 4, 2, 1)
#: Fewest blocks per chunk worth the second kernel.
MIN_BLOCKS_PER_CHUNK = 32

__all__ = ["split_column_sums", "block_plan"]


def split_column_sums(kernels, bufs, new_temp) -> list:
    """``kernels`` with every matching column sum replaced by its two kernels (see the
    module docstring); ``new_temp(shape, dtype, name)`` makes the partial-sum buffer."""
    out = []
    for k in kernels:
        pieces = _split(k, bufs, new_temp) if isinstance(k, LoopKernel) else None
        out.extend(pieces or [k])
    return out


def _linear(ix):
    """(constant, {axis: coefficient}) of an affine index, or None."""
    from graphc.codegen.cpu.loops import _lin
    c, d, nonlinear = _lin(ix)
    return None if nonlinear else (c, d)


def _flat_loads_only(e, extents, C) -> bool:
    """Whether ``e`` is built of constants, ops and loads at the flat offset
    ``row * C + column`` of the kernel's (reduction rows..., column) space."""
    if isinstance(e, Const):
        return True
    if isinstance(e, Op):
        return all(_flat_loads_only(a, extents, C) for a in e.args)
    if isinstance(e, Load):
        lin = _linear(e.index)
        if lin is None or lin[0] != 0:
            return False
        want = {0: 1}
        want.update({1 + i: s * C for i, (s, d) in
                     enumerate(zip(row_major_strides(extents), extents)) if d > 1})
        return {a: v for a, v in lin[1].items() if v} == want
    return False


def block_plan(rows: int, C: int):
    """(L, P): the block length and the number of chunks for summing a ``rows x C`` array
    over its rows, or None when the plain loop stays (too few rows, C out of range)."""
    if not 2 <= C <= MAX_COLUMNS or rows == 0:
        return None
    L = math.lcm(C, LANES)
    L *= -(-MIN_BLOCK // L)          # at least MIN_BLOCK floats: that many independent lanes
    G = L // C                       # rows per block
    if rows % G:
        return None
    nblocks = rows // G
    P = next((p for p in CHUNKS if nblocks % p == 0 and
              nblocks // p >= MIN_BLOCKS_PER_CHUNK), None)
    return None if P is None else (L, P)


def _split(k: LoopKernel, bufs, new_temp):
    red = k.reduction
    if red is None or red.combiner != "sum" or not red.dtype.is_float or \
            len(k.shape) != 1:
        return None
    C = k.shape[0]
    extents = tuple(red.extents)
    R = math.prod(extents)
    plan = block_plan(R, C)
    if plan is None:
        return None
    L, P = plan
    G = L // C
    nblocks = R // G
    if not _flat_loads_only(red.value, extents, C):
        return None
    B = nblocks // P
    part = new_temp((P, L), red.dtype, f"{k.name}_part")
    # kernel 1 over (p, j), reducing over b: x[(p*B + b)*L + j]
    flat = ix_add(ix_mul(ix_add(ix_mul(Var(0), B), Var(2)), L), Var(1))
    first = LoopKernel(f"{k.name}_blocks", (P, L),
                       [Store(part.id, ix_add(ix_mul(Var(0), L), Var(1)), Acc(red.dtype))],
                       Reduction((B,), "sum", substitute(red.value, lambda e: Load(e.buffer, flat, e.dtype)
                                             if isinstance(e, Load) else None), red.dtype))
    # kernel 2 over c, reducing over (p, u): part[p, u*C + c]; the original stores
    gather = Load(part.id, ix_add(ix_add(ix_mul(Var(1), L), ix_mul(Var(2), C)), Var(0)),
                  red.dtype)
    second = LoopKernel(k.name, k.shape, list(k.stores),
                        Reduction((P, G), "sum", gather, red.dtype))
    return [first, second]

