"""The ``cpu`` target: a step graph → one JIT-compiled native function and a callable that
runs it with ONE ctypes call per step.

``CpuBackend.compile(graph)`` = optimize_graph (decompose + simplify) → verify →
``lower_graph`` (kernel form) → program module (program.py) → O3 + JIT (jit.py). The
returned ``CpuStep`` owns a persistent arena (one 64-byte aligned byte array; every temp
buffer and the template workspace at the offset the liveness-based planner, memplan.py,
gives it) and preallocated output arrays; compiled code is cached in process and on disk
(cache.py). Per call it only rebinds the
pointer-table slots of input/param arrays that are not the very objects of the last call,
then calls the entry (ctypes releases the GIL for the duration).

The output arrays are reused: a call overwrites the arrays the previous call returned (the
runtime copies what it keeps: state into the model's variables, logs into floats).
"""
from __future__ import annotations

import ctypes
import threading
import time
from dataclasses import dataclass

import numpy as np

from graphc.codegen.kernel import Buffer
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


@dataclass
class StepMeta:
    """What a ``CpuStep`` needs besides the machine code — picklable, so a step loaded
    from the disk cache is rebuilt without rendering its LLVM module again."""
    entry: str
    buffers: list               # Buffer table (program buffers, workspace, template temps)
    workspace_slot: int
    workspace_bytes: int
    aliases: dict               # output buffer -> param buffer updated in place
    gemms: list                 # cache.ensure_gemm references of the GEMMs it calls
    threads: int
    stats: dict
    plan: object                # memplan.MemoryPlan

    @property
    def nslots(self) -> int:
        return len(self.buffers)

    @classmethod
    def of(cls, pmod, plan, gemm_refs) -> "StepMeta":
        # Constants are globals inside the object code: their data is not needed again.
        bufs = [Buffer(b.id, b.shape, b.dtype, b.kind, b.name) for b in pmod.buffers]
        stats = {k: v for k, v in pmod.stats.items() if k != "pieces"}
        return cls(pmod.entry, bufs, pmod.workspace_slot, pmod.workspace_bytes,
                   dict(pmod.aliases), list(gemm_refs), pmod.threads, stats, plan)


