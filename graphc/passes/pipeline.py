"""The compiler pipeline, stage by stage: ``traced`` (the model's forward graph as traced),
``train`` (the train-step graph: forward + loss + backward + update, simplified) and
``optimized`` (decomposed to primitives and simplified, each node annotated with the fused
kernel that computes it).
``build_stage`` is what ``python -m graphc dump-ir`` prints and the golden tests compare."""
from __future__ import annotations

from graphc.ir.graph import Graph
from graphc.passes import train_step as ts

STAGES = ("traced", "train", "optimized")


def simplify_graph(g: Graph) -> Graph:
    from graphc.passes import simplify
    return simplify(g)


def optimize_graph(g: Graph) -> Graph:
    from graphc.passes.decompose import decompose
    return simplify_graph(decompose(simplify_graph(g)))


def verify_graph(g: Graph) -> Graph:
    from graphc.ir.verifier import verify
    verify(g)
    return g


def build_stage(model, stage: str, batch_size: int = 32) -> Graph:
    """The IR of ``model`` at ``stage`` for a given batch size."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    x_types = ts.model_input_types(model, batch_size)
    if stage == "traced":
        return verify_graph(ts.build_predict_graph(model, x_types).graph)
    if not getattr(model, "loss", None) or getattr(model, "optimizer", None) is None:
        raise ValueError("the train stage needs a compiled model: call model.compile("
                         "optimizer, loss, ...) in the model file")
    y_types = ts.default_target_types(model, batch_size)
    g = ts.build_train_graph(model, x_types, y_types).graph
    g = simplify_graph(verify_graph(g))
    if stage == "optimized":
        from graphc.codegen.lowering import annotate_fusion
        g = annotate_fusion(verify_graph(optimize_graph(g)))
    return verify_graph(g)
