"""The ``cpu`` target: a step graph → one JIT-compiled native function and a callable that
runs it with ONE ctypes call per step.

``CpuBackend.compile(graph)`` = optimize_graph (decompose + simplify) → verify →
``lower_graph`` (kernel form) → program module (program.py) → O3 + JIT (jit.py). The
returned ``CpuStep`` owns a persistent arena (one 64-byte aligned byte array; every temp
buffer and the template workspace at a fixed offset — bump allocation for now, a
liveness-based planner later) and preallocated output arrays. Per call it only rebinds the
pointer-table slots of input/param arrays that are not the very objects of the last call,
then calls the entry (ctypes releases the GIL for the duration).

The output arrays are reused: a call overwrites the arrays the previous call returned (the
runtime copies what it keeps: state into the model's variables, logs into floats).
"""
from __future__ import annotations

import ctypes
import hashlib
import threading
import time
from collections import OrderedDict

import numpy as np

from graphc.errors import ShapeError
from graphc.runtime.backends import register_backend

_ALIGN = 64
COPY_INPUT_BYTES = 16384


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _aligned_block(nbytes: int) -> tuple[np.ndarray, int]:
    """A byte array with at least ``nbytes`` usable from a 64-byte aligned address."""
    raw = np.zeros(nbytes + _ALIGN, np.uint8)
    addr = raw.__array_interface__["data"][0]
    return raw, (-addr) % _ALIGN


class CpuStep:
    """A compiled step: ``step(inputs, params) -> outputs`` (see the module docstring)."""

    def __init__(self, graph, program, pmod, jm, timings):
        self.graph, self.program, self.module_info, self.jit = graph, program, pmod, jm
        self.timings = timings
        bufs = pmod.buffers
        # -- memory: temps (+ workspace) in one arena, outputs in one block ---------------
        temp_off, off = {}, 0
        for b in bufs:
            if b.kind == "temp":
                temp_off[b.id] = off
                off += _align(max(b.nbytes, 1))
        ws_off = off
        off += _align(max(pmod.workspace_bytes, 1))
        # Small inputs are copied into buffers of their own (cheaper than rebinding a new
        # array's pointer: ~0.3 us vs ~1.7 us per call); big ones are read in place.
        copy_off = {}
        for i, bid in enumerate(program.inputs):
            if bufs[bid].nbytes <= COPY_INPUT_BYTES:
                copy_off[i] = off
                off += _align(max(bufs[bid].nbytes, 1))
        self._arena, base = _aligned_block(off)
        self.arena_bytes = off
        out_off, oo = {}, 0
        for bid in program.outputs:
            if bid in pmod.aliases:
                continue
            out_off[bid] = oo
            oo += _align(max(bufs[bid].nbytes, 1))
        self._out_block, obase = _aligned_block(oo)
        self._table = (ctypes.c_void_p * pmod.nslots)()
        arena_addr = self._arena.__array_interface__["data"][0] + base
        for bid, o in temp_off.items():
            self._table[bid] = arena_addr + o
        self._table[pmod.workspace_slot] = arena_addr + ws_off
        self._copies = [None] * len(program.inputs)
        for i, o in copy_off.items():
            b = bufs[program.inputs[i]]
            start = base + o
            self._copies[i] = self._arena[start:start + b.nbytes].view(b.dtype.np).reshape(b.shape)
            self._table[b.id] = arena_addr + o
        self.outputs = []
        for bid in program.outputs:
            b = bufs[bid]
            if bid in pmod.aliases:
                self.outputs.append(None)       # the param array, filled in per call
                continue
            start = obase + out_off[bid]
            arr = self._out_block[start:start + b.nbytes].view(b.dtype.np).reshape(b.shape)
            self._table[bid] = arr.__array_interface__["data"][0] if b.nbytes else \
                self._out_block.__array_interface__["data"][0] + start
            self.outputs.append(arr)
        out_addr = self._out_block.__array_interface__["data"][0]
        self._out_range = (out_addr, out_addr + self._out_block.nbytes)
        # -- argument binding ---------------------------------------------------------
        self._slots = [(bid, bufs[bid].shape, bufs[bid].dtype.np, bufs[bid].name or f"#{i}")
                       for i, bid in enumerate(list(program.inputs) + list(program.params))]
        self._nin, self._nparam = len(program.inputs), len(program.params)
        slot_of = {bid: i for i, (bid, *_) in enumerate(self._slots)}
        self._alias = [(oi, slot_of[pmod.aliases[bid]])
                       for oi, bid in enumerate(program.outputs) if bid in pmod.aliases]
        self._inplace_slots = {si for _, si in self._alias}
        self._bound = [None] * len(self._slots)     # the array objects bound last call
        self._keep = [None] * len(self._slots)      # what the table points into
        self._fn = jm.cfunc(pmod.entry, None, ctypes.c_void_p)
        self._table_addr = ctypes.addressof(self._table)
        self._lock = threading.Lock()

    # -- calling ------------------------------------------------------------------------
    def _copy_in(self, i: int, a) -> None:
        _, shape, dt, name = self._slots[i]
        arr = np.asarray(a, dtype=dt)
        if arr.shape != shape:
            if arr.size == int(np.prod(shape)) and (arr.ndim == 0 or len(shape) == 0):
                arr = arr.reshape(shape)
            else:
                raise ShapeError(f"cpu step: input '{name}' expected shape {list(shape)}, "
                                 f"got {list(arr.shape)}")
        np.copyto(self._copies[i], arr)

    def _bind(self, i: int, a) -> None:
        bid, shape, dt, name = self._slots[i]
        arr = a if (type(a) is np.ndarray and a.dtype == dt and a.flags.c_contiguous) \
            else np.ascontiguousarray(a, dtype=dt)
        if arr.shape != shape:
            if arr.size == int(np.prod(shape)) and (arr.ndim == 0 or len(shape) == 0):
                arr = arr.reshape(shape)            # a scalar given as [x] or vice versa
            else:
                kind = "input" if i < self._nin else "param"
                raise ShapeError(f"cpu step: {kind} '{name}' expected shape {list(shape)}, "
                                 f"got {list(arr.shape)}")
        ptr = arr.__array_interface__["data"][0]
        lo, hi = self._out_range
        shared = i in self._inplace_slots and any(
            self._table[self._slots[j][0]] == ptr for j in self._inplace_slots if j != i)
        if lo <= ptr < hi or shared:
            # An array the previous call returned, fed back in (the step would overwrite
            # it while reading it), or one array passed as two params updated in place:
            # the step works on a private copy.
            arr = arr.copy()
            ptr = arr.__array_interface__["data"][0]
        self._table[bid] = ptr
        self._keep[i] = arr
        self._bound[i] = a if arr is a else None

    def __call__(self, inputs, params=()):
        if len(inputs) != self._nin or len(params) != self._nparam:
            raise ShapeError(f"cpu step: expected {self._nin} input(s) and {self._nparam} "
                             f"param(s), got {len(inputs)} and {len(params)}")
        with self._lock:
            bound, copies = self._bound, self._copies
            i = 0
            for a in inputs:
                v = copies[i]
                if v is not None:
                    if type(a) is np.ndarray and a.shape == v.shape:
                        v[...] = a          # casts like astype; ~0.1 us for small arrays
                    else:
                        self._copy_in(i, a)
                elif a is not bound[i]:
                    self._bind(i, a)
                i += 1
            for a in params:
                if a is not bound[i]:
                    self._bind(i, a)
                i += 1
            self._fn(self._table_addr)
            res = list(self.outputs)
            for oi, si in self._alias:
                res[oi] = self._keep[si]
        return res

    # -- introspection ------------------------------------------------------------------
    @property
    def llvm_ir(self) -> str:
        """The optimized LLVM IR of the step module."""
        return self.jit.llvm_ir

    def memory_report(self) -> dict:
        temps = sum(b.nbytes for b in self.module_info.buffers if b.kind == "temp")
        return {"arena_bytes": self.arena_bytes, "temp_bytes_unplanned": temps,
                "workspace_bytes": self.module_info.workspace_bytes}