class CpuStep:
    """A compiled step: ``step(inputs, params) -> outputs`` (see the module docstring)."""

    def __init__(self, graph, program, meta: StepMeta, jm, timings):
        if not isinstance(meta, StepMeta):
            # A ProgramModule straight from build_program_module (tools, tests): plan it.
            from graphc.codegen.cpu import memplan
            meta = StepMeta.of(meta, memplan.plan_memory(meta), [])
        self.graph, self.program, self.module_info, self.jit = graph, program, meta, jm
        self.timings = timings
        self.plan = plan = meta.plan
        self._requests = {}
        bufs = meta.buffers
        # -- memory: temps and the template workspace at their planned offsets in one
        # arena (a temp no kernel touches gets no bytes: its slot points at the arena
        # start and is never dereferenced), outputs in one block ---------------------
        off = max(_align(plan.peak_bytes), _ALIGN)
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
            if bid in meta.aliases:
                continue
            out_off[bid] = oo
            oo += _align(max(bufs[bid].nbytes, 1))
        self._out_block, obase = _aligned_block(oo)
        self._table = (ctypes.c_void_p * meta.nslots)()
        arena_addr = self._arena.__array_interface__["data"][0] + base
        for b in bufs:
            if b.kind == "temp":
                self._table[b.id] = arena_addr + plan.offsets.get(b.id, 0)
        self._table[meta.workspace_slot] = arena_addr + plan.offsets.get(meta.workspace_slot, 0)
        self._copies = [None] * len(program.inputs)
        for i, o in copy_off.items():
            b = bufs[program.inputs[i]]
            start = base + o
            self._copies[i] = self._arena[start:start + b.nbytes].view(b.dtype.np).reshape(b.shape)
            self._table[b.id] = arena_addr + o
        self.outputs = []
        for bid in program.outputs:
            b = bufs[bid]
            if bid in meta.aliases:
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
        self._alias = [(oi, slot_of[meta.aliases[bid]])
                       for oi, bid in enumerate(program.outputs) if bid in meta.aliases]
        self._inplace_slots = {si for _, si in self._alias}
        self._bound = [None] * len(self._slots)     # the array objects bound last call
        self._rebinds = 0                           # table pointer changes so far
        self._keep = [None] * len(self._slots)      # what the table points into
        self._fn = jm.cfunc(meta.entry, None, ctypes.c_void_p)
        self._fn_addr = jm.address(meta.entry)
        self._epochs: dict = {}         # (gathered inputs, logs, state) -> epoch entry
        self._staging: dict = {}        # input index -> gather buffer (big inputs)
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
        self._rebinds += 1

    def _bind_args(self, inputs, params, first: int = 0) -> None:
        """Point the table at (or copy in) ``inputs`` (the step's inputs from index
        ``first`` on) and ``params``; call with the lock held."""
        bound, copies = self._bound, self._copies
        i = first
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

    def _results(self) -> list:
        res = list(self.outputs)
        for oi, si in self._alias:
            res[oi] = self._keep[si]
        return res

    def __call__(self, inputs, params=()):
        if len(inputs) != self._nin or len(params) != self._nparam:
            raise ShapeError(f"cpu step: expected {self._nin} input(s) and {self._nparam} "
                             f"param(s), got {len(inputs)} and {len(params)}")
        with self._lock:
            self._bind_args(inputs, params)
            self._fn(self._table_addr)
            return self._results()

    def bound_caller(self, params, shape, dtype, valid):
        """``run(x) -> [output copies] | None`` for a one-input step with ``params`` bound
        once, here: the lean path of batch-1 inference, where Python around the native call
        is a fifth of the latency, and runs cold (the call has just streamed the weights
        through the caches), so every operation on it counts. ``run`` takes an ``x`` of
        exactly ``shape`` and ``dtype`` while ``valid()`` holds and no other call has
        re-pointed the table; otherwise it returns None (the caller takes the full path).
        None instead of a caller when the step does not suit: more inputs, an input read
        in place (big), params updated in place, or a param copied privately per call."""
        if self._nin != 1 or self._copies[0] is None or self._alias:
            return None
        with self._lock:
            self._bind_args((), params, first=1)
            if any(self._bound[1 + j] is not p for j, p in enumerate(params)):
                return None
            rebinds = self._rebinds
        lock, dst, native, table = self._lock, self._copies[0], self._fn, self._table_addr
        outs = list(self.outputs)
        one = outs[0] if len(outs) == 1 else None
        ndarray = np.ndarray

        def run(x):
            if type(x) is ndarray and x.dtype is dtype and x.shape == shape and valid():
                with lock:
                    if self._rebinds == rebinds:
                        dst[...] = x
                        native(table)
                        return [one.copy()] if one is not None else [o.copy() for o in outs]
            return None
        return run

    # -- many steps in one call ---------------------------------------------------------
    def run_steps(self, sources, inputs, params, index, nsteps: int, *, nlog: int,
                  state=()):
        """``nsteps`` calls of this step in ONE native call (the epoch entry, epoch.py):
        step s reads rows ``index[s*B:(s+1)*B]`` of the full arrays ``sources`` as its
        first ``len(sources)`` inputs (B: this step's batch size) and ``inputs`` as the
        rest; after each step, every ``(output index, param index)`` pair in ``state`` is
        fed back: the output (the param's new value) is copied into the param's buffer
        unless the step already wrote it in place. ``nlog``: the first outputs are scalar
        logs, recorded per step.

        Returns (one array of shape (nsteps,) per log output, the last step's outputs as
        ``__call__`` returns them). The same arithmetic as ``nsteps`` calls with the
        gathered batches, and the same param updates."""
        ng = len(sources)
        if ng + len(inputs) != self._nin or len(params) != self._nparam:
            raise ShapeError(f"cpu step: expected {self._nin} input(s) and {self._nparam} "
                             f"param(s), got {ng + len(inputs)} and {len(params)}")
        B = self._slots[0][1][0] if ng else 0
        rows = None
        for g, src in enumerate(sources):
            _, shape, dt, name = self._slots[g]
            if not (type(src) is np.ndarray and src.dtype == dt and src.flags.c_contiguous
                    and src.shape[1:] == shape[1:] and shape[:1] == (B,)):
                raise ShapeError(f"cpu step: rows of '{name}' must come from a C-contiguous "
                                 f"{np.dtype(dt).name} array of shape (n, "
                                 f"{', '.join(map(str, shape[1:]))}); got {src.dtype.name} "
                                 f"{list(src.shape)}")
            rows = len(src) if rows is None else min(rows, len(src))
        index = np.ascontiguousarray(index, dtype=np.int64)
        nsteps = int(nsteps)
        if nsteps < 0 or index.size < nsteps * B:
            raise ShapeError(f"cpu step: {nsteps} steps of {B} rows need {nsteps * B} row "
                             f"indices, got {index.size}")
        used = index[:nsteps * B]
        if ng and used.size and (int(used.min()) < 0 or int(used.max()) >= rows):
            raise ShapeError(f"cpu step: row indices must lie in [0, {rows})")
        log_of = [self.outputs[k] for k in range(nlog)]
        if any(a is None or a.size != 1 for a in log_of):
            raise ShapeError("cpu step: log outputs must be scalars computed by the step")
        fn, spec = self._epoch_entry(ng, nlog, tuple(state))
        logs = np.zeros((nsteps, max(spec.log_row_bytes, 1)), np.uint8)
        src_table = (ctypes.c_void_p * max(ng, 1))(
            *[s.__array_interface__["data"][0] for s in sources])
        with self._lock:
            self._bind_args(inputs, params, first=ng)
            self._stage(ng)
            fn(self._fn_addr, self._table_addr, ctypes.addressof(src_table),
               used.__array_interface__["data"][0], nsteps,
               logs.__array_interface__["data"][0])
            res = self._results()
        cols, off = [], 0
        for a in log_of:
            cols.append(logs[:, off:off + a.nbytes].view(a.dtype).reshape(nsteps))
            off += a.nbytes
        return cols, res

    def _stage(self, ng: int) -> None:
        """Give each of the first ``ng`` inputs a buffer of its own for the epoch entry
        to gather rows into (small inputs already have one; a big one read in place from
        the caller's array gets a staging array). Lock held."""
        for i in range(ng):
            if self._copies[i] is not None:
                continue
            arr = self._staging.get(i)
            if arr is None:
                bid, shape, dt, _ = self._slots[i]
                raw, off = _aligned_block(int(np.prod(shape)) * np.dtype(dt).itemsize)
                arr = self._staging[i] = raw[off:off + raw.size - _ALIGN].view(dt) \
                    .reshape(shape)
            self._table[self._slots[i][0]] = arr.__array_interface__["data"][0]
            self._keep[i] = arr
            self._bound[i] = None           # the next __call__ binds its own array again

    def _epoch_entry(self, ng: int, nlog: int, state: tuple):
        """The compiled epoch entry for this step with ``ng`` gathered inputs, cached."""
        key = (ng, nlog, state)
        hit = self._epochs.get(key)
        if hit is None:
            from graphc.codegen.cpu.epoch import EpochSpec, load_epoch_entry
            bufs, outs = self.module_info.buffers, self.program.outputs
            aliased = {oi for oi, _ in self._alias}
            B = self._slots[0][1][0] if ng else 0
            row = [bufs[self._slots[i][0]].nbytes // max(B, 1) for i in range(ng)]
            spec = EpochSpec(
                batch=B,
                gathers=tuple((self._slots[i][0], row[i]) for i in range(ng)),
                logs=tuple((outs[k], bufs[outs[k]].nbytes) for k in range(nlog)),
                copies=tuple((self._slots[self._nin + pi][0], outs[oi], bufs[outs[oi]].nbytes)
                             for oi, pi in state if oi not in aliased))
            fn, module = load_epoch_entry(spec)
            hit = self._epochs[key] = (fn, spec)
        return hit

    # -- introspection ------------------------------------------------------------------
    @property
    def llvm_ir(self) -> str:
        """The optimized LLVM IR of the step module (re-rendered for a step whose machine
        code came from the disk cache)."""
        text = self.jit.llvm_ir
        if text is None:
            from graphc.codegen.cpu import jit
            from graphc.codegen.cpu.program import build_program_module
            pmod = build_program_module(self.program, threads=self.module_info.threads,
                                        inplace=self._requests)
            text = jit.optimized_ir(pmod.module)
        return text

    def memory_report(self) -> dict:
        """Bytes this step uses: the planned arena (temps + template workspace) against
        the unplanned sum of the same buffers, and the external buffers (inputs, params,
        outputs) the caller owns or this step returns."""
        meta, plan, program = self.module_info, self.plan, self.program
        bufs = meta.buffers
        ext = {"input": sum(bufs[b].nbytes for b in program.inputs),
               "param": sum(bufs[b].nbytes for b in program.params),
               "output": sum(bufs[b].nbytes for b in program.outputs
                             if b not in meta.aliases)}
        return {"peak_bytes": plan.peak_bytes,
                "unplanned_bytes": plan.unplanned_bytes,
                "temp_bytes_unplanned": sum(b.nbytes for b in bufs if b.kind == "temp"),
                "workspace_bytes": meta.workspace_bytes,
                "arena_bytes": self.arena_bytes,
                "input_copy_bytes": self.arena_bytes - max(_align(plan.peak_bytes), _ALIGN),
                "external_bytes": sum(ext.values()),
                "input_bytes": ext["input"], "param_bytes": ext["param"],
                "output_bytes": ext["output"],
                "inplace_outputs": len(meta.aliases),
                "planned_buffers": len(plan.offsets), "unused_temps": len(plan.unused)}


class CpuBackend:
    """LLVM code for the host CPU (see the module docstring)."""

    name = "cpu"
    #: the Executable may ask train steps to write new state straight into the params
    supports_inplace_state = True
    #: compiled steps have ``run_steps`` (many steps per native call, epoch.py)
    supports_run_steps = True

    def is_available(self) -> bool:
        from graphc.codegen.cpu import is_available
        return is_available()

    def prepare(self, graph):
        from graphc.passes.pipeline import optimize_graph, verify_graph
        return verify_graph(optimize_graph(graph))

    def compile(self, graph, *, inplace_state: bool = False,
                memory_plan: bool = True) -> CpuStep:
        """``inplace_state``: an output named like a param (the train graph's new weights
        and optimizer slots) is written straight into the param array passed in, where
        legal, and returned as that very array — no new buffer, no copy back. The caller's
        param arrays are then updated by each call (what ``Executable.train_step`` wants;
        off by default because ``fn(inputs, params)`` otherwise leaves its inputs alone).
        ``memory_plan=False``: every temp at an offset of its own (for comparisons).

        Machine code comes from the compile cache (cache.py) when the same optimized graph
        was compiled before with the same options, in this process or (on disk) in an
        earlier one: then neither the LLVM module is rendered nor LLVM run."""
        from graphc.codegen.cpu import cache, memplan, parallel, templates
        from graphc.codegen.cpu import program as program_mod
        from graphc.codegen.cpu.program import build_program_module
        from graphc.codegen.lowering import lower_graph
        from graphc.ir.printer import print_graph
        t0 = time.perf_counter()
        g = self.prepare(graph)
        t1 = time.perf_counter()
        # Lowering is cheap (ms) and gives the buffer binding the step needs: always run.
        program = lower_graph(g)
        t2 = time.perf_counter()
        requests = {}
        if inplace_state:
            by_name = {program.buffers[b].name: b for b in program.params}
            for ob in program.outputs:
                pb = by_name.get(program.buffers[ob].name)
                if pb is not None and program.buffers[ob].kind == "output":
                    requests[ob] = pb
        threads = parallel.default_threads()
        key = cache.make_key("step", print_graph(g), repr(sorted(requests.items())),
                             f"threads={threads} plan={bool(memory_plan)} "
                             f"epilogue_gemm_min={templates.MIN_EPILOGUE_GEMM_FLOPS} "
                             f"min_task_cost={program_mod.MIN_COST_PER_TASK},"
                             f"{program_mod.MIN_COST_PER_TASK_OUT_OF_L2},"
                             f"{parallel.l2_cache_bytes()} "
                             f"{templates.small_gemm_key()}")
        t3 = time.perf_counter()
        gemm0 = templates.gemm_compile_seconds()
        llvm = {"llvm_optimize": 0.0, "llvm_codegen": 0.0, "llvm_parse": 0.0, "llvm_wall": 0.0}
        ir_build = 0.0
        hit, source = cache.memory_get(key), "memory"
        if hit is None:
            value = cache.disk_load(key)
            if value is not None:
                try:
                    meta = value["meta"]
                    # The GEMMs first: the step object calls them by symbol.
                    if all(cache.load_gemm(ref) for ref in meta.gemms):
                        parallel.ensure_runtime_symbols()
                        hit, source = (meta, cache.ObjectModule(value["object"])), "disk"
                except Exception:       # an unusable entry: compile afresh (and overwrite)
                    cache.STATS["corrupt"] += 1
                    hit = None
            if hit is None:
                pmod = build_program_module(program, threads=threads, inplace=requests)
                plan = memplan.plan_memory(pmod) if memory_plan else memplan.bump_plan(pmod)
                ir_build = time.perf_counter() - t3
                # The step's module, in parts, and its missing GEMMs compile at once.
                tl = time.perf_counter()
                refs, obj, lt = cache.compile_step(pmod)
                llvm_wall = time.perf_counter() - tl
                meta = StepMeta.of(pmod, plan, refs)
                # No ModuleRef kept: after emission it holds codegen-prepared IR, not the
                # optimized IR ``llvm_ir`` promises (re-rendered on demand, cold or cached).
                hit, source = (meta, cache.ObjectModule(obj, lt)), "compiled"
                llvm = {"llvm_optimize": lt["optimize"], "llvm_codegen": lt["codegen"],
                        "llvm_parse": lt["parse_verify"], "llvm_wall": llvm_wall}
                cache.disk_store(key, {"meta": meta, "object": obj})
            cache.memory_put(key, hit)
        meta, module = hit
        step = CpuStep(g, program, meta, module, {})
        step._requests = requests
        t4 = time.perf_counter()
        step.timings = {"passes": t1 - t0, "lowering": t2 - t1, "cache_key": t3 - t2,
                        "ir_build": ir_build,
                        "gemm_llvm": templates.gemm_compile_seconds() - gemm0, **llvm,
                        "load": module.timings.get("load", 0.0) if source != "memory" else 0.0,
                        "cache_hit": source != "compiled", "cache": source,
                        "total": t4 - t0}
        return step


register_backend("cpu", CpuBackend)
