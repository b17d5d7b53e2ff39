"""The one place that owns LLVM: initialization, the host target machine, the O3 pipeline,
JIT compilation (MCJIT) and AOT object emission.

Every other CPU-codegen module builds ``llvmlite.ir`` modules and hands them here; nothing
else calls ``llvmlite.binding`` directly, so the llvmlite-0.50 quirks (no ``initialize()``,
new pass manager only, SLP off by default, host features needed for AVX-512) live in one file.

JIT engine choice (measured on the 2-core Zen 4 dev VM, llvmlite 0.50 / LLVM 22, median of
3-5, ``python benchmarks/bench_gemm.py --only compile``): both engines get the same O3 module
and the same TargetMachine, so they produce the same machine code; compile times were
  small loop, 1 function:      MCJIT 15.5 ms   LLJIT 16.6 ms  (of which O3 ~6 ms)
  GEMM (nn), ~1,300 IR lines:  MCJIT 298 ms    LLJIT 323 ms   (O3 ~155 ms, codegen ~130 ms)
  GEMM (nt + bias/relu):       MCJIT 480 ms    LLJIT 503 ms
MCJIT takes the optimized ``ModuleRef`` as is, while llvmlite's LLJIT API only accepts IR
*text*, which must be printed and re-parsed (the difference above). MCJIT it is;
``engine="lljit"`` stays available. Caveat handled here: MCJIT takes ownership of its
TargetMachine (and frees it with the engine), so every engine gets a fresh one.

Parallel compilation (``compile_object``/``compile_objects``): llvmlite serializes *every*
call into LLVM on one process-wide lock (``llvmlite.binding.ffi.lib``), so plain threads
would take turns. Each module is therefore parsed into an ``LLVMContext`` of its own and
compiled with a TargetMachine and PassBuilder of its own (LLVM's rule for concurrent
compilation: nothing mutable shared), and the four long calls — parse, verify, the pass
pipeline, codegen — go to llvmlite's ctypes functions directly, which skips that lock and
releases the GIL. Short calls (setting the triple, building the pipeline) keep the lock.
The object bytes are the same as a serial compile's (tests/codegen/test_parallel_compile.py
checks, over repeated rounds on more threads than cores).
"""
from __future__ import annotations

import ctypes
import os
import threading
import time
from functools import lru_cache
from typing import Sequence

import llvmlite.binding as llvm
from llvmlite import ir
from llvmlite.binding import ffi

__all__ = [
    "initialize", "host_target_machine", "target_machine", "host_features",
    "vector_width", "parse", "optimize", "optimized_ir", "emit_object", "emit_assembly",
    "JitModule", "register_symbol", "ir_module", "compile_object", "compile_objects",
    "compile_threads",
]

# LLVM's global context and pass pipelines are not safe to drive from two Python threads
# at once; compilation is rare (once per executable), so one process-wide lock is enough.
_LOCK = threading.RLock()
_initialized = False
_LIBC_SYMBOLS = ("pthread_create", "pthread_join", "pthread_self", "sched_yield", "syscall",
                 "malloc", "free", "aligned_alloc", "memset", "memcpy", "memmove",
                 "sysconf", "nanosleep", "getpid")


def initialize() -> None:
    """Initialize the native target once (llvmlite 0.50: ``llvm.initialize()`` raises)."""
    global _initialized
    if _initialized:
        return
    with _LOCK:
        if not _initialized:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            llvm.initialize_native_asmparser()
            # Lets JIT'd code call libc by name, whichever engine resolves the symbols.
            libc = ctypes.CDLL(None)
            for name in _LIBC_SYMBOLS:
                fn = getattr(libc, name, None)
                if fn is not None:
                    llvm.add_symbol(name, ctypes.cast(fn, ctypes.c_void_p).value)
            _initialized = True


_SYMBOLS: dict[str, int] = {}


def register_symbol(name: str, address: int) -> None:
    """Make ``name`` resolve to ``address`` in every module JIT-compiled from now on (e.g.
    the process-wide thread pool of parallel.py)."""
    initialize()
    llvm.add_symbol(name, address)
    _SYMBOLS[name] = address


def _new_target_machine(cpu: str | None, features: str | None, opt: int) -> llvm.TargetMachine:
    initialize()
    if cpu is None:
        cpu = llvm.get_host_cpu_name()
    if features is None:
        # Without the explicit feature string LLVM would not use AVX-512 on the host.
        features = llvm.get_host_cpu_features().flatten() if cpu == llvm.get_host_cpu_name() else ""
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=cpu, features=features, opt=opt,
                                        reloc="pic", codemodel="default")


