"""Dead-code elimination: drop every node none of whose outputs reaches a graph output.

One backward sweep marks live values from the outputs, then the graph is rebuilt with the
live nodes only (linear time). A multi-output node stays whole when any output is used: a
node is the unit of computation, dropping single outputs would change its op.
"""
from __future__ import annotations

from graphc.ir.graph import Graph
from graphc.passes.rewrite import Rewriter

__all__ = ["dce", "live_nodes"]


def live_nodes(graph: Graph) -> list[bool]:
    """``live[i]`` is True when some output of ``graph.nodes[i]`` reaches a graph output."""
    needed = set(graph.outputs)
    live = [False] * len(graph.nodes)
    for i in range(len(graph.nodes) - 1, -1, -1):
        node = graph.nodes[i]
        if any(v in needed for v in node.outputs):
            live[i] = True
            needed.update(node.inputs)
    return live


def dce(graph: Graph) -> Graph:
    """Remove dead nodes; returns ``graph`` itself when every node is live.

    Graph inputs and params are never removed, even if unused: they are the calling
    convention of the compiled function.
    """
    live = live_nodes(graph)
    if all(live):
        return graph
    rw = Rewriter(graph)
    for node, keep in zip(graph.nodes, live):
        if keep:
            rw.copy(node)
        else:
            rw.drop(node)
    return rw.finish()
