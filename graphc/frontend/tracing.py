"""Tracing: running layers' ``call`` on IR values to build a graph.

A ``TraceContext`` is active while a model is traced. It maps each ``Variable`` to the
graph value standing for it, carries ``training``, the RNG ``seed``/``step`` values (for
dropout), extra losses (regularizers, ``add_loss``) and state updates (BatchNorm moving
statistics) that the train-step builder turns into graph outputs.
"""
from __future__ import annotations

from typing import Callable

from graphc.ir.graph import Builder, Graph, Value, _builder_stack

_stack: list["TraceContext"] = []


class TraceContext:
    def __init__(self, graph: Graph, training: bool = False, seed: Value | None = None,
                 step: Value | None = None,
                 param_for: Callable[["Variable"], Value] | None = None):  # noqa: F821
        self.graph = graph
        self.builder = Builder(graph)
        self.training = training
        self.seed = seed
        self.step = step
        self.var_values: dict = {}
        self._param_for = param_for
        self.losses: list[Value] = []
        self.state_updates: dict = {}   # Variable -> Value of its new content

    def value_of(self, var) -> Value:
        """The graph value of a Variable: a param of the graph, created on first use."""
        v = self.var_values.get(var)
        if v is None:
            v = self._param_for(var) if self._param_for else \
                self.graph.add_param(var.path, var.type)
            self.var_values[var] = v
        return v

    def __enter__(self) -> "TraceContext":
        _stack.append(self)
        _builder_stack.append(self.builder)
        return self

    def __exit__(self, *exc):
        _builder_stack.pop()
        _stack.pop()


def current_trace() -> TraceContext | None:
    return _stack[-1] if _stack else None
