"""The CUDA stage of ``dump-ir``: ``cuda_source(graph)`` is every kernel the cuda target would
generate for ``graph`` (the Python source given to ``numba.cuda.jit``), then the launch plan
(grid, block, shared memory per kernel). Rendering compiles nothing and needs no GPU, so the
text can be produced, diffed and reviewed on any machine.
"""
from __future__ import annotations


def cuda_program_sources(graph, config=None):
    """(program, kernel sources, config) of ``graph`` as the cuda backend renders it."""
    from graphc.codegen.cuda.program import fuse_program, render_program
    from graphc.codegen.cuda.source import default_config
    from graphc.codegen.lowering import lower_graph
    from graphc.passes.pipeline import optimize_graph, verify_graph
    cfg = config or default_config()
    program = fuse_program(lower_graph(verify_graph(optimize_graph(graph))), cfg)
    return program, render_program(program, cfg), cfg


def cuda_source(graph, config=None) -> str:
    """Every generated kernel's source, each under a header naming the program kernel and
    its buffers, followed by the launch plan. Deterministic for a graph and a config."""
    from graphc.codegen.cuda.program import launch_plan
    program, sources, cfg = cuda_program_sources(graph, config)
    out = [f"# graphc cuda: program @{program.name}, {len(sources)} kernels, "
           f"{'simulator' if cfg.simulator else 'gpu'} schedule", ""]
    seen = set()
    for s in sources:
        args = ", ".join(f"b{b}" for b in s.args)
        out.append(f"# ---- {s.name}: {s.fn_name}({args})")
        if s.text in seen:
            out.append("# (same text as an earlier kernel: compiled once)")
            out.append("")
            continue
        seen.add(s.text)
        out.append(s.text.rstrip("\n"))
        out.append("")
    out.append(launch_plan(program, sources, cfg).rstrip("\n"))
    return "\n".join(out) + "\n"
