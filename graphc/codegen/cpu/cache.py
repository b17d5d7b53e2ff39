"""The cpu target's compile cache: machine code of step modules and GEMM modules, in
process and on disk, so that compiling the same step again — in this process or in a new
one — skips LLVM (and, for steps, the Python rendering of the LLVM module too).

Every module is compiled to an ELF object (``jit.compile_object``) and loaded into MCJIT
with ``ExecutionEngine.add_object_file`` — on a miss as on a hit, so a cached object runs
exactly the machine code a fresh compile runs. A step's module is split into parts
(split.py: one object each, loaded into one engine), and the parts and the step's missing
GEMMs compile at once on threads (``compile_step``). Step modules call the GEMMs (and the
thread pool) by symbol name, so a step's GEMMs are loaded and registered before the step.

Key (sha256): what decides the machine code — the printed optimized graph (or the GEMM's
spec), the rendering options, a digest of graphc's codegen sources (a changed code
generator must not reuse old objects; the version number alone does not change between
commits), graphc/llvmlite/LLVM versions, the host triple, CPU name and feature string.
Location: ``$GRAPHC_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphc``, else ``~/.cache/graphc``;
``GRAPHC_CACHE_DIR=off`` (or ``0``, ``none``, ``false``, empty) disables the disk cache.
Entries are written atomically (temp file + ``os.replace``) and carry a sha256 of their
payload: a truncated or corrupted entry is counted, ignored and rewritten, never fatal.
Entries are pickles: trust the cache directory as much as your own code (as numba does).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

from graphc.codegen.cpu import jit

_MAGIC = b"GRAPHC-OBJ1\n"
_OFF = frozenset({"off", "0", "none", "false", "no", "disable", "disabled", ""})

#: counters since process start (tests and ``--verbose`` tools read them)
STATS = {"memory_hits": 0, "disk_hits": 0, "disk_misses": 0, "disk_writes": 0,
         "corrupt": 0, "write_errors": 0}
_LOCK = threading.Lock()


def cache_dir() -> Path | None:
    """The disk cache directory, or None when disabled (see the module docstring)."""
    env = os.environ.get("GRAPHC_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in _OFF else Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "graphc"


@lru_cache(maxsize=None)
def _source_digest() -> str:
    """sha256 of the code generator's own sources (graphc/codegen, graphc/codegen/cpu)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for d in (root, root / "cpu"):
        for p in sorted(d.glob("*.py")):
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@lru_cache(maxsize=None)
def _environment() -> str:
    import llvmlite
    import llvmlite.binding as llvm

    import graphc
    jit.initialize()
    tm = jit.target_machine()
    return "\n".join([
        f"graphc {graphc.__version__} codegen {_source_digest()}",
        f"llvmlite {llvmlite.__version__} llvm {'.'.join(map(str, llvm.llvm_version_info))}",
        f"python {sys.version_info[:2]}",
        f"triple {tm.triple}", f"cpu {llvm.get_host_cpu_name()}",
        f"features {llvm.get_host_cpu_features().flatten()}",
    ])


def make_key(kind: str, *parts: str) -> str:
    h = hashlib.sha256()
    for s in (kind, _environment(), *parts):
        b = s.encode()
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()

# ----------------------------------------------------------------------------- disk


def _path(key: str) -> Path | None:
    d = cache_dir()
    return None if d is None else d / key[:2] / f"{key}.gco"


def disk_load(key: str):
    """The cached value of ``key``, or None (absent, disabled, or corrupt → None)."""
    p = _path(key)
    if p is None:
        return None
    try:
        raw = p.read_bytes()
    except OSError:
        STATS["disk_misses"] += 1
        return None
    try:
        if not raw.startswith(_MAGIC):
            raise ValueError("bad magic")
        digest, payload = raw[len(_MAGIC):len(_MAGIC) + 32], raw[len(_MAGIC) + 32:]
        if hashlib.sha256(payload).digest() != digest:
            raise ValueError("checksum mismatch")
        value = pickle.loads(payload)
        if not isinstance(value, dict) or value.get("key") != key:
            raise ValueError("wrong entry")
    except Exception:           # any damage: recompile (and overwrite it)
        STATS["corrupt"] += 1
        return None
    STATS["disk_hits"] += 1
    return value


