"""Decomposition: rewrite every non-primitive op into backend primitives.

For a node whose op has ``primitive=False`` the registry's ``decompose(builder, inputs,
attrs)`` emits the replacement. It emits into a scratch graph first; each node it produced
is then lowered the same way (a decomposition may use other high-level ops), so the result
holds primitives only after a single pass. A depth bound turns a decomposition cycle (``a``
decomposes into ``b``, ``b`` into ``a``) into an error naming the chain instead of a
``RecursionError``.
"""
from __future__ import annotations

from typing import Sequence

from graphc.errors import VerifyError
from graphc.ir.graph import Builder, Graph, Value, building
from graphc.ir.registry import get_op
from graphc.passes.rewrite import Rewriter, as_list, rebuild

__all__ = ["decompose", "MAX_DEPTH"]

#: Deepest nesting of decompositions (an op decomposing into an op decomposing into ...).
MAX_DEPTH = 32


def decompose(graph: Graph) -> Graph:
    """Lower every non-primitive node; returns ``graph`` itself when all are primitive."""

    def visit(rw, node, ins):
        if get_op(node.op).primitive:
            return None
        return _lower(rw, node.op, ins, node.attrs, (node.op,))

    return rebuild(graph, visit)


def _lower(rw: Rewriter, op: str, ins: Sequence[Value], attrs: dict,
           chain: tuple[str, ...]) -> list[Value]:
    """Values computing ``op(ins; attrs)`` with primitives only, emitted into ``rw``."""
    opdef = get_op(op)
    if opdef.primitive:
        return rw.emit(op, ins, attrs)
    if opdef.decompose is None:
        raise VerifyError(f"decompose: op {op!r} is not a primitive and has no decomposition")
    if len(chain) > MAX_DEPTH:
        raise VerifyError(f"decompose: decompositions nest deeper than {MAX_DEPTH} "
                          f"({' -> '.join(chain[:6])} -> ...); is there a cycle?")
    scratch = Graph(f"decompose.{op}")
    sb = Builder(scratch)
    # Operator sugar (``x * 2``) inside a decomposition must land in the scratch graph too.
    with building(sb):
        res = as_list(opdef.decompose(sb, list(ins), dict(attrs)))
    local: dict[Value, Value] = {}
    for n in scratch.nodes:
        nins = [local.get(v, v) for v in n.inputs]
        outs = _lower(rw, n.op, nins, n.attrs, chain + (n.op,))
        local.update(zip(n.outputs, outs))
    outs = [local.get(v, v) for v in res]
    expected = opdef.infer_types([v.type for v in ins], attrs)
    got = [v.type for v in outs]
    if got != expected:
        raise VerifyError(f"decompose: the decomposition of {op} gives "
                          f"{', '.join(map(str, got))}, the op gives "
                          f"{', '.join(map(str, expected))}")
    return outs
