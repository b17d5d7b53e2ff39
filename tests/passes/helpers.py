"""Helpers shared by the pass tests: random arguments for a graph, and the check that a
pass left a graph's results unchanged (the interpreter is the oracle)."""
import numpy as np

from graphc.ir.dtypes import DType
from graphc.ir.interpreter import interpret


def _arrays(vals, rng):
    out = []
    for v in vals:
        if v.dtype.is_float:
            out.append(rng.standard_normal(v.shape).astype(v.dtype.np))
        elif v.dtype == DType.bool:
            out.append(rng.random(v.shape) < 0.5)
        else:
            out.append(rng.integers(-5, 6, size=v.shape).astype(v.dtype.np))
    return out


def assert_same_results(g1, g2, exact=True, seed=0):
    """Interpret both graphs on the same random inputs/params; results must agree."""
    rng = np.random.default_rng(seed)
    ins, ps = _arrays(g1.inputs, rng), _arrays(g1.params, rng)
    a, b = interpret(g1, ins, ps), interpret(g2, ins, ps)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and x.shape == y.shape
        if exact:
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    from graphc.ir.verifier import verify
    verify(g2)