@lru_cache(maxsize=None)
def target_machine(cpu: str | None = None, features: str | None = None,
                   opt: int = 3) -> llvm.TargetMachine:
    """A shared TargetMachine for ``cpu``/``features`` (default: the real host), used for
    optimization and object emission. PIC relocation so the same machine code can be
    written to an object for a shared library (AOT); the JIT does not mind PIC.

    Never hand this one to an execution engine: MCJIT takes ownership of its
    TargetMachine and frees it with the engine (JitModule makes a fresh one each time)."""
    return _new_target_machine(cpu, features, opt)


def host_target_machine() -> llvm.TargetMachine:
    return target_machine()


@lru_cache(maxsize=None)
def host_features() -> frozenset[str]:
    """The CPU features the host has (names as LLVM spells them: 'avx2', 'avx512f', ...)."""
    initialize()
    return frozenset(k for k, v in llvm.get_host_cpu_features().items() if v)


def vector_width(features: frozenset[str] | None = None) -> int:
    """float32 lanes of the widest vector unit worth using: 16 with AVX-512F, else 8."""
    feats = host_features() if features is None else features
    return 16 if "avx512f" in feats else 8


def _as_ir_text(module) -> str:
    return module if isinstance(module, str) else str(module)


def parse(module, *, verify: bool = True) -> llvm.ModuleRef:
    """``llvmlite.ir.Module`` or IR text → a verified ``ModuleRef`` (a fresh one each call)."""
    initialize()
    if isinstance(module, llvm.ModuleRef):
        return module
    with _LOCK:
        mod = llvm.parse_assembly(_as_ir_text(module))
        if verify:
            mod.verify()
    return mod


def optimize(module: llvm.ModuleRef, tm: llvm.TargetMachine | None = None,
             level: int = 3) -> llvm.ModuleRef:
    """Run the new-pass-manager pipeline at ``level`` on ``module`` in place, with loop AND
    SLP vectorization (SLP defaults to off in llvmlite 0.50). Returns ``module``."""
    tm = tm or host_target_machine()
    with _LOCK:
        mpm, pb = _pipeline(module, tm, level)
        mpm.run(module, pb)
    return module


def _pipeline(module: llvm.ModuleRef, tm: llvm.TargetMachine, level: int):
    """(module pass manager, pass builder) of the ``level`` pipeline for ``tm``, after
    giving ``module`` the target's triple and data layout."""
    # The module must carry the target's triple and data layout, or the vectorizers'
    # cost model sees a generic target and keeps 128-bit vectors.
    module.triple = tm.triple
    module.data_layout = str(tm.target_data)
    pto = llvm.create_pipeline_tuning_options(speed_level=level)
    pto.loop_vectorization = level >= 2
    pto.slp_vectorization = level >= 2
    pb = llvm.create_pass_builder(tm, pto)
    return pb.getModulePassManager(), pb


def optimized_ir(module, tm: llvm.TargetMachine | None = None) -> str:
    """The LLVM IR text of ``module`` after the O3 pipeline (for ``dump-ir --stage llvm``)."""
    return str(optimize(parse(module), tm))


def emit_object(module, tm: llvm.TargetMachine | None = None, *,
                already_optimized: bool = False) -> bytes:
    """ELF object bytes (PIC) of ``module`` for AOT: ``cc -shared -o lib.so obj.o``."""
    tm = tm or host_target_machine()
    mod = parse(module)
    if not already_optimized:
        optimize(mod, tm)
    with _LOCK:
        return tm.emit_object(mod)


def emit_assembly(module, tm: llvm.TargetMachine | None = None) -> str:
    """Assembly text after O3 (for inspecting the micro-kernel's inner loop)."""
    tm = tm or host_target_machine()
    mod = optimize(parse(module), tm)
    with _LOCK:
        return tm.emit_assembly(mod)


def _unlocked(name: str):
    """llvmlite's ctypes function ``name`` without llvmlite's process-wide lock (same
    argtypes and restype; ctypes releases the GIL during the call). Falls back to the
    locked wrapper if a later llvmlite stops exposing it: still correct, only serial."""
    fn = getattr(ffi.lib, name)
    return getattr(fn, "_cfn", fn)


class _PrivateContext(llvm.ContextRef):
    """An LLVMContext of one module's own; the module disposes it (``_PrivateModule``)."""

    def _dispose(self):
        pass


class _PrivateModule(llvm.ModuleRef):
    """A module in a ``_PrivateContext``: disposes the module, then the context. One
    finalizer for both, since the garbage collector finalizes a cycle's objects in any
    order, and a context disposed before its module crashes the module's disposal."""

    def __init__(self, ptr, context: _PrivateContext):
        super().__init__(ptr, context)
        self._context_ptr = context._ptr

    def _dispose(self):
        super()._dispose()
        ffi.lib.LLVMPY_ContextDispose(self._context_ptr)


