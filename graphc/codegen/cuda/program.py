"""A whole ``Program`` → its kernels as ``numba.cuda`` code with launch configurations.

``render_program`` is pure text (no numba import): every kernel's ``KernelSource``.
``CudaProgram`` compiles them — ``cuda.jit`` with an explicit signature (every buffer is a
flat, C-contiguous 1-D array), so on a GPU each kernel compiles once, up front — through a
process-wide cache keyed by the kernel text: identical kernels (the same optimizer update on
two equally shaped parameters, the same step compiled for two executables) compile once.
``launch_plan`` is the table ``dump-ir --stage cuda`` prints: kernel, grid, block, shared
memory and what the schedule does.
"""
from __future__ import annotations

import linecache
import threading
from dataclasses import dataclass

from graphc.codegen.cuda.conv import split_k
from graphc.codegen.cuda.source import (CudaConfig, KernelSource, default_config,
                                        kernel_namespace, render_loop_kernel)
from graphc.codegen.cuda.templates import render_template
from graphc.codegen.kernel import LoopKernel, Program, TemplateKernel
from graphc.errors import GraphcError
from graphc.ir.dtypes import DType


def fuse_program(program: Program, cfg: CudaConfig | None = None) -> Program:
    """The program with elementwise consumers of contractions folded into the contraction's
    store (``graphc.codegen.epilogue``, shared with the cpu backend; every template here
    renders any epilogue expression as scalar code per output element, so all qualify),
    then convs too short of output tiles for the GPU split along K (``conv.split_k``)."""
    try:
        from graphc.codegen.epilogue import fuse_epilogues
    except ImportError:     # a tree without the shared epilogue pass: no fusion
        pass
    else:
        program = fuse_epilogues(program, lambda template, epilogue, buffers: True)
    return split_k(program, cfg or default_config())


def render_program(program: Program, cfg: CudaConfig | None = None) -> list[KernelSource]:
    """The source of every kernel of ``program``, in execution order."""
    cfg = cfg or default_config()
    out = []
    for k in program.kernels:
        if isinstance(k, TemplateKernel):
            out.append(render_template(k, program.buffers, cfg))
        elif isinstance(k, LoopKernel):
            out.append(render_loop_kernel(k, program.buffers, cfg))
        else:
            raise GraphcError(f"cuda codegen: unknown kernel kind {type(k).__name__}")
    return out

# ----------------------------------------------------------------------------- compiling


@dataclass
class CompiledCode:
    """One compiled kernel text: the Python function, its numba signature, the kernel."""
    pyfunc: object
    signature: object
    kernel: object


_CACHE: dict = {}
_LOCK = threading.Lock()
_STATS = {"compiled": 0, "hits": 0}


def numba_signature(dtypes):
    """``void(float32[::1], ...)``: every kernel argument is a flat contiguous array."""
    from numba import types as nbt
    scalar = {DType.f32: nbt.float32, DType.f64: nbt.float64, DType.i32: nbt.int32,
              DType.i64: nbt.int64, DType.u32: nbt.uint32, DType.bool: nbt.boolean}
    return nbt.void(*[nbt.Array(scalar[d], 1, "C") for d in dtypes])


def load_source(src: KernelSource, simulator: bool):
    """Execute a kernel module's text; returns its Python kernel function. The text is
    registered with ``linecache`` so tracebacks (and numba's error messages) show it."""
    filename = f"<graphc-cuda {src.fn_name}>"
    linecache.cache[filename] = (len(src.text), None, src.text.splitlines(True), filename)
    ns = kernel_namespace(simulator)
    exec(compile(src.text, filename, "exec"), ns)    # noqa: S102 (our own generated code)
    return ns[src.fn_name]


def compile_source(src: KernelSource, simulator: bool) -> CompiledCode:
    key = (src.text, simulator)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _STATS["hits"] += 1
            return hit
    from numba import cuda
    pyfunc = load_source(src, simulator)
    sig = numba_signature(src.arg_dtypes)
    code = CompiledCode(pyfunc, sig, cuda.jit(sig)(pyfunc))
    with _LOCK:
        _CACHE.setdefault(key, code)
        _STATS["compiled"] += 1
        return _CACHE[key]


def cache_stats() -> dict:
    """How many kernel texts were compiled in this process and how many were reused."""
    with _LOCK:
        return dict(_STATS, entries=len(_CACHE))

# ----------------------------------------------------------------------------- program


class Launch:
    """One kernel of a program, ready to launch: ``launch(device_arrays)``."""

    def __init__(self, source: KernelSource, code: CompiledCode | None, simulator: bool):
        self.source, self.code, self.simulator = source, code, simulator
        self._direct = None         # the compiled kernel's own launch, once it has worked
        self._try_direct = not simulator

    @property
    def name(self):
        return self.source.name

    @property
    def args(self):
        return self.source.args

    def launch(self, arrays) -> None:
        s = self.source
        if self._direct is not None:
            self._direct(arrays, s.grid, s.block, 0, 0)
            return
        if self._try_direct:
            # The kernel was compiled for exactly one signature: launching its compiled
            # overload skips the dispatcher's per-argument typing (tens of microseconds per
            # launch). A numba without that internal API falls back for good.
            self._try_direct = False
            try:
                k = self.code.kernel.overloads[tuple(self.code.signature.args)]
                k.launch(list(arrays), s.grid, s.block, 0, 0)
                self._direct = k.launch
                return
            except Exception:    # noqa: BLE001 (any failure: use the public path)
                self._direct = None
        self.code.kernel[s.grid, s.block](*arrays)


class CudaProgram:
    """A ``Program`` rendered (and, unless ``compile=False``, compiled) for the GPU."""

    def __init__(self, program: Program, cfg: CudaConfig | None = None, compile: bool = True):
        self.program = program
        self.config = cfg or default_config()
        sources = render_program(program, self.config)
        sim = self.config.simulator
        self.launches = [Launch(s, compile_source(s, sim) if compile else None, sim)
                         for s in sources]

    @property
    def sources(self) -> list[KernelSource]:
        return [ln.source for ln in self.launches]

    def launch_plan(self) -> str:
        return launch_plan(self.program, self.sources, self.config)


def _dim(t) -> str:
    return "(" + ",".join(str(int(v)) for v in t) + ")"


def launch_plan(program: Program, sources: list[KernelSource], cfg: CudaConfig) -> str:
    """One line per kernel: name, generated function, grid, block, static shared memory,
    the buffers it touches and its schedule."""
    mode = "simulator" if cfg.simulator else f"gpu ({cfg.sm_count} SMs)"
    lines = [f"launch plan @{program.name}: {len(sources)} kernels, {mode}"]
    w = max((len(s.name) for s in sources), default=4)
    for s in sources:
        args = ",".join(f"b{b}" for b in s.args)
        lines.append(f"  {s.name:<{w}}  {s.fn_name:<30}  grid {_dim(s.grid):<13} "
                     f"block {_dim(s.block):<11} shared {s.shared_bytes:>6} B  "
                     f"args {args}  | {s.schedule}")
    return "\n".join(lines) + "\n"
