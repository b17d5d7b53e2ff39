"""Pieces of the shared-memory tiled, register-blocked GEMM that the matmul template and the
implicit-GEMM convolutions (``conv.py``) share.

Both stage a K slab of A as ``sA[kk, row]`` and of B as ``sB[kk, col]`` in shared memory; a
block of ``BX x BY`` threads then computes a ``(BY*R) x (BX*R)`` output tile, each thread an
``R x R`` register block of rows ``ty + i*BY`` and columns ``tx + j*BX`` (stores coalesce along
tx, a warp's B reads hit consecutive banks while its A reads broadcast).
"""
from __future__ import annotations

from graphc.codegen.cuda.source import CudaConfig, indent


def matmul_tile(M: int, N: int, batch: int, cfg: CudaConfig) -> tuple[int, int]:
    """(tile, register tile): the big tile when it still gives every multiprocessor a
    block, else the small one (more, smaller blocks beat idle multiprocessors)."""
    big = cfg.mm_tile
    tiles = -(-M // big) * -(-N // big) * batch
    return (big, cfg.mm_reg) if tiles >= cfg.sm_count else (cfg.mm_small_tile,
                                                             cfg.mm_small_reg)


def acc_names(R: int) -> list[list[str]]:
    """The accumulators of a thread's R x R register block."""
    return [[f"c{i}_{j}" for j in range(R)] for i in range(R)]


def slab_product(R: int, BX: int, BY: int, TK: int) -> list[str]:
    """Lines adding the staged slab's product into the register block (k ascending, so
    every output's sum has one fixed order)."""
    acc = acc_names(R)
    mk = [f"ra{i} = sA[kk, ty + {i * BY}]" for i in range(R)]
    mk += [f"rb{j} = sB[kk, tx + {j * BX}]" for j in range(R)]
    mk += [f"{acc[i][j]} = {acc[i][j]} + ra{i} * rb{j}" for i in range(R) for j in range(R)]
    return [f"for kk in range({TK}):"] + indent(mk)
