"""Algebraic simplification: local rewrites that remove work without changing results.

Rules (``x`` any value, ``1``/``0`` a constant whose every element is one/zero — possibly
seen through reshape/transpose/broadcast_to of a constant):

* ``x*1, 1*x, x/1, x+0, 0+x, x-0 → x`` — only when the result has ``x``'s shape (the
  constant broadcasts to ``x``); otherwise the op also broadcasts ``x`` and is left alone.
  ``x/1`` fires for floats only: integer ``div`` goes through float64 and back, which is
  not the identity for int64 beyond 2**53.
* ``x*0 → 0`` for integer and bool dtypes only. For floats it is wrong: ``nan*0`` and
  ``inf*0`` are NaN and ``-3.0*0`` is ``-0.0``, and a NaN that appears in training must
  stay visible rather than be turned into a clean zero.
* ``neg(neg(x)) → x``; ``transpose(transpose(x)) → transpose(x)`` with the composed perm
  (identity perm → ``x``); ``reshape(reshape(x)) → reshape(x)``;
  ``broadcast_to(broadcast_to(x)) → broadcast_to(x)``; reshape/broadcast_to to ``x``'s own
  shape, transpose by the identity and cast to ``x``'s own dtype → ``x``.
* ``select(c, a, b)`` with ``c`` a constant all true (false) → ``a`` (``b``), wrapped in a
  ``broadcast_to`` when the condition or the other branch widened the result.

Every rule keeps the dtype and shape of the value it replaces (the rewriter checks). The
one bit-level liberty: ``x + 0.0`` and ``x - (-0.0)`` turn a ``-0.0`` element of ``x`` into
``+0.0``, so replacing them by ``x`` keeps ``-0.0`` where the op gave ``+0.0``; the two
compare equal, and every mainstream compiler (XLA, TVM) simplifies ``x + 0`` the same way.
No rule reassociates or otherwise changes rounding.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from graphc.ir.graph import Graph, Node, Value
from graphc.passes.rewrite import Rewriter, const_value, producer, rebuild

__all__ = ["algebra", "RULES"]

# Ops that only move or replicate elements: a constant seen through them is still "all
# ones" / "all zeros". Bounded walk, so a long chain costs nothing surprising.
_SEE_THROUGH = ("reshape", "transpose", "broadcast_to")


def _constant_through_movement(v: Value):
    for _ in range(8):
        c = const_value(v)
        if c is not None:
            return c
        n = producer(v)
        if n is None or n.op not in _SEE_THROUGH:
            return None
        v = n.inputs[0]
    return None


def _all_equal(v: Value, scalar) -> bool:
    """Whether every element of ``v`` is known (at compile time) to equal ``scalar``."""
    c = _constant_through_movement(v)
    if c is None or c.size == 0:
        return False
    with np.errstate(all="ignore"):
        return bool(np.all(c == scalar))


def _widen(rw: Rewriter, x: Value, out: Value) -> Value:
    """``x`` broadcast to ``out``'s shape (x itself when the shapes already agree)."""
    if x.shape == out.shape:
        return x
    return rw.emit("broadcast_to", [x], {"shape": out.shape})[0]


def _zeros(rw: Rewriter, out: Value) -> Value:
    z = rw.const(np.zeros((), out.dtype.np), out.dtype)
    return _widen(rw, z, out)


# Each rule: (rewriter, node, new inputs) -> replacement value or None.
Rule = Callable[[Rewriter, Node, list], "Value | None"]


def _mul(rw, node, ins):
    a, b = ins
    out = node.outputs[0]
    for x, k in ((a, b), (b, a)):
        if x.shape == out.shape and _all_equal(k, 1):
            return x
    if not out.dtype.is_float:
        if _all_equal(a, 0) or _all_equal(b, 0):
            return _zeros(rw, out)
    return None


def _add(rw, node, ins):
    a, b = ins
    out = node.outputs[0]
    for x, k in ((a, b), (b, a)):
        if x.shape == out.shape and _all_equal(k, 0):
            return x
    return None


def _sub(rw, node, ins):
    a, b = ins
    if a.shape == node.outputs[0].shape and _all_equal(b, 0):
        return a
    return None


def _div(rw, node, ins):
    a, b = ins
    out = node.outputs[0]
    if out.dtype.is_float and a.shape == out.shape and _all_equal(b, 1):
        return a
    return None


def _neg(rw, node, ins):
    inner = producer(ins[0], "neg")
    return inner.inputs[0] if inner is not None else None


def _transpose(rw, node, ins):
    x, perm = ins[0], tuple(node.attrs["perm"])
    inner = producer(x, "transpose")
    if inner is not None:
        # out[i] = t[perm[i]] = x[inner_perm[perm[i]]]
        x, perm = inner.inputs[0], tuple(inner.attrs["perm"][p] for p in perm)
    if perm == tuple(range(len(perm))):
        return x
    if inner is None:
        return None
    return rw.emit("transpose", [x], {"perm": perm})[0]


def _reshape(rw, node, ins):
    x, shape = ins[0], tuple(node.attrs["shape"])
    inner = producer(x, "reshape")
    if inner is not None:
        x = inner.inputs[0]
    if x.shape == shape:
        return x
    if inner is None:
        return None
    return rw.emit("reshape", [x], {"shape": shape})[0]


def _broadcast_to(rw, node, ins):
    x, shape = ins[0], tuple(node.attrs["shape"])
    inner = producer(x, "broadcast_to")
    if inner is not None:
        x = inner.inputs[0]  # broadcasting is transitive
    if x.shape == shape:
        return x
    if inner is None:
        return None
    return rw.emit("broadcast_to", [x], {"shape": shape})[0]


def _cast(rw, node, ins):
    x = ins[0]
    return x if x.dtype == node.outputs[0].dtype else None


def _select(rw, node, ins):
    c, a, b = ins
    if _all_equal(c, True):
        return _widen(rw, a, node.outputs[0])
    if _all_equal(c, False):
        return _widen(rw, b, node.outputs[0])
    return None


#: The rules by op name; ``algebra`` applies the one for each node's op.
RULES: dict[str, Rule] = {
    "mul": _mul, "add": _add, "sub": _sub, "div": _div, "neg": _neg,
    "transpose": _transpose, "reshape": _reshape, "broadcast_to": _broadcast_to,
    "cast": _cast, "select": _select,
}


def algebra(graph: Graph) -> Graph:
    """Apply ``RULES`` in one forward walk (rewrites compose along chains: the inputs a
    rule sees are already simplified); returns ``graph`` itself when no rule fires. Nodes
    that become unused are left for DCE."""

    def visit(rw, node, ins):
        rule = RULES.get(node.op)
        if rule is None:
            return None
        res = rule(rw, node, ins)
        return None if res is None else [res]

    return rebuild(graph, visit)
