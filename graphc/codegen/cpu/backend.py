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
import threading
import time

import numpy as np

from graphc.errors import ShapeError
from graphc.runtime.backends import register_backend

_ALIGN = 64


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
        self._arena, base = _aligned_block(off)
        self.arena_bytes = off
        out_off, oo = {}, 0
        for bid in program.outputs:
            out_off[bid] = oo
            oo += _align(max(bufs[bid].nbytes, 1))
        self._out_block, obase = _aligned_block(oo)
        self._table = (ctypes.c_void_p * pmod.nslots)()
        arena_addr = self._arena.__array_interface__["data"][0] + base
        for bid, o in temp_off.items():
            self._table[bid] = arena_addr + o
        self._table[pmod.workspace_slot] = arena_addr + ws_off
        self.outputs = []
        for bid in program.outputs:
            b = bufs[bid]
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
        self._bound = [None] * len(self._slots)     # the array objects bound last call
        self._keep = [None] * len(self._slots)      # what the table points into
        self._fn = jm.cfunc(pmod.entry, None, ctypes.c_void_p)
        self._table_addr = ctypes.addressof(self._table)
        self._lock = threading.Lock()

    # -- calling ------------------------------------------------------------------------
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
        if lo <= ptr < hi:
            # An array the previous call returned, fed back in: the step will overwrite it
            # while reading it, so it reads a private copy.
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
            bound = self._bound
            i = 0
            for a in inputs:
                if a is not bound[i]:
                    self._bind(i, a)
                i += 1
            for a in params:
                if a is not bound[i]:
                    self._bind(i, a)
                i += 1
            self._fn(self._table_addr)
        return list(self.outputs)

    # -- introspection ------------------------------------------------------------------
    @property
    def llvm_ir(self) -> str:
        """The optimized LLVM IR of the step module."""
        return self.jit.llvm_ir

    def memory_report(self) -> dict:
        temps = sum(b.nbytes for b in self.module_info.buffers if b.kind == "temp")
        return {"arena_bytes": self.arena_bytes, "temp_bytes_unplanned": temps,
                "workspace_bytes": self.module_info.workspace_bytes}


class CpuBackend:
    """LLVM code for the host CPU (see the module docstring)."""

    name = "cpu"

    def is_available(self) -> bool:
        from graphc.codegen.cpu import is_available
        return is_available()

    def prepare(self, graph):
        from graphc.passes.pipeline import optimize_graph, verify_graph
        return verify_graph(optimize_graph(graph))

    def compile(self, graph) -> CpuStep:
        from graphc.codegen.cpu import jit, templates
        from graphc.codegen.cpu.program import build_program_module
        from graphc.codegen.lowering import lower_graph
        t0 = time.perf_counter()
        g = self.prepare(graph)
        t1 = time.perf_counter()
        program = lower_graph(g)
        t2 = time.perf_counter()
        gemm0 = templates.gemm_compile_seconds()
        pmod = build_program_module(program)
        t3 = time.perf_counter()
        jm = jit.JitModule(pmod.module)
        t4 = time.perf_counter()
        timings = {"passes": t1 - t0, "lowering": t2 - t1,
                   "ir_build": t3 - t2 - (templates.gemm_compile_seconds() - gemm0),
                   "gemm_llvm": templates.gemm_compile_seconds() - gemm0,
                   "llvm_optimize": jm.timings["optimize"], "llvm_codegen": jm.timings["codegen"],
                   "llvm_parse": jm.timings["parse_verify"], "total": t4 - t0}
        return CpuStep(g, program, pmod, jm, timings)


register_backend("cpu", CpuBackend)
