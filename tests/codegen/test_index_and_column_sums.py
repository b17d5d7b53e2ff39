"""Two cpu-codegen rewrites checked against independent oracles:

- index recombination (``kernel.ix_add``): ``flatten(unflatten(x))`` folds back to ``x``
  (a reshape between contiguous layouts costs no division per element), and every folded
  expression still evaluates to the unfolded value;
- column sums with few kept columns (a conv's bias gradient): bit for bit either each
  column summed in row order (the plain loop, whole on one thread with register
  accumulators) or, where colsum.py rewrites the sum, its blocked order.
"""
from __future__ import annotations

import numpy as np
import pytest

from graphc.codegen.cpu import colsum
from graphc.codegen.cpu.backend import CpuBackend
from graphc.codegen.kernel import IxAdd, Var, flatten, ix_add, ix_div, ix_mod, ix_mul, unflatten
from graphc.codegen.kernel_interp import eval_index
from graphc.ir.dtypes import TensorType
from graphc.ir.graph import Graph


@pytest.mark.parametrize("shape", [(64, 5, 5, 16), (3, 4), (7,), (2, 1, 3, 1, 5)])
def test_flatten_of_unflatten_folds_back_to_the_flat_index(shape):
    # (A leading extent of 1 leaves ``x % n``: folding it needs x < n, a range fact the
    # index algebra does not track.)
    flat = ix_add(ix_mul(Var(0), int(np.prod(shape[1:])) or 1), Var(1))
    assert flatten(unflatten(flat, shape), shape) == flat


def test_partial_and_mismatched_recombinations_keep_their_value():
    x = ix_add(ix_mul(Var(0), 37), Var(1))
    exprs = [
        ix_add(ix_mul(ix_div(x, 12), 12), ix_mul(ix_mod(ix_div(x, 4), 3), 4)),   # folds
        ix_add(ix_mul(ix_div(x, 12), 12), ix_mul(ix_mod(ix_div(x, 4), 2), 4)),   # 4*2 != 12
        ix_add(ix_mul(ix_div(x, 12), 12), ix_mod(ix_div(Var(1), 4), 3)),          # other x
        ix_add(ix_mul(ix_div(x, 5), 5), ix_mod(x, 5)),                            # folds to x
    ]
    assert exprs[0] == ix_mul(ix_div(x, 4), 4) and exprs[3] == x
    assert isinstance(exprs[1], IxAdd) and isinstance(exprs[2], IxAdd)
    ref = [lambda v: v // 12 * 12 + (v // 4) % 3 * 4, lambda v: v // 12 * 12 + (v // 4) % 2 * 4,
           None, lambda v: v]
    for i0 in range(6):
        for i1 in range(37):
            v = i0 * 37 + i1
            for e, r in zip(exprs, ref):
                if r is not None:
                    assert eval_index(e, {0: i0, 1: i1}) == r(v)
            assert eval_index(exprs[2], {0: i0, 1: i1}) == v // 12 * 12 + (i1 // 4) % 3


@pytest.mark.parametrize("shape", [(64, 28, 28, 6), (8, 10, 10, 16), (5, 3, 1), (2000, 17)])
def test_column_sums_follow_their_promised_order(shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    g = Graph("colsum")
    v = g.add_input("x", TensorType.of(x))
    axes = tuple(range(len(shape) - 1))
    g.set_outputs([g.builder.reduce_sum(v, axes=axes, keepdims=False)])
    got = CpuBackend().compile(g)([x], [])[0]
    rows = x.reshape(-1, shape[-1])
    plan = colsum.block_plan(*rows.shape)
    if plan is None:
        # float32 running sums down each column: the plain loop's order
        want = np.cumsum(rows, axis=0, dtype=np.float32)[-1]
    else:
        # colsum.py's order: running sums of each lane over the blocks of a chunk, then
        # per column its (chunk, lane) partial sums in order
        L, P = plan
        C = rows.shape[1]
        blocks = rows.reshape(P, -1, L)
        part = np.cumsum(blocks, axis=1, dtype=np.float32)[:, -1, :]      # [P, L]
        terms = part.reshape(P, L // C, C).reshape(-1, C)                  # (p, u) order
        want = np.cumsum(terms, axis=0, dtype=np.float32)[-1]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got, rows.astype(np.float64).sum(0), rtol=1e-4, atol=1e-3)
