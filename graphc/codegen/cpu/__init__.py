"""The CPU backend: LLVM IR generated with llvmlite, optimized at O3 for the host CPU and
JIT-compiled (or written to an object file for AOT).

``jit`` owns LLVM (target machine, pass pipeline, engines); ``gemm`` generates the packed,
register-blocked matmul with fused epilogues; ``parallel`` is the in-IR thread pool that
lets one native call use every core. Importing this package compiles nothing.
"""
from __future__ import annotations


def is_available() -> bool:
    """Whether this machine can run the CPU backend (llvmlite importable, x86-64 host)."""
    import importlib.util
    if importlib.util.find_spec("llvmlite") is None:
        return False
    import platform
    return platform.machine().lower() in ("x86_64", "amd64")