def compile_object(module, opt_level: int = 3, *, cpu: str | None = None,
                   features: str | None = None, keep_module: bool = False):
    """``llvmlite.ir`` module or IR text → (ELF object bytes, ModuleRef or None, timings):
    parse and verify, the ``opt_level`` pipeline (``optimize``), then codegen with the
    settings of ``target_machine(cpu, features)`` (PIC, O3 codegen).

    Safe to call from several threads at once, and they do run at once: the module lives
    in an LLVMContext of its own with a TargetMachine and PassBuilder of its own, and the
    long calls skip llvmlite's lock (module docstring). ``keep_module``: also return the
    ModuleRef (it holds codegen-prepared IR, and owns its context); else both are freed
    here."""
    text = _as_ir_text(module).encode()      # rendering is Python: under the GIL
    initialize()
    t0, c0 = time.perf_counter(), time.thread_time()
    tm = _new_target_machine(cpu, features, 3)
    ctx = _PrivateContext(ffi.lib.LLVMPY_ContextCreate())
    with ffi.OutputString() as err:
        ptr = _unlocked("LLVMPY_ParseAssembly")(ctx, ctypes.c_char_p(text), err)
        if not ptr:
            ffi.lib.LLVMPY_ContextDispose(ctx)
            raise RuntimeError(f"LLVM IR parsing error\n{err}")
    mod = _PrivateModule(ptr, ctx)
    try:
        with ffi.OutputString() as err:
            if _unlocked("LLVMPY_VerifyModule")(mod, err):
                raise RuntimeError(str(err))
        t1 = time.perf_counter()
        if opt_level:
            mpm, pb = _pipeline(mod, tm, opt_level)
            _unlocked("LLVMPY_RunNewModulePassManager")(mpm, mod, pb)
        else:
            mod.triple, mod.data_layout = tm.triple, str(tm.target_data)
        t2 = time.perf_counter()
        with ffi.OutputString() as err:
            buf = _unlocked("LLVMPY_TargetMachineEmitToMemory")(tm, mod, 1, err)
            if not buf:
                raise RuntimeError(str(err))
        try:
            obj = ctypes.string_at(ffi.lib.LLVMPY_GetBufferStart(buf),
                                   ffi.lib.LLVMPY_GetBufferSize(buf))
        finally:
            ffi.lib.LLVMPY_DisposeMemoryBuffer(buf)
        t3 = time.perf_counter()
    except BaseException:
        keep_module = False
        raise
    finally:
        if not keep_module:
            mod.close()             # and its context
    # Wall seconds per phase, and this thread's CPU seconds (the work, whatever the
    # other threads and processes are doing).
    timings = {"parse_verify": t1 - t0, "optimize": t2 - t1, "codegen": t3 - t2,
               "total": t3 - t0, "cpu": time.thread_time() - c0}
    return obj, (mod if keep_module else None), timings


def compile_threads() -> int:
    """Threads ``compile_objects`` uses: ``$GRAPHC_COMPILE_THREADS`` if set (1: serial),
    else the cores this process may run on."""
    env = os.environ.get("GRAPHC_COMPILE_THREADS", "").strip()
    if env.isdigit():
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _cost(text: str, level: int) -> float:
    """A rough estimate of LLVM's time on ``text`` at ``level``, for ordering only: per IR
    character, the O2/O3 pipeline took ~3x O1's (W1's GEMM and step modules)."""
    return len(text) * (3.0 if level >= 2 else 1.0)


def compile_objects(jobs, *, threads: int | None = None) -> list[tuple[bytes, dict]]:
    """Compile independent modules at once: ``jobs`` yields (module, opt_level); returns
    [(object bytes, timings)] in job order, the same bytes ``compile_object`` gives one by
    one. An error in any job is raised here, after the others finished.

    ``jobs`` is consumed on the calling thread while ``threads`` workers compile, so a
    generator that builds the next ``llvmlite.ir`` module (Python, under the GIL) overlaps
    with LLVM compiling the earlier ones (native, GIL released). Each free worker takes
    the biggest pending module (``_cost``): the longest-first order evens out the finish."""
    n = compile_threads() if threads is None else max(1, threads)
    if n == 1:
        return [compile_object(m, level)[::2] for m, level in jobs]
    import heapq
    pending: list = []             # heap of (-cost, job index, text, level)
    results: dict = {}
    cv = threading.Condition()
    closed = False

    def worker():
        while True:
            with cv:
                while not pending and not closed:
                    cv.wait()
                if not pending:
                    return
                _, i, text, level = heapq.heappop(pending)
            try:
                results[i] = compile_object(text, level)[::2]
            except BaseException as e:     # noqa: BLE001 - re-raised on the caller's thread
                results[i] = e

    workers = [threading.Thread(target=worker, name=f"graphc-llvm-{k}", daemon=True)
               for k in range(n)]
    for w in workers:
        w.start()
    try:
        for i, (m, level) in enumerate(jobs):
            text = _as_ir_text(m)
            with cv:
                heapq.heappush(pending, (-_cost(text, level), i, text, level))
                cv.notify()
    finally:
        with cv:
            closed = True
            cv.notify_all()
        for w in workers:
            w.join()
    out = [results[i] for i in range(len(results))]
    for r in out:
        if isinstance(r, BaseException):
            raise r
    return out


