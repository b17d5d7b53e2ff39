"""The graph IR: ``Value`` (an SSA tensor), ``Node`` (one op application) and ``Graph``.

A graph has data inputs, params (state: weights, optimizer slots, counters) and named
outputs. Nodes are kept in a valid topological (definition) order; passes build new node
lists rather than patching in place. ``Builder`` appends nodes, running each op's shape rule.
"""
from __future__ import annotations

import itertools
from typing import Any, Iterable, Sequence

import numpy as np

from graphc.errors import ShapeError
from graphc.ir.dtypes import DType, TensorType

_uid = itertools.count()


class Value:
    """One SSA tensor value: a graph input/param (``node is None``) or a node's output."""

    __slots__ = ("type", "name", "node", "index", "uid", "__weakref__")

    def __init__(self, type: TensorType, name: str | None = None, node: "Node | None" = None,
                 index: int = 0):
        self.type = type
        self.name = name
        self.node = node
        self.index = index
        self.uid = next(_uid)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> DType:
        return self.type.dtype

    @property
    def rank(self) -> int:
        return self.type.rank

    def __repr__(self) -> str:
        label = self.name if self.name is not None else f"#{self.uid}"
        return f"<Value %{label}: {self.type}>"

    # Operator sugar for code that builds graphs (VJP rules, Lambda layers); it emits into
    # the builder of the active tracing context, see ``graphc.ir.builder_for``.
    def _bin(self, op, other, reverse=False):
        b = current_builder()
        return b.emit(op, [other, self] if reverse else [self, other])

    def __add__(self, o): return self._bin("add", o)
    def __radd__(self, o): return self._bin("add", o, True)
    def __sub__(self, o): return self._bin("sub", o)
    def __rsub__(self, o): return self._bin("sub", o, True)
    def __mul__(self, o): return self._bin("mul", o)
    def __rmul__(self, o): return self._bin("mul", o, True)
    def __truediv__(self, o): return self._bin("div", o)
    def __rtruediv__(self, o): return self._bin("div", o, True)
    def __pow__(self, o): return self._bin("pow", o)
    def __matmul__(self, o): return self._bin("matmul", o)
    def __neg__(self): return current_builder().emit("neg", [self])

    __hash__ = object.__hash__


class Node:
    """One application of a registered op: inputs, attributes and output values."""

    __slots__ = ("op", "inputs", "attrs", "outputs")

    def __init__(self, op: str, inputs: Sequence[Value], attrs: dict[str, Any],
                 output_types: Sequence[TensorType]):
        self.op = op
        self.inputs = list(inputs)
        self.attrs = dict(attrs)
        self.outputs = [Value(t, None, self, i) for i, t in enumerate(output_types)]

    @property
    def output(self) -> Value:
        assert len(self.outputs) == 1, f"{self.op} has {len(self.outputs)} outputs"
        return self.outputs[0]

    def __repr__(self) -> str:
        return f"<Node {self.op} {[str(v.type) for v in self.outputs]}>"


class Graph:
    """A function: ``inputs`` (per-call data), ``params`` (state), ``nodes``, named outputs."""

    def __init__(self, name: str = "main"):
        self.name = name
        self.inputs: list[Value] = []
        self.params: list[Value] = []
        self.nodes: list[Node] = []
        self.outputs: list[Value] = []
        self.output_names: list[str | None] = []

    # -- construction -------------------------------------------------------------
    def add_input(self, name: str, type: TensorType) -> Value:
        v = Value(type, name)
        self.inputs.append(v)
        return v

    def add_param(self, name: str, type: TensorType) -> Value:
        v = Value(type, name)
        self.params.append(v)
        return v

    def set_outputs(self, values: Sequence[Value], names: Sequence[str | None] | None = None):
        self.outputs = list(values)
        self.output_names = list(names) if names is not None else [None] * len(values)
        if len(self.output_names) != len(self.outputs):
            raise ValueError("set_outputs: names and values differ in length")

    @property
    def builder(self) -> "Builder":
        return Builder(self)

    # -- queries ------------------------------------------------------------------
    def output(self, name: str) -> Value:
        return self.outputs[self.output_names.index(name)]

    def input(self, name: str) -> Value:
        for v in self.inputs:
            if v.name == name:
                return v
        raise KeyError(name)

    def param(self, name: str) -> Value:
        for v in self.params:
            if v.name == name:
                return v
        raise KeyError(name)

    def users(self) -> dict[Value, list[Node]]:
        """Map from each value to the nodes that consume it."""
        out: dict[Value, list[Node]] = {}
        for n in self.nodes:
            for v in n.inputs:
                out.setdefault(v, []).append(n)
        return out

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return counts

    def to_networkx(self):
        """A networkx DiGraph view: one vertex per node (by index), edges along data flow."""
        import networkx as nx
        g = nx.DiGraph()
        producer = {}
        for i, n in enumerate(self.nodes):
            g.add_node(i, op=n.op)
            for v in n.outputs:
                producer[v] = i
        for i, n in enumerate(self.nodes):
            for v in n.inputs:
                if v in producer:
                    g.add_edge(producer[v], i)
        return g

    def __str__(self) -> str:
        from graphc.ir.printer import print_graph
        return print_graph(self)

    def __repr__(self) -> str:
        return f"<Graph @{self.name}: {len(self.nodes)} nodes>"


