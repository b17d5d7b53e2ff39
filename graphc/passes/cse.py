"""Common-subexpression elimination: merge nodes computing the same thing.

Two nodes merge when they have the same op, the same (already merged) input values and
equal attributes; constants merge when their values are bit-identical. One forward walk with
a hash table keyed on ``(op, inputs, attributes)`` makes it linear in the graph size.

Equality is exact, never numeric: floats compare by their bits (``0.0`` and ``-0.0`` differ,
a NaN equals the same NaN), arrays by dtype, shape and bytes, and ``True`` never equals
``1``. ``add``/``mul``/``equal``/``not_equal``/``logical_and``/``logical_or`` also merge
with their operands swapped — they are bitwise commutative in IEEE arithmetic, unlike
``maximum``/``minimum``, whose result for the tie ``0.0`` vs ``-0.0`` depends on operand
order (numpy, like x86 ``maxps``, returns the second).

Never merged: ``cut`` — it names the gradient/update boundary for a data-parallel runtime,
so each one must survive as written.
"""
from __future__ import annotations

import hashlib
import struct

import numpy as np

from graphc.ir.dtypes import DType
from graphc.ir.graph import Graph, Node, Value
from graphc.passes.rewrite import Rewriter

__all__ = ["cse", "NEVER_MERGE", "COMMUTATIVE", "attr_key", "attrs_identical"]

#: Ops whose nodes are distinct by identity, never merged.
NEVER_MERGE = {"cut"}
#: Binary ops whose operand order does not affect the result bits.
COMMUTATIVE = {"add", "mul", "equal", "not_equal", "logical_and", "logical_or"}


class _Unhashable(Exception):
    pass


def attr_key(v):
    """A hashable key for an attribute value such that equal keys mean identical values
    (up to hash collisions of array digests, which ``attrs_identical`` rules out)."""
    if isinstance(v, np.ndarray):
        a = np.ascontiguousarray(v)
        digest = hashlib.blake2b(a.reshape(-1).view(np.uint8), digest_size=16).digest()
        return ("nd", a.dtype.str, a.shape, digest)
    if isinstance(v, (bool, np.bool_)):
        return ("bool", bool(v))
    if isinstance(v, (int, np.integer)):
        return ("int", int(v))
    if isinstance(v, (float, np.floating)):
        return ("float", struct.pack("<d", float(v)))
    if isinstance(v, (tuple, list)):
        return ("seq", tuple(attr_key(x) for x in v))
    if isinstance(v, dict):
        return ("dict", tuple(sorted((k, attr_key(x)) for k, x in v.items())))
    if v is None or isinstance(v, (str, DType)):
        return (type(v).__name__, v)
    try:
        hash(v)
    except TypeError:
        raise _Unhashable from None
    return (type(v).__qualname__, v)


def attrs_identical(a, b) -> bool:
    """Exact equality of two attribute values (arrays: dtype, shape and bytes)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
                and a.dtype == b.dtype and a.shape == b.shape
                and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes())
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(attrs_identical(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(attrs_identical(a[k], b[k]) for k in a)
    try:
        return attr_key(a) == attr_key(b)
    except _Unhashable:
        return a is b


def _node_key(node: Node, inputs: list[Value]):
    ids = [v.uid for v in inputs]
    if node.op in COMMUTATIVE and len(ids) == 2:
        ids.sort()
    attrs = tuple(sorted((k, attr_key(v)) for k, v in node.attrs.items()))
    return (node.op, tuple(ids), attrs)


def cse(graph: Graph) -> Graph:
    """Merge equivalent nodes; returns ``graph`` itself when nothing merges.

    Inputs are looked up after substitution, so chains of duplicates collapse in one walk.
    """
    rw = Rewriter(graph)
    table: dict[tuple, list[Node]] = {}
    for node in graph.nodes:
        ins = rw.inputs_of(node)
        key = None
        if node.op not in NEVER_MERGE:
            try:
                key = _node_key(node, ins)
            except _Unhashable:
                key = None
        if key is not None:
            prev = next((p for p in table.get(key, ()) if _same(p, node)), None)
            if prev is not None:
                rw.replace(node, prev.outputs)
                continue
        rw.copy(node, ins)
        new = rw.graph.nodes[-1]
        if key is not None:
            table.setdefault(key, []).append(new)
    return rw.finish()


def _same(prev: Node, node: Node) -> bool:
    # The key already matched op and inputs; confirm attributes exactly (array digests
    # could collide) and output types (the shape rule fixes them, but be certain).
    return ([v.type for v in prev.outputs] == [v.type for v in node.outputs]
            and prev.attrs.keys() == node.attrs.keys()
            and all(attrs_identical(prev.attrs[k], node.attrs[k]) for k in node.attrs))

