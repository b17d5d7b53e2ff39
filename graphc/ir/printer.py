"""Deterministic IR text: values numbered in definition order, attributes sorted,
shapes and dtypes on every value. ``graphc.ir.parser.parse`` reads it back."""
from __future__ import annotations

import numpy as np

from graphc.ir.dtypes import DType
from graphc.ir.graph import Graph, Value


def format_attr(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if np.isnan(f):
            return "nan"
        if np.isinf(f):
            return "inf" if f > 0 else "-inf"
        return repr(f)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, DType):
        return v.value
    if isinstance(v, np.ndarray):
        if v.ndim == 0:
            return format_attr(v.item())
        return "[" + ",".join(format_attr(x) for x in v) + "]"
    if isinstance(v, (tuple, list)):
        return "[" + ",".join(format_attr(x) for x in v) + "]"
    raise TypeError(f"cannot print attribute value {v!r}")


class Namer:
    """Assigns printed names: graph inputs/params keep theirs, the rest count from 0."""

    def __init__(self, graph: Graph):
        self.names: dict[Value, str] = {}
        for v in graph.inputs + graph.params:
            self.names[v] = v.name
        self.next = 0

    def define(self, v: Value) -> str:
        self.names[v] = str(self.next)
        self.next += 1
        return self[v]

    def __getitem__(self, v: Value) -> str:
        return "%" + self.names[v]


def print_graph(g: Graph) -> str:
    """The graph's text. ``g.annotations`` (node -> str), when a stage sets it, is printed
    as a ``//`` comment after the node (the parser skips comments)."""
    names = Namer(g)
    notes = getattr(g, "annotations", None) or {}
    sig = ", ".join(f"%{v.name}: {v.type}" for v in g.inputs)
    head = f"graph @{g.name}({sig})"
    if g.params:
        head += " params(" + ", ".join(f"%{v.name}: {v.type}" for v in g.params) + ")"
    lines = [head + " {"]
    for node in g.nodes:
        outs = ", ".join(names.define(v) for v in node.outputs)
        args = ", ".join(names[v] for v in node.inputs)
        attrs = ""
        if node.attrs:
            attrs = " {" + ", ".join(f"{k}={format_attr(node.attrs[k])}"
                                     for k in sorted(node.attrs)) + "}"
        types = ", ".join(str(v.type) for v in node.outputs)
        line = f"  {outs} = {node.op}({args}){attrs} : {types}"
        note = notes.get(node)
        lines.append(f"{line}  // {note}" if note else line)
    rets = []
    for v, name in zip(g.outputs, g.output_names):
        rets.append(names[v] if name is None else f"{name}={names[v]}")
    lines.append("  return " + ", ".join(rets))
    lines.append("}")
    return "\n".join(lines) + "\n"