# --------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------

def _freeze_attr(v):
    """Canonical attribute form: lists become tuples, numpy scalars become Python ones."""
    if isinstance(v, np.ndarray):
        return v
    if isinstance(v, (list, tuple)):
        return tuple(_freeze_attr(x) for x in v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.dtype) or (isinstance(v, type) and issubclass(v, np.generic)):
        return DType.of(v)
    return v


class Builder:
    """Appends nodes to a graph. ``b.emit("add", [x, y])`` or the sugar ``b.add(x, y)``.

    Python numbers and numpy arrays among the inputs become ``constant`` nodes of the dtype
    of the first tensor input (scalars stay rank 0 and broadcast).
    """

    def __init__(self, graph: Graph):
        self.graph = graph

    def emit(self, op: str, inputs: Iterable[Any], attrs: dict[str, Any] | None = None,
             **kw) -> Value | tuple[Value, ...]:
        from graphc.ir.registry import get_op
        opdef = get_op(op)
        inputs = list(inputs)
        # A frontend Variable stands for its graph value in the active trace.
        inputs = [x._graph_value() if hasattr(x, "_graph_value") else x for x in inputs]
        like = next((x for x in inputs if isinstance(x, Value)), None)
        vals = [x if isinstance(x, Value) else self.const(x, like.dtype if like else None)
                for x in inputs]
        attrs = {**(attrs or {}), **kw}
        attrs = opdef.normalize_attrs(attrs)
        out_types = opdef.infer_types([v.type for v in vals], attrs)
        node = Node(op, vals, attrs, out_types)
        self.graph.nodes.append(node)
        return node.outputs[0] if len(node.outputs) == 1 else tuple(node.outputs)

    def const(self, value, dtype: DType | str | None = None) -> Value:
        arr = np.asarray(value)
        if dtype is None:
            dtype = DType.f32 if arr.dtype.kind == "f" else DType.of(arr.dtype)
        arr = arr.astype(DType.of(dtype).np)
        return self.emit("constant", [], value=arr)

    def __getattr__(self, op: str):
        from graphc.ir.registry import has_op
        if op.startswith("_") or not has_op(op):
            raise AttributeError(op)
        return lambda *inputs, **attrs: self.emit(op, inputs, attrs)


# The builder that Value's operator sugar emits into: set by tracing / autodiff / tests.
_builder_stack: list[Builder] = []


class building:
    """Context manager: ``with building(graph) as b:`` routes operator sugar into ``graph``."""

    def __init__(self, graph_or_builder):
        self.b = graph_or_builder if isinstance(graph_or_builder, Builder) else Builder(graph_or_builder)

    def __enter__(self) -> Builder:
        _builder_stack.append(self.b)
        return self.b

    def __exit__(self, *exc):
        _builder_stack.pop()


def current_builder() -> Builder:
    if not _builder_stack:
        raise RuntimeError("graph operators used outside a graph-building context")
    return _builder_stack[-1]


def check(cond: bool, op: str, msg: str):
    """Raise ShapeError naming ``op`` when ``cond`` is false (for shape rules)."""
    if not cond:
        raise ShapeError(f"{op}: {msg}")
