"""The LLVM stage of ``dump-ir``: ``llvm_ir(graph)`` is the optimized LLVM IR of the step
module the cpu target would JIT for ``graph`` (the text ``dump-ir --stage llvm`` prints).

GEMMs are compiled once per process into modules of their own (templates.py), so the step
module only declares the ``graphc_gemm_*`` entry points it calls.
"""
from __future__ import annotations


def program_module(graph, *, threads: int | None = None):
    """The (unoptimized) ``ProgramModule`` of ``graph`` as the cpu backend builds it."""
    from graphc.codegen.cpu.backend import CpuBackend
    from graphc.codegen.cpu.program import build_program_module
    from graphc.codegen.lowering import lower_graph
    return build_program_module(lower_graph(CpuBackend().prepare(graph)), threads=threads)


def llvm_ir(graph, *, optimized: bool = True, threads: int | None = None) -> str:
    """LLVM IR text of ``graph``'s step module, after the O3 pipeline unless
    ``optimized=False``. Deterministic for a given graph, host CPU and thread count."""
    from graphc.codegen.cpu import jit
    pm = program_module(graph, threads=threads)
    if not optimized:
        return str(pm.module)
    return jit.optimized_ir(pm.module)
