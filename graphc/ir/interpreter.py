"""The reference interpreter: runs a graph node by node with each op's numpy semantics.
It is the ``reference`` target and the oracle every compiled backend is tested against."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from graphc.errors import DTypeError, ShapeError
from graphc.ir.graph import Graph, Value
from graphc.ir.registry import get_op


def _bind(values: Sequence[Value], given, what: str, env: dict):
    if isinstance(given, Mapping):
        missing = [v.name for v in values if v.name not in given]
        if missing:
            raise KeyError(f"missing {what}: {missing}")
        given = [given[v.name] for v in values]
    if len(given) != len(values):
        raise ShapeError(f"expected {len(values)} {what}, got {len(given)}")
    for v, a in zip(values, given):
        a = np.asarray(a)
        if a.shape != v.shape:
            raise ShapeError(f"{what} %{v.name}: expected shape {v.shape}, got {a.shape}")
        if a.dtype != v.dtype.np:
            raise DTypeError(f"{what} %{v.name}: expected dtype {v.dtype}, got {a.dtype}")
        env[v] = a


def interpret(graph: Graph, inputs=(), params=()) -> list[np.ndarray]:
    """Evaluate ``graph``; inputs/params as sequences in graph order or dicts by name."""
    env: dict[Value, np.ndarray] = {}
    _bind(graph.inputs, inputs, "inputs", env)
    _bind(graph.params, params, "params", env)
    for node in graph.nodes:
        opdef = get_op(node.op)
        outs = opdef.run_ref([env[v] for v in node.inputs], node.attrs)
        for v, a in zip(node.outputs, outs):
            a = np.asarray(a)
            if a.dtype != v.dtype.np:
                a = a.astype(v.dtype.np)
            assert a.shape == v.shape, f"{node.op}: ref gave {a.shape}, rule said {v.shape}"
            env[v] = a
    return [env[v] for v in graph.outputs]