# In-process cache of JIT-compiled step modules, keyed by the module's IR text (which
# names the host triple and embeds every constant) and the host CPU: compiling the same
# step again (a second Executable of the same model, test and train steps rebuilt after
# recompiling a model) skips LLVM. Code is shared; every CpuStep gets its own memory.
_CACHE_SIZE = 32
_cache: "OrderedDict[tuple, object]" = OrderedDict()
_cache_lock = threading.Lock()


def _jit_cached(text: str):
    from graphc.codegen.cpu import jit
    key = (hashlib.sha256(text.encode()).hexdigest(), jit.host_features())
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit, True
    jm = jit.JitModule(text)
    with _cache_lock:
        _cache[key] = jm
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return jm, False


class CpuBackend:
    """LLVM code for the host CPU (see the module docstring)."""

    name = "cpu"
    #: the Executable may ask train steps to write new state straight into the params
    supports_inplace_state = True

    def is_available(self) -> bool:
        from graphc.codegen.cpu import is_available
        return is_available()

    def prepare(self, graph):
        from graphc.passes.pipeline import optimize_graph, verify_graph
        return verify_graph(optimize_graph(graph))

    def compile(self, graph, *, inplace_state: bool = False) -> CpuStep:
        """``inplace_state``: an output named like a param (the train graph's new weights
        and optimizer slots) is written straight into the param array passed in, where
        legal, and returned as that very array — no new buffer, no copy back. The caller's
        param arrays are then updated by each call (what ``Executable.train_step`` wants;
        off by default because ``fn(inputs, params)`` otherwise leaves its inputs alone)."""
        from graphc.codegen.cpu import templates
        from graphc.codegen.cpu.program import build_program_module
        from graphc.codegen.lowering import lower_graph
        t0 = time.perf_counter()
        g = self.prepare(graph)
        t1 = time.perf_counter()
        program = lower_graph(g)
        t2 = time.perf_counter()
        gemm0 = templates.gemm_compile_seconds()
        requests = {}
        if inplace_state:
            by_name = {program.buffers[b].name: b for b in program.params}
            for ob in program.outputs:
                pb = by_name.get(program.buffers[ob].name)
                if pb is not None and program.buffers[ob].kind == "output":
                    requests[ob] = pb
        pmod = build_program_module(program, inplace=requests)
        text = str(pmod.module)
        pmod.ensure_symbols()
        t3 = time.perf_counter()
        jm, hit = _jit_cached(text)
        t4 = time.perf_counter()
        llvm = {"llvm_optimize": 0.0, "llvm_codegen": 0.0, "llvm_parse": 0.0} if hit else \
            {"llvm_optimize": jm.timings["optimize"], "llvm_codegen": jm.timings["codegen"],
             "llvm_parse": jm.timings["parse_verify"]}
        timings = {"passes": t1 - t0, "lowering": t2 - t1,
                   "ir_build": t3 - t2 - (templates.gemm_compile_seconds() - gemm0),
                   "gemm_llvm": templates.gemm_compile_seconds() - gemm0, **llvm,
                   "cache_hit": hit, "total": t4 - t0}
        return CpuStep(g, program, pmod, jm, timings)


register_backend("cpu", CpuBackend)
