"""The IR verifier: ``verify(graph)`` checks that a graph is well formed and raises
``VerifyError`` naming the first bad node by index, op and printed result name
(``node 3 (%3 = add): ...``), so a pass that breaks the IR is caught where it happens.

Checked: unique, named inputs/params; every value defined exactly once; every use after its
definition; ops registered; arity; attributes accepted by ``normalize_attrs`` and complete;
output types equal to what the op's shape rule re-derives; graph outputs defined; output
names matching the outputs. Acyclicity needs no separate (networkx) pass: requiring every
input to be defined by an earlier node already rules out cycles.
"""
from __future__ import annotations

from graphc.errors import VerifyError
from graphc.ir.dtypes import TensorType
from graphc.ir.graph import Graph, Node, Value
from graphc.ir.registry import get_op, has_op

__all__ = ["verify"]


def verify(graph: Graph) -> None:
    """Raise ``VerifyError`` for the first malformedness found in ``graph``; see module doc."""
    _Verifier(graph).run()


class _Verifier:
    def __init__(self, graph: Graph):
        self.g = graph
        # Printed names, as graphc.ir.printer numbers them, for messages.
        self.names: dict[Value, str] = {}
        self.label: list[str] = []
        counter = 0
        for i, node in enumerate(graph.nodes):
            outs = []
            for v in getattr(node, "outputs", ()):
                self.names.setdefault(v, f"%{counter}")
                outs.append(f"%{counter}")
                counter += 1
            lhs = ", ".join(outs) + " = " if outs else ""
            self.label.append(f"node {i} ({lhs}{getattr(node, 'op', '?')})")

    def fail(self, i: int, msg: str):
        raise VerifyError(f"@{self.g.name}: {self.label[i]}: {msg}")

    def fail_graph(self, msg: str):
        raise VerifyError(f"@{self.g.name}: {msg}")

    def describe(self, v) -> str:
        if not isinstance(v, Value):
            return f"non-value {v!r}"
        if v in self.names:
            return self.names[v]
        return f"%{v.name}" if v.name is not None else repr(v)

    def run(self):
        g = self.g
        defined: set[Value] = set()
        seen_names: dict[str, str] = {}
        for kind, values in (("input", g.inputs), ("param", g.params)):
            for v in values:
                if not isinstance(v, Value):
                    self.fail_graph(f"graph {kind} {v!r} is not a Value")
                if not isinstance(v.name, str) or not v.name:
                    self.fail_graph(f"graph {kind} {v!r} has no name")
                if v.name in seen_names:
                    self.fail_graph(f"duplicate {kind} name %{v.name} "
                                    f"(already a graph {seen_names[v.name]})")
                seen_names[v.name] = kind
                if v in defined:
                    self.fail_graph(f"graph {kind} %{v.name} is defined twice")
                if v.node is not None:
                    self.fail_graph(f"graph {kind} %{v.name} is also the output of a "
                                    f"{v.node.op} node")
                if not isinstance(v.type, TensorType):
                    self.fail_graph(f"graph {kind} %{v.name} has type {v.type!r}, "
                                    "not a TensorType")
                defined.add(v)

        # Who defines what, to tell "used too early" from "not in this graph at all".
        definer: dict[Value, int] = {}
        for i, node in enumerate(g.nodes):
            if not isinstance(node, Node):
                self.fail(i, f"{node!r} is not a Node")
            for v in node.outputs:
                if v in defined:
                    self.fail(i, f"result {self.describe(v)} is already a graph input/param "
                                 "(defined twice)")
                if v in definer:
                    self.fail(i, f"result {self.describe(v)} is defined twice "
                                 f"(also by {self.label[definer[v]]})")
                definer[v] = i

        for i, node in enumerate(g.nodes):
            self.check_node(i, node, defined, definer)
            defined.update(node.outputs)

        if len(g.output_names) != len(g.outputs):
            self.fail_graph(f"{len(g.outputs)} output(s) but {len(g.output_names)} "
                            "output name(s)")
        named = [n for n in g.output_names if n is not None]
        dups = sorted({n for n in named if named.count(n) > 1})
        if dups:
            self.fail_graph(f"duplicate output name(s) {dups}")
        for k, v in enumerate(g.outputs):
            if v not in defined:
                name = g.output_names[k] if k < len(g.output_names) else None
                label = f"output {k}" + (f" ({name})" if name is not None else "")
                self.fail_graph(f"{label} {self.describe(v)} is not defined in the graph")

    def check_node(self, i: int, node: Node, defined: set, definer: dict):
        if not has_op(node.op):
            self.fail(i, f"unknown op {node.op!r}")
        opdef = get_op(node.op)
        for j, v in enumerate(node.outputs):
            if not isinstance(v, Value) or v.node is not node or v.index != j:
                self.fail(i, f"output {j} {self.describe(v)} does not point back to this "
                             "node (value.node / value.index are stale)")
        for j, v in enumerate(node.inputs):
            if v in defined:
                continue
            if isinstance(v, Value) and v in definer:
                self.fail(i, f"input {j} {self.describe(v)} is used before it is defined "
                             f"(by {self.label[definer[v]]})")
            self.fail(i, f"input {j} {self.describe(v)} is not defined in the graph")
        if opdef.arity is not None and len(node.inputs) != opdef.arity:
            self.fail(i, f"{node.op} takes {opdef.arity} input(s), got {len(node.inputs)}")
        try:
            normalized = opdef.normalize_attrs(node.attrs)
        except Exception as e:  # noqa: BLE001 — any rejection is the node's fault
            self.fail(i, f"bad attributes: {e}")
        missing = sorted(set(normalized) - set(node.attrs))
        if missing:
            # Backends read attrs directly; a missing defaulted key would be a KeyError there.
            self.fail(i, f"attribute(s) {missing} missing (build nodes through "
                         "normalize_attrs)")
        try:
            expected = opdef.infer_types([v.type for v in node.inputs], normalized)
        except Exception as e:  # noqa: BLE001 — shape rules raise ShapeError/DTypeError
            self.fail(i, f"shape rule rejects input types "
                         f"{[str(v.type) for v in node.inputs]}: {e}")
        actual = [v.type for v in node.outputs]
        if actual != expected:
            self.fail(i, f"output types {', '.join(map(str, actual)) or '(none)'} disagree "
                         f"with the shape rule: {', '.join(map(str, expected)) or '(none)'}")
