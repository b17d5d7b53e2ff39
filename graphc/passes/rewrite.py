"""Rebuild a graph node by node with a value substitution map — the one way passes change IR.

A pass walks the source graph in topological order; for each node it either copies it (with
its inputs substituted) or gives replacement values for its outputs, possibly after emitting
new nodes. The source graph is never modified: every kept node is a fresh ``Node`` in a
fresh ``Graph``, so a caller holding the old graph (a dump, a test oracle, an undo) still
has a valid graph, and no two graphs share a mutable node.
"""
from __future__ import annotations

from typing import Callable, Sequence

from graphc.errors import VerifyError
from graphc.ir.graph import Builder, Graph, Node, Value

__all__ = ["Rewriter", "rebuild", "as_list", "const_value", "producer"]

# Graph attributes the rewriter rebuilds; anything else a client stored on the graph object
# is carried over shallowly (see ``Rewriter.__init__``).
_REBUILT = ("name", "inputs", "params", "nodes", "outputs", "output_names")


def as_list(res) -> list[Value]:
    """Builder results (a Value or a tuple of them) as a list."""
    if isinstance(res, Value):
        return [res]
    return list(res)


def producer(v: Value, op: str | None = None) -> Node | None:
    """The node defining ``v`` (None for graph inputs/params), optionally only if its op is
    ``op``."""
    n = v.node
    if n is None or (op is not None and n.op != op):
        return None
    return n


def const_value(v: Value):
    """The numpy value of ``v`` if a ``constant`` node defines it, else None."""
    n = producer(v, "constant")
    return None if n is None else n.attrs["value"]


class Rewriter:
    """Builds ``self.graph`` from ``src``: same name, the *same* input/param ``Value``
    objects (they carry no node, and keeping them lets callers' references to inputs and
    params stay valid), fresh nodes for everything else.

    ``map`` sends every source value to its value in the new graph. ``changed`` records
    whether anything other than a verbatim copy happened, so ``finish`` can hand back the
    source graph itself when a pass found nothing to do (``simplify`` uses ``is`` to detect
    its fixed point).
    """

    def __init__(self, src: Graph):
        self.src = src
        g = Graph(src.name)
        # Extra attributes a client may have put on the graph (metadata) follow shallowly;
        # they must not hold node outputs, which are replaced by new values here.
        for k, v in vars(src).items():
            if k not in _REBUILT:
                setattr(g, k, v)
        g.inputs = list(src.inputs)
        g.params = list(src.params)
        self.graph = g
        self.builder = Builder(g)
        self.map: dict[Value, Value] = {v: v for v in g.inputs + g.params}
        self.changed = False

    # -- lookups --------------------------------------------------------------------
    def lookup(self, v: Value) -> Value:
        """The new-graph value standing for source value ``v``."""
        try:
            return self.map[v]
        except KeyError:
            raise VerifyError(f"@{self.src.name}: value {v!r} is used but not defined "
                              "earlier in the graph") from None

    def inputs_of(self, node: Node) -> list[Value]:
        return [self.lookup(v) for v in node.inputs]

    # -- building -------------------------------------------------------------------
    def copy(self, node: Node, inputs: Sequence[Value] | None = None) -> list[Value]:
        """Append a fresh copy of ``node`` reading ``inputs`` (default: its mapped inputs).

        Output types are taken over, not re-derived: substitutions are type-preserving
        (``replace`` enforces it), so the shape rule would only repeat itself.
        """
        ins = self.inputs_of(node) if inputs is None else list(inputs)
        new = Node(node.op, ins, node.attrs, [v.type for v in node.outputs])
        self.graph.nodes.append(new)
        for old, nv in zip(node.outputs, new.outputs):
            self.map[old] = nv
        return new.outputs

    def emit(self, op: str, inputs: Sequence, attrs: dict | None = None) -> list[Value]:
        """Emit a new node (shape rule and attribute normalization run) into the new graph."""
        self.changed = True
        return as_list(self.builder.emit(op, list(inputs), dict(attrs or {})))

    def const(self, value, dtype=None) -> Value:
        self.changed = True
        return self.builder.const(value, dtype)

    def replace(self, node: Node, values: Sequence[Value]):
        """Let new-graph ``values`` stand for ``node``'s outputs (the node is not copied)."""
        values = list(values)
        if len(values) != len(node.outputs):
            raise VerifyError(f"replacement for {node.op} has {len(values)} value(s), the node "
                              f"has {len(node.outputs)} output(s)")
        for old, new in zip(node.outputs, values):
            if old.type != new.type:
                # Every pass must keep types: a mismatch is a bug in the pass, not user input.
                raise VerifyError(f"rewriting {node.op}: replacement {new.type} differs from "
                                  f"the original {old.type}")
            self.map[old] = new
        self.changed = True

    def drop(self, node: Node):
        """Leave ``node`` out (its outputs must have no remaining users)."""
        self.changed = True

    def finish(self) -> Graph:
        """Set the outputs (names preserved) and return the new graph — or the source graph
        itself when nothing changed."""
        if not self.changed:
            return self.src
        self.graph.set_outputs([self.lookup(v) for v in self.src.outputs],
                               list(self.src.output_names))
        return self.graph


VisitFn = Callable[[Rewriter, Node, list[Value]], "Sequence[Value] | None"]


def rebuild(graph: Graph, visit: VisitFn) -> Graph:
    """Walk ``graph``; ``visit(rw, node, new_inputs)`` returns replacement values for the
    node's outputs (after emitting whatever it needs through ``rw``) or None to copy it."""
    rw = Rewriter(graph)
    for node in graph.nodes:
        ins = rw.inputs_of(node)
        res = visit(rw, node, ins)
        if res is None:
            rw.copy(node, ins)
        else:
            rw.replace(node, res)
    return rw.finish()