class JitModule:
    """Verifies, optimizes (O3, loop+SLP vectorization) and JIT-compiles one module, and
    keeps the engine alive as long as this object lives: addresses and ctypes wrappers
    returned by it are only valid while it is referenced.

    ``cfunc`` returns ``ctypes.CFUNCTYPE`` wrappers, whose calls release the GIL (so two
    Python threads can run native kernels at once; ``PYFUNCTYPE`` would hold it).
    """

    def __init__(self, module, *, cpu: str | None = None, features: str | None = None,
                 opt_level: int = 3, engine: str = "mcjit",
                 exports: Sequence[str] | None = None):
        t0 = time.perf_counter()
        self.tm = target_machine(cpu, features)
        # The engine owns (and frees) its TargetMachine: give it a private one.
        engine_tm = _new_target_machine(cpu, features, 3)
        self.engine_kind = engine
        mod = parse(module)
        t1 = time.perf_counter()
        if opt_level:
            optimize(mod, self.tm, opt_level)
        t2 = time.perf_counter()
        self._module = mod
        self._cfuncs: dict = {}
        with _LOCK:
            if engine == "mcjit":
                self._engine = llvm.create_mcjit_compiler(mod, engine_tm)
                self._engine.finalize_object()
                self._addresses: dict[str, int] = {}
            elif engine == "lljit":
                names = list(exports) if exports is not None else [
                    f.name for f in mod.functions if not f.is_declaration
                    and f.linkage == llvm.Linkage.external]
                self._engine = llvm.create_lljit_compiler(engine_tm)
                self._tracker = self._lljit_builder(mod, names).link(
                    self._engine, f"graphc_{id(self)}")
                self._engine_tm = engine_tm
                self._addresses = {n: self._tracker[n] for n in names}
            else:
                raise ValueError(f"unknown JIT engine {engine!r}; use 'mcjit' or 'lljit'")
        t3 = time.perf_counter()
        # Wall-clock seconds of each phase, for reporting compile cost.
        self.timings = {"parse_verify": t1 - t0, "optimize": t2 - t1, "codegen": t3 - t2,
                        "total": t3 - t0}

    @staticmethod
    def _lljit_builder(mod, names):
        b = llvm.JITLibraryBuilder().add_ir(str(mod)).add_current_process()
        for sym, addr in _SYMBOLS.items():
            b = b.import_symbol(sym, addr)
        for n in names:
            b = b.export_symbol(n)
        return b

    @property
    def llvm_ir(self) -> str:
        """The optimized IR that was compiled."""
        return str(self._module)

    def address(self, name: str) -> int:
        if name not in self._addresses:
            if self.engine_kind != "mcjit":
                raise KeyError(name)
            addr = self._engine.get_function_address(name)
            if not addr:
                raise KeyError(f"no function {name!r} in the JIT module")
            self._addresses[name] = addr
        return self._addresses[name]

    def cfunc(self, name: str, restype, *argtypes):
        """A ``ctypes.CFUNCTYPE(restype, *argtypes)`` wrapper of function ``name`` (GIL
        released during the call). The wrapper keeps this module alive."""
        key = (name, restype, argtypes)
        fn = self._cfuncs.get(key)
        if fn is None:
            fn = ctypes.CFUNCTYPE(restype, *argtypes)(self.address(name))
            fn._graphc_owner = self  # the machine code lives as long as the wrapper
            self._cfuncs[key] = fn
        return fn


def ir_module(name: str = "graphc", tm: llvm.TargetMachine | None = None) -> ir.Module:
    """A fresh ``llvmlite.ir.Module`` carrying the target's triple and data layout."""
    tm = tm or host_target_machine()
    m = ir.Module(name=name)
    m.triple = tm.triple
    m.data_layout = str(tm.target_data)
    return m
