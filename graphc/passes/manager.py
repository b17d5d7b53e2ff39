"""The pass manager: runs named graph passes in order, verifies the IR after each, dumps the
IR text after each on request, and records per-pass timing and node counts.

    pm = PassManager([("decompose", decompose), ("simplify", simplify)], dump="out/ir")
    g = pm.run(g)
    pm.report   # [{"pass": "decompose", "seconds": ..., "nodes_before": ..., ...}, ...]

Checks between passes are what make a broken pass cheap to find: the verifier (when
``graphc.ir.verifier`` is importable) and the pass contract — inputs, params and output
names unchanged — raise ``VerifyError`` naming the pass that broke them.
"""
from __future__ import annotations

import io
import os
import time
from typing import Any, Callable, Sequence

from graphc.errors import VerifyError
from graphc.ir.graph import Graph

__all__ = ["PassManager", "PassFn"]

PassFn = Callable[[Graph], Graph]


def _verifier():
    try:
        from graphc.ir.verifier import verify
    except ImportError:  # the verifier is optional while the IR package grows
        return None
    return verify


def _safe_filename(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "pass"


class PassManager:
    """Runs ``passes`` — ``(name, fn)`` pairs, bare functions (named by ``__name__``) or
    names from ``graphc.passes.PASSES`` — in order.

    ``verify``: run the IR verifier on the input and after every pass.
    ``dump``: where the IR text goes after every pass (and once for the input, labelled
    ``input``, so the first pass's effect is visible as a diff):

    * a callable: ``dump(label, text)``;
    * a directory path (``str``/``os.PathLike``; created if missing): one file per stage,
      ``00-input.ir``, ``01-<pass>.ir``, ... holding exactly the printed IR, so each file
      parses back and consecutive files diff cleanly;
    * a text stream (anything with ``write``): each stage as a header line
      ``// ---- after <pass> (<i>/<n>) ----`` (``// ---- input ----`` first) followed by
      the IR text.
    """

    def __init__(self, passes: Sequence, verify: bool = True, dump: Any = None):
        self.passes: list[tuple[str, PassFn]] = [self._resolve(p) for p in passes]
        self.verify = verify
        self.dump = dump
        self.report: list[dict] = []

    @staticmethod
    def _resolve(p) -> tuple[str, PassFn]:
        if isinstance(p, str):
            from graphc.passes import PASSES
            if p not in PASSES:
                from graphc.errors import UnknownNameError
                raise UnknownNameError(f"unknown pass {p!r}; known passes: {sorted(PASSES)}")
            return p, PASSES[p]
        if isinstance(p, tuple):
            name, fn = p
            return str(name), fn
        if callable(p):
            return getattr(p, "__name__", type(p).__name__), p
        raise TypeError(f"PassManager: cannot use {p!r} as a pass")

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.passes]

    # -- running --------------------------------------------------------------------
    def run(self, graph: Graph) -> Graph:
        self.report = []
        verify = _verifier() if self.verify else None
        if verify is not None:
            self._check(verify, graph, "the pass manager's input")
        self._dump(0, "input", graph)
        for i, (name, fn) in enumerate(self.passes, 1):
            before = len(graph.nodes)
            t0 = time.perf_counter()
            out = fn(graph)
            seconds = time.perf_counter() - t0
            if not isinstance(out, Graph):
                raise VerifyError(f"pass {name!r} returned {type(out).__name__}, not a Graph")
            self._check_contract(name, graph, out)
            if verify is not None:
                self._check(verify, out, f"pass {name!r}")
            self.report.append({"pass": name, "seconds": seconds, "nodes_before": before,
                                "nodes_after": len(out.nodes), "changed": out is not graph})
            graph = out
            self._dump(i, name, graph)
        return graph

    __call__ = run

    @staticmethod
    def _check(verify, graph: Graph, what: str):
        try:
            verify(graph)
        except VerifyError as e:
            raise VerifyError(f"after {what}: {e}") from e

    @staticmethod
    def _check_contract(name: str, before: Graph, after: Graph):
        def sig(vals):
            return [(v.name, v.type) for v in vals]

        for kind in ("inputs", "params"):
            if sig(getattr(before, kind)) != sig(getattr(after, kind)):
                raise VerifyError(f"pass {name!r} changed the graph {kind}")
        if list(before.output_names) != list(after.output_names):
            raise VerifyError(f"pass {name!r} changed the output names "
                              f"{before.output_names} -> {after.output_names}")
        if [v.type for v in before.outputs] != [v.type for v in after.outputs]:
            raise VerifyError(f"pass {name!r} changed the output types")

    def _dump(self, i: int, label: str, graph: Graph):
        if self.dump is None:
            return
        from graphc.ir.printer import print_graph
        text = print_graph(graph)
        d = self.dump
        if isinstance(d, (str, os.PathLike)):
            os.makedirs(d, exist_ok=True)
            path = os.path.join(d, f"{i:02d}-{_safe_filename(label)}.ir")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        elif hasattr(d, "write"):
            head = "input" if i == 0 else f"after {label} ({i}/{len(self.passes)})"
            d.write(f"// ---- {head} ----\n")
            d.write(text)
        elif callable(d):
            d(label, text)
        else:
            raise TypeError(f"PassManager: cannot dump to {d!r}")

    def format_report(self) -> str:
        """The report as an aligned table (for a CLI's ``--timings``)."""
        out = io.StringIO()
        out.write(f"{'pass':<20} {'ms':>9} {'nodes':>13}\n")
        for r in self.report:
            out.write(f"{r['pass']:<20} {r['seconds'] * 1e3:>9.2f} "
                      f"{r['nodes_before']:>6}->{r['nodes_after']:<6}\n")
        return out.getvalue()
