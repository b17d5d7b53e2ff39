"""Targets: each turns a ``StepGraph`` into a callable ``fn(inputs, params) -> outputs``.

``reference`` interprets the graph with numpy (the oracle). ``cpu`` (LLVM) and ``cuda``
(Numba CUDA) register here when their backends land.
"""
from __future__ import annotations

from typing import Callable

from graphc.errors import TargetError

_BACKENDS: dict[str, Callable] = {}


def register_backend(name: str, factory: Callable):
    _BACKENDS[name] = factory


# Backends that register themselves when their module is first imported: looked up on
# demand, so importing graphc never pulls in llvmlite (or numba).
_LAZY = {"cpu": "graphc.codegen.cpu.backend", "cuda": "graphc.codegen.cuda.backend"}


def get_backend(name: str):
    from graphc.config import KNOWN_TARGETS
    if name not in KNOWN_TARGETS:
        raise TargetError(f"unknown target {name!r}; known targets: {', '.join(KNOWN_TARGETS)}")
    if name not in _BACKENDS and name in _LAZY:
        import importlib
        try:
            importlib.import_module(_LAZY[name])
        except ImportError as e:    # e.g. llvmlite missing: the target is unavailable
            raise TargetError(f"target {name!r} cannot load here: {e}") from e
    if name not in _BACKENDS:
        raise TargetError(f"target {name!r} is not implemented yet in this version of graphc; "
                          f"use target='reference'")
    return _BACKENDS[name]()


class ReferenceBackend:
    """Runs graphs with the numpy interpreter, after the target-independent simplification."""

    name = "reference"

    def prepare(self, graph):
        from graphc.passes.pipeline import simplify_graph, verify_graph
        return verify_graph(simplify_graph(graph))

    def compile(self, graph):
        from graphc.ir.interpreter import interpret
        graph = self.prepare(graph)
        return lambda inputs, params: interpret(graph, inputs, params)


register_backend("reference", ReferenceBackend)
