"""Independent numpy oracles for graphc/ir/ops/indexing.py (gather, scatter_add).

Written as explicit loops over every output (gather) or every update element (scatter_add)
in float64, from the ops' definitions — out-of-range indices give zeros / are dropped, and
negative indices are out of range (no numpy wrap-around) — sharing no code with the refs.
"""
from __future__ import annotations

import itertools

import numpy as np


def gather(params, indices, axis=0):
    params = np.asarray(params)
    indices = np.asarray(indices)
    n = params.shape[axis]
    pre, post = params.shape[:axis], params.shape[axis + 1:]
    out = np.zeros(pre + indices.shape + post, np.float64 if params.dtype.kind == "f"
                   else params.dtype)
    for a in itertools.product(*map(range, pre)):
        for i in itertools.product(*map(range, indices.shape)):
            k = int(indices[i])
            if not 0 <= k < n:
                continue                       # stays zero
            for c in itertools.product(*map(range, post)):
                out[a + i + c] = params[a + (k,) + c]
    return out.astype(params.dtype)


def scatter_add(updates, indices, shape, axis=0):
    updates = np.asarray(updates)
    indices = np.asarray(indices)
    shape = tuple(shape)
    n = shape[axis]
    pre, post = shape[:axis], shape[axis + 1:]
    out = np.zeros(shape, np.float64 if updates.dtype.kind == "f" else updates.dtype)
    for a in itertools.product(*map(range, pre)):
        for i in itertools.product(*map(range, indices.shape)):
            k = int(indices[i])
            if not 0 <= k < n:
                continue                       # dropped
            for c in itertools.product(*map(range, post)):
                out[a + (k,) + c] += updates[a + i + c]
    return out.astype(updates.dtype)


ORACLES = {
    "gather": gather,
    "scatter_add": scatter_add,
}
