"""Shared by the cpu and cuda primitive tests: a one-op graph and its check against the
reference interpreter."""
from __future__ import annotations

import numpy as np

from graphc.ir.dtypes import TensorType
from graphc.ir.graph import Graph
from graphc.ir.interpreter import interpret


def op_graph(name, arrays, attrs, square=True) -> Graph:
    """A graph applying op ``name`` to inputs shaped like ``arrays``."""
    g = Graph(name)
    ins = [g.add_input(f"x{i}", TensorType.of(a)) for i, a in enumerate(arrays)]
    out = g.builder.emit(name, ins, attrs)
    outs = list(out) if isinstance(out, tuple) else [out]
    # An elementwise consumer too, so the op is also exercised inlined into another loop.
    extra = [g.builder.emit("mul", [o, o]) for o in outs if o.dtype.is_float and square]
    g.set_outputs(outs + extra)
    return g


def check_against_interpreter(backend, g, arrays, exact, rtol=1e-5, atol=1e-6, msg=""):
    """``backend``'s results for ``g`` equal the interpreter's: bit for bit when ``exact``
    or not floating point, else within rtol/atol."""
    got = backend.compile(g)(arrays, [])
    want = interpret(g, arrays)
    assert len(got) == len(want)
    for w, h in zip(want, got):
        assert h.shape == w.shape and h.dtype == w.dtype, msg
        if exact or w.dtype.kind != "f":
            np.testing.assert_array_equal(h, w, err_msg=msg)
        else:
            np.testing.assert_allclose(h, w, rtol=rtol, atol=atol, err_msg=msg)