def disk_store(key: str, value: dict) -> bool:
    """Write ``value`` atomically; failures (read-only dir, full disk) are not errors."""
    p = _path(key)
    if p is None:
        return False
    try:
        payload = pickle.dumps(dict(value, key=key), protocol=pickle.HIGHEST_PROTOCOL)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=".gco")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC + hashlib.sha256(payload).digest() + payload)
            os.replace(tmp, p)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except Exception:
        STATS["write_errors"] += 1
        return False
    STATS["disk_writes"] += 1
    return True

# ----------------------------------------------------------------------------- objects


def compile_object(module, opt_level: int = 3) -> tuple[bytes, object, dict]:
    """``llvmlite.ir`` module → (ELF object bytes, its ModuleRef, timings)."""
    return jit.compile_object(module, opt_level, keep_module=True)


class ObjectModule:
    """Machine code loaded from an object file — or several, the parts of one split module
    (split.py), which resolve each other's symbols — into its own MCJIT engine; the same
    ``address``/``cfunc``/``timings`` face as ``jit.JitModule``. Addresses are valid while
    this object lives (ctypes wrappers keep it alive)."""

    def __init__(self, obj, timings: dict | None = None, module_ref=None):
        import llvmlite.binding as llvm
        t0 = time.perf_counter()
        jit.initialize()
        with jit._LOCK:
            # The engine owns (and frees) its TargetMachine: a private one, as JitModule.
            tm = jit._new_target_machine(None, None, 3)
            empty = llvm.parse_assembly("")
            empty.triple = tm.triple
            self._engine = llvm.create_mcjit_compiler(empty, tm)
            objs = [obj] if isinstance(obj, bytes) else list(obj)
            for part in objs:
                self._engine.add_object_file(llvm.ObjectFileRef.from_data(part))
            self._engine.finalize_object()
        self._module = module_ref
        self.parts = len(objs)
        self._addresses: dict = {}
        self._cfuncs: dict = {}
        self.timings = dict(timings or {"parse_verify": 0.0, "optimize": 0.0, "codegen": 0.0,
                                        "total": 0.0})
        self.timings["load"] = time.perf_counter() - t0

    @property
    def llvm_ir(self) -> str | None:
        return None if self._module is None else str(self._module)

    def address(self, name: str) -> int:
        addr = self._addresses.get(name)
        if addr is None:
            with jit._LOCK:
                addr = self._engine.get_function_address(name)
            if not addr:
                raise KeyError(f"no function {name!r} in the loaded object")
            self._addresses[name] = addr
        return addr

    def cfunc(self, name: str, restype, *argtypes):
        import ctypes
        key = (name, restype, argtypes)
        fn = self._cfuncs.get(key)
        if fn is None:
            fn = ctypes.CFUNCTYPE(restype, *argtypes)(self.address(name))
            fn._graphc_owner = self
            self._cfuncs[key] = fn
        return fn

# ----------------------------------------------------------------------------- GEMMs


def gemm_disk_key(spec, threads: int) -> str:
    """The disk key of a GEMM variant. ``spec.key`` names everything that changes its
    machine code (it is also templates' in-process key); the config is spelled out too."""
    from graphc.codegen.cpu import templates
    return make_key("gemm", templates.gemm_name(spec, threads), repr(spec.cfg),
                    str(templates.GEMM_OPT_LEVEL))


def _install_gemm(key, name, om) -> None:
    from graphc.codegen.cpu import templates
    jit.register_symbol(name, om.address(name))
    templates._GEMMS[key] = (name, om)


def ensure_gemm(spec, threads: int) -> tuple:
    """``ensure_gemms`` for one GEMM variant: its reference (see there)."""
    return ensure_gemms([(spec, threads)])[0][0]


