"""Structural equality of graphs, the relation ``parse(print_graph(g))`` must keep.

Two graphs are equal when they have the same name, input/param names and types, the same
ops with equal attributes and output types in the same order, the same wiring, and the same
outputs and output names. Names of intermediate values are not compared: the printer
renumbers them. ``first_difference`` says where two graphs part, for test messages.
"""
from __future__ import annotations

import math

import numpy as np

from graphc.ir.graph import Graph, Value

__all__ = ["graphs_equal", "first_difference", "attrs_equal"]


def graphs_equal(a: Graph, b: Graph) -> bool:
    """True when ``a`` and ``b`` are structurally equal (see module docstring)."""
    return first_difference(a, b) is None


def attrs_equal(x, y) -> bool:
    """Attribute equality as the IR sees it: arrays by dtype, shape and contents (NaN
    equal to NaN), floats with NaN == NaN, bool never equal to an int, lists and tuples
    alike (they print alike), numpy scalars like Python ones."""
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)):
            return False
        if x.dtype != y.dtype or x.shape != y.shape:
            return False
        return bool(np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"))
    if isinstance(x, (list, tuple)) or isinstance(y, (list, tuple)):
        return (isinstance(x, (list, tuple)) and isinstance(y, (list, tuple))
                and len(x) == len(y) and all(attrs_equal(p, q) for p, q in zip(x, y)))
    kx, ky = _kind(x), _kind(y)
    if kx != ky:
        return False
    if kx == "float":
        fx, fy = float(x), float(y)
        return fx == fy or (math.isnan(fx) and math.isnan(fy))
    if kx in ("int", "bool"):
        return int(x) == int(y)
    return type(x) is type(y) and x == y


def _kind(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "bool"
    if isinstance(v, (int, np.integer)):
        return "int"
    if isinstance(v, (float, np.floating)):
        return "float"
    return "other"


def first_difference(a: Graph, b: Graph) -> str | None:
    """A sentence naming the first structural difference, or None if the graphs are equal."""
    if a.name != b.name:
        return f"graph names differ: @{a.name} vs @{b.name}"
    ids_a: dict[Value, tuple] = {}
    ids_b: dict[Value, tuple] = {}
    for kind in ("inputs", "params"):
        va, vb = getattr(a, kind), getattr(b, kind)
        if len(va) != len(vb):
            return f"{kind}: {len(va)} vs {len(vb)}"
        for i, (x, y) in enumerate(zip(va, vb)):
            if x.name != y.name or x.type != y.type:
                return f"{kind}[{i}]: %{x.name}: {x.type} vs %{y.name}: {y.type}"
            ids_a[x] = ids_b[y] = (kind, i)
    if len(a.nodes) != len(b.nodes):
        return f"node count: {len(a.nodes)} vs {len(b.nodes)}"
    for i, (na, nb) in enumerate(zip(a.nodes, b.nodes)):
        where = f"node {i} ({na.op})"
        if na.op != nb.op:
            return f"node {i}: op {na.op} vs {nb.op}"
        if [_id(v, ids_a) for v in na.inputs] != [_id(v, ids_b) for v in nb.inputs]:
            return f"{where}: inputs wired differently"
        if set(na.attrs) != set(nb.attrs):
            return f"{where}: attribute names {sorted(na.attrs)} vs {sorted(nb.attrs)}"
        for k in sorted(na.attrs):
            if not attrs_equal(na.attrs[k], nb.attrs[k]):
                return f"{where}: attribute {k}: {na.attrs[k]!r} vs {nb.attrs[k]!r}"
        ta = [v.type for v in na.outputs]
        tb = [v.type for v in nb.outputs]
        if ta != tb:
            return f"{where}: output types {[str(t) for t in ta]} vs {[str(t) for t in tb]}"
        for j, (x, y) in enumerate(zip(na.outputs, nb.outputs)):
            ids_a[x] = ids_b[y] = ("node", i, j)
    if [_id(v, ids_a) for v in a.outputs] != [_id(v, ids_b) for v in b.outputs]:
        return "graph outputs differ"
    if list(a.output_names) != list(b.output_names):
        return f"output names: {a.output_names} vs {b.output_names}"
    return None


def _id(v: Value, ids: dict) -> tuple:
    # A value from outside the graph (malformed) only matches the very same object.
    return ids.get(v, ("foreign", id(v)))
