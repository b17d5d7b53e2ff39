"""Reverse-mode automatic differentiation on the graph IR.

``gradients(graph, y, xs)`` appends the backward nodes to ``graph`` (built only out of
registered ops through each op's VJP rule) and returns d y / d x for each x. Only nodes on a
path from some x to y are differentiated; ops declared NOT_DIFFERENTIABLE stop the flow.
"""
from __future__ import annotations

from typing import Sequence

from graphc.errors import GraphcError
from graphc.ir.graph import Builder, Graph, Value
from graphc.ir.registry import NOT_DIFFERENTIABLE, get_op


def _relevant_nodes(graph: Graph, y: Value, xs: Sequence[Value]):
    """Nodes that depend on some x (forward) and that y depends on (backward)."""
    depends_on_x = set(xs)
    forward = set()
    for i, node in enumerate(graph.nodes):
        if any(v in depends_on_x for v in node.inputs):
            forward.add(i)
            depends_on_x.update(node.outputs)
    needed = {y}
    relevant = []
    for i in range(len(graph.nodes) - 1, -1, -1):
        node = graph.nodes[i]
        if any(v in needed for v in node.outputs):
            needed.update(node.inputs)
            if i in forward:
                relevant.append(node)
    return relevant  # reverse topological order


def _zeros_like(b: Builder, v: Value) -> Value:
    zero = b.const(0.0, v.dtype)
    return b.broadcast_to(zero, shape=v.shape) if v.shape else zero


def gradients(graph: Graph, y: Value, xs: Sequence[Value], seed: Value | None = None,
              builder: Builder | None = None) -> list[Value | None]:
    """Gradients of scalar ``y`` (or of ``sum(y * seed)``) w.r.t. each of ``xs``.

    Returns ``None`` for an x that ``y`` does not depend on.
    """
    b = builder or Builder(graph)
    if seed is None:
        if y.shape != ():
            raise GraphcError(f"gradients: y must be a scalar, got {y.type}")
        seed = b.const(1.0, y.dtype)
    grads: dict[Value, Value] = {y: seed}

    def accumulate(v: Value, g: Value):
        if g.shape != v.shape:
            raise GraphcError(f"VJP produced a gradient of shape {g.shape} for a value of "
                              f"shape {v.shape} (op {v.node.op if v.node else 'input'})")
        prev = grads.get(v)
        grads[v] = g if prev is None else b.add(prev, g)

    for node in _relevant_nodes(graph, y, xs):
        gouts = [grads.get(v) for v in node.outputs]
        if all(g is None for g in gouts):
            continue
        opdef = get_op(node.op)
        if opdef.vjp is NOT_DIFFERENTIABLE:
            continue
        if opdef.vjp is None:
            raise GraphcError(f"op {node.op} has no gradient rule")
        if any(g is None for g in gouts):  # multi-output op with some unused outputs
            gouts = [g if g is not None else _zeros_like(b, v)
                     for g, v in zip(gouts, node.outputs)]
        gins = opdef.vjp(b, node, gouts)
        for v, g in zip(node.inputs, gins):
            if g is not None and v.dtype.is_float:
                accumulate(v, g)
    return [grads.get(x) for x in xs]