def ensure_gemms(gemms, extra=()) -> tuple[list, list]:
    """Make templates' GEMM variants ``gemms`` [(spec, threads)] available under their
    symbols, in templates' process-wide table — from this process, the disk cache, or
    compiled and stored (the one place GEMM modules are built) — and compile the modules
    of ``extra`` [(llvmlite.ir module, opt level)] too: all the LLVM work at once, on
    ``jit.compile_objects``' threads (a step's own module does not need its GEMMs until it
    is loaded). Returns (the references a cached step keeps to its GEMMs, one per entry
    of ``gemms``: (symbol, in-process key, disk key); [(object bytes, timings)] of
    ``extra``). Specs themselves may hold callbacks and are not stored.

    Two Python threads missing the same GEMM at once may both compile it; the first to
    finish installs it (same machine code either way)."""
    from graphc.codegen.cpu import parallel, templates
    parallel.ensure_runtime_symbols()
    refs, todo = [], {}
    for spec, threads in gemms:
        ref = (templates.gemm_name(spec, threads), (spec.key, threads),
               gemm_disk_key(spec, threads))
        refs.append(ref)
        if ref[1] not in todo and not load_gemm(ref):
            todo[ref[1]] = (ref, spec, threads)
    todo = list(todo.values())
    extra = list(extra)

    def jobs():
        # The ready modules first, so that LLVM starts while Python builds the GEMMs'.
        yield from extra
        for (name, _, _), spec, threads in todo:
            module = jit.ir_module(name)
            parallel.build_parallel_gemm(module, name, spec, max_threads=threads)
            yield module, templates.GEMM_OPT_LEVEL

    compiled = jit.compile_objects(jobs())
    with templates._GEMM_LOCK:
        for ((name, key, dkey), _, _), (obj, t) in zip(todo, compiled[len(extra):]):
            disk_store(dkey, {"object": obj})
            if key not in templates._GEMMS:
                _install_gemm(key, name, ObjectModule(obj, t))
    return refs, compiled[:len(extra)]


def compile_step(pmod) -> tuple[list, list, dict]:
    """Machine code of a step: its module (``program.ProgramModule``) split into parts
    (split.py) and compiled together with the GEMMs it calls (``ensure_gemms``). Returns
    (the GEMM references, the parts' objects for ``ObjectModule``, LLVM timings of the
    parts summed over threads)."""
    from graphc.codegen.cpu import split
    parts = split.split_module(pmod.module, pmod.entry)
    refs, compiled = ensure_gemms(pmod.gemms, [(text, 3) for text in parts])
    timings = {k: sum(t[k] for _, t in compiled) for k in compiled[0][1]}
    return refs, [obj for obj, _ in compiled], timings


def load_gemm(ref) -> bool:
    """Install a GEMM a cached step calls, from this process or the disk cache; False if
    it is in neither, or the entry does not load (it must then be compiled afresh)."""
    from graphc.codegen.cpu import parallel, templates
    name, key, dkey = ref
    with templates._GEMM_LOCK:
        if key in templates._GEMMS:
            return True
        parallel.ensure_runtime_symbols()
        hit = disk_load(dkey)
        if hit is None:
            return False
        try:
            _install_gemm(key, name, ObjectModule(hit["object"]))
        except Exception:       # a damaged object: recompile (and overwrite it)
            STATS["corrupt"] += 1
            return False
        return True

# ----------------------------------------------------------------------------- steps
# In-process: key -> (metadata, ObjectModule). Code is shared; every CpuStep gets its own
# memory. Bounded, as a long session compiles many shapes.
_MEM_SIZE = 64
_memory: "OrderedDict[str, tuple]" = OrderedDict()


def memory_get(key: str):
    with _LOCK:
        hit = _memory.get(key)
        if hit is not None:
            _memory.move_to_end(key)
            STATS["memory_hits"] += 1
        return hit


def memory_put(key: str, value) -> None:
    with _LOCK:
        _memory[key] = value
        while len(_memory) > _MEM_SIZE:
            _memory.popitem(last=False)


def clear_memory() -> None:
    """Forget the in-process step cache (tests; GEMM modules stay loaded)."""
    with _LOCK:
        _memory.clear()
