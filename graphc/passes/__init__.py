"""Graph → graph passes and the registry of named passes a CLI can list, run and dump.

``simplify`` is the cleanup pipeline (fold → algebra → cse → dce to a fixed point); the
individual passes live in their modules. Every pass takes a ``Graph`` and returns a
``Graph`` — the very same object when it changed nothing — with inputs, params and output
names preserved and the computed results unchanged.
"""
from __future__ import annotations

from typing import Callable

from graphc.ir.graph import Graph
from graphc.passes.algebra import algebra
from graphc.passes.cse import cse
from graphc.passes.dce import dce
from graphc.passes.decompose import decompose
from graphc.passes.fold import fold
from graphc.passes.manager import PassManager

__all__ = ["simplify", "dce", "cse", "fold", "algebra", "decompose", "PassManager",
           "PASSES", "register_pass", "SIMPLIFY_MAX_ROUNDS"]

#: Upper bound on simplify's rounds. Each rule strictly shrinks the graph or moves it toward
#: a normal form, so a real graph settles in two or three; the bound only guards against a
#: future rule pair that undoes each other.
SIMPLIFY_MAX_ROUNDS = 10

_SIMPLIFY_PIPELINE = (fold, algebra, cse, dce)


def simplify(graph: Graph, max_rounds: int = SIMPLIFY_MAX_ROUNDS) -> Graph:
    """fold → algebra → cse → dce, repeated until a round changes nothing (bounded).

    Rounds repeat because the passes feed each other: CSE can make two operands the same
    constant that folding then evaluates, algebra exposes dead code, and so on.
    """
    for _ in range(max_rounds):
        start = graph
        for p in _SIMPLIFY_PIPELINE:
            graph = p(graph)
        if graph is start:
            break
    return graph


#: Named passes: ``PASSES[name](graph) -> graph``. Their docstrings describe them.
PASSES: dict[str, Callable[[Graph], Graph]] = {
    "decompose": decompose,
    "fold": fold,
    "algebra": algebra,
    "cse": cse,
    "dce": dce,
    "simplify": simplify,
}


def register_pass(name: str, fn: Callable[[Graph], Graph], replace: bool = False):
    """Add a named pass (e.g. fusion, layout) to ``PASSES`` so tools can list and run it."""
    if name in PASSES and not replace and PASSES[name] is not fn:
        raise ValueError(f"pass {name!r} is already registered")
    PASSES[name] = fn
    return fn
