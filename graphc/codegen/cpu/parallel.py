"""Both cores from inside ONE native call: a persistent worker pool written in LLVM IR, and
the multi-threaded GEMM entry point built on it.

``graphc_parallel_for(fn, ctx, ntasks)`` runs ``fn(ctx, t)`` for t in [0, ntasks): task 0
in the calling thread, the others on pool workers (pthreads started on first use; after a
task they spin ~200 µs, yielding the core every 64 pauses, then sleep on a futex). The
partition into tasks is static: every output element is computed by one task in a fixed
order, whichever thread runs it, so results are bit-identical run to run — and the GEMM's K
order does not depend on the split, so they are identical across thread counts too. The
only dynamic part: a task whose worker has not claimed it yet (still waking up) when the
caller finishes its own is run by the caller instead of waited for (same code, same bits).

Why a pool in IR (``python benchmarks/bench_gemm.py --only overhead``, 2-core Zen 4 VM,
µs per 2-task region of empty tasks, median, ctypes call cost subtracted):
  (c) IR pool, workers spinning            0.3 µs
  (c) IR pool, workers parked on the futex  13-28 µs (waking an idle vCPU)
  (a) pthread_create + pthread_join          20 µs
  (b) Python threads, each calling the native kernel (CFUNCTYPE releases the GIL),
      persistent executor: 20 µs — and impossible inside a compiled train step, which is
      one native call.
A training step issues its GEMMs back to back, so the workers are still spinning when the
next region starts. Without the sched_yield in the spin, a worker woken on the caller's own
core (wake-affine) spun there and cost the caller ~55 µs per region.

The pool lives in one runtime module per process (``runtime()``); generated modules call it
by name (``graphc_parallel_for`` is registered with the JIT's symbol table). For AOT, call
``define_runtime(module)`` to put a private copy in the module being written out.
"""
from __future__ import annotations

import ctypes
import os
import threading
from functools import lru_cache

from llvmlite import ir

from graphc.codegen.cpu import jit
from graphc.codegen.cpu.loops import counted_loop

__all__ = [
    "MAX_THREADS", "default_threads", "l2_cache_bytes", "define_runtime",
    "declare_parallel_for", "runtime", "build_parallel_gemm", "min_parallel_flops",
    "define_spawn_runtime",
]

I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()
VOID = ir.VoidType()

MAX_THREADS = 64          # pool workers + the caller
_SLOT = 128               # bytes per worker slot: its own cache lines (no false sharing)
# slot layout (byte offsets)
_SEQ, _SLEEPING, _FN, _CTX, _TASK, _TID, _DONE, _CLAIM = 0, 4, 16, 24, 32, 40, 64, 68
_SYS_FUTEX = 202          # x86-64 Linux
_FUTEX_WAIT_PRIVATE, _FUTEX_WAKE_PRIVATE = 128, 129
# Workers spin this many TSC cycles (~200 µs at the 2.6 GHz TSC here) after their last task
# before parking on the futex: back-to-back GEMMs of a train step find them awake, an idle
# process stops burning a core soon. The caller spins _CALLER_SPIN pauses, then yields.
_WORKER_SPIN_CYCLES = 500_000
_CALLER_SPIN = 2000

TASK_FN_TYPE = ir.FunctionType(VOID, [PTR, I64])
PARALLEL_FOR_NAME = "graphc_parallel_for"


def default_threads() -> int:
    """Threads a parallel region may use: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


_L2_FALLBACK = 1 << 20


@lru_cache(maxsize=None)
def l2_cache_bytes() -> int:
    """One core's L2 cache in bytes (Linux sysfs; 1 MiB when it cannot be read)."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in sorted(os.listdir(base)):
            with open(f"{base}/{entry}/level") as f:
                if f.read().strip() != "2":
                    continue
            with open(f"{base}/{entry}/size") as f:
                text = f.read().strip().upper()
            scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
            return int(text.rstrip("KM")) * scale
    except (OSError, ValueError):
        pass
    return _L2_FALLBACK

# --------------------------------------------------------------------------------------
# IR helpers
# --------------------------------------------------------------------------------------

def _decl(module, name, ret, args, var_arg=False):
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, args, var_arg=var_arg), name=name)
    return fn


def _pause(b, module):
    # x86 PAUSE: eases the spin loop on the core (and its SMT sibling, when there is one).
    if module.triple.startswith(("x86_64", "i686", "i386")) or not module.triple:
        b.call(_decl(module, "llvm.x86.sse2.pause", VOID, []), [])


class _Callee:
    """An opaque ``ptr`` value seen as a callee of a known function type: llvmlite's
    CallInstr reads ``callee.function_type``, which a loaded ``ptr`` cannot provide."""

    def __init__(self, value, fnty):
        self.value = value
        self.type = value.type
        self.function_type = fnty

    def get_reference(self):
        return self.value.get_reference()

    def __str__(self):
        return str(self.value)


def _call_indirect(b, fnptr, args, fnty=TASK_FN_TYPE):
    return b.call(_Callee(fnptr, fnty), args)


def _store_atomic(b, value, ptr, ordering, align):
    # IRBuilder.store_atomic checks `ptr.type.pointee`, which opaque pointers lack
    # (llvmlite 0.50): build the instruction directly.
    from llvmlite.ir import instructions
    st = instructions.StoreAtomicInstr(b.block, value, ptr, ordering, align)
    b._insert(st)
    return st


def _global(module, ty, name, init, align=None):
    g = ir.GlobalVariable(module, ty, name)
    g.initializer = init
    g.linkage = "internal"
    if align:
        g.align = align
    # llvmlite 0.50 still gives globals a typed pointer type (printed `i64*`, and GEPs on
    # it inherit that type); make it the opaque `ptr` like everything else.
    g.type = PTR
    return g


def _alloca(b, ty, count=None):
    a = b.alloca(ty, size=count)
    a.type = PTR        # as for globals: opaque pointer, not llvmlite's typed one
    return a


def _field(b, slot, off):
    off = I64(off) if isinstance(off, int) else off
    return b.gep(slot, [off], inbounds=True, source_etype=I8)


def declare_parallel_for(module: ir.Module) -> ir.Function:
    """``void graphc_parallel_for(ptr fn, ptr ctx, i64 ntasks)`` — declared (resolved from
    the process's runtime module) unless the module defines it (``define_runtime``)."""
    return _decl(module, PARALLEL_FOR_NAME, VOID, [PTR, PTR, I64])


def define_runtime(module: ir.Module, *, linkage: str = "external") -> ir.Function:
    """Define the worker pool in ``module`` and return ``graphc_parallel_for``."""
    existing = module.globals.get(PARALLEL_FOR_NAME)
    if existing is not None and not existing.is_declaration:
        return existing
    slots_ty = ir.ArrayType(I8, _SLOT * MAX_THREADS)
    slots = _global(module, slots_ty, "graphc.pool.slots", ir.Constant(slots_ty, None), 128)
    nworkers = _global(module, I64, "graphc.pool.n", I64(0))
    busy = _global(module, I32, "graphc.pool.busy", I32(0))
    owner_pid = _global(module, I32, "graphc.pool.pid", I32(0))

    syscall = _decl(module, "syscall", I64, [I64], var_arg=True)
    pthread_create = _decl(module, "pthread_create", I32, [PTR, PTR, PTR, PTR])
    getpid = _decl(module, "getpid", I32, [])
    sched_yield = _decl(module, "sched_yield", I32, [])
    rdtsc = _decl(module, "llvm.readcyclecounter", I64, [])
    memset = _decl(module, "llvm.memset.p0.i64", VOID, [PTR, I8, I64, ir.IntType(1)])

    # ---- worker ---------------------------------------------------------------------
    worker = ir.Function(module, ir.FunctionType(PTR, [PTR]), name="graphc.pool.worker")
    worker.linkage = "internal"
    slot = worker.args[0]
    b = ir.IRBuilder(worker.append_basic_block("entry"))
    seq_p = _field(b, slot, _SEQ)
    sleeping_p = _field(b, slot, _SLEEPING)
    entry = b.block
    loop = worker.append_basic_block("loop")
    spin = worker.append_basic_block("spin")
    spin_next = worker.append_basic_block("spin.next")
    park = worker.append_basic_block("park")
    park2 = worker.append_basic_block("park.wait")
    run = worker.append_basic_block("run")
    b.branch(loop)

    b.position_at_end(loop)
    seen = b.phi(I32, "seen")
    seen.add_incoming(I32(0), entry)
    t_start = b.call(rdtsc, [])
    b.branch(spin)

    b.position_at_end(spin)
    i = b.phi(I32, "i")
    i.add_incoming(I32(0), loop)
    v_spin = b.load_atomic(seq_p, "acquire", 4, typ=I32)
    b.cbranch(b.icmp_unsigned("!=", v_spin, seen), run, spin_next)
    b.position_at_end(spin_next)
    _pause(b, module)
    i1 = b.add(i, I32(1))
    # Every 64 pauses: yield (if the scheduler woke us on the dispatcher's own core —
    # wake-affine — spinning there would starve the dispatcher; alone on a core,
    # sched_yield returns at once) and check the clock: spin ~_WORKER_SPIN_CYCLES, then park.
    tick = b.icmp_unsigned("==", b.and_(i1, I32(63)), I32(0))
    spin_tick = worker.append_basic_block("spin.tick")
    b.cbranch(tick, spin_tick, spin)
    i.add_incoming(i1, spin_next)
    b.position_at_end(spin_tick)
    b.call(sched_yield, [])
    elapsed = b.sub(b.call(rdtsc, []), t_start)
    i.add_incoming(i1, spin_tick)
    b.cbranch(b.icmp_unsigned("<", elapsed, I64(_WORKER_SPIN_CYCLES)), spin, park)

    # Dekker handshake with the dispatcher: set `sleeping`, then re-read seq (both seq_cst);
    # the dispatcher writes seq, then reads `sleeping`. One of us sees the other's write.
    b.position_at_end(park)
    _store_atomic(b, I32(1), sleeping_p, "seq_cst", 4)
    v_park = b.load_atomic(seq_p, "seq_cst", 4, typ=I32)
    b.cbranch(b.icmp_unsigned("!=", v_park, seen), run, park2)
    b.position_at_end(park2)
    # futex(seq, FUTEX_WAIT_PRIVATE, seen): returns at once if seq already changed.
    b.call(syscall, [I64(_SYS_FUTEX), seq_p, I64(_FUTEX_WAIT_PRIVATE), b.zext(seen, I64),
                     ir.Constant(PTR, None), ir.Constant(PTR, None), I64(0)])
    _store_atomic(b, I32(0), sleeping_p, "seq_cst", 4)
    seen.add_incoming(seen, park2)
    b.branch(loop)

    b.position_at_end(run)
    v = b.phi(I32, "v")
    v.add_incoming(v_spin, spin)
    v.add_incoming(v_park, park)
    _store_atomic(b, I32(0), sleeping_p, "seq_cst", 4)
    # Claim dispatch v (the caller may have taken it already, if we woke up late).
    claimed = b.extract_value(b.cmpxchg(_field(b, slot, _CLAIM), b.sub(v, I32(1)), v,
                                        "acq_rel", "monotonic"), 1)
    run_end = worker.append_basic_block("run.end")
    with b.if_then(claimed):
        fn = b.load(_field(b, slot, _FN), typ=PTR)
        ctx = b.load(_field(b, slot, _CTX), typ=PTR)
        task = b.load(_field(b, slot, _TASK), typ=I64)
        _call_indirect(b, fn, [ctx, task])
        _store_atomic(b, v, _field(b, slot, _DONE), "release", 4)
    b.branch(run_end)
    b.position_at_end(run_end)
    seen.add_incoming(v, run_end)
    b.branch(loop)

    # ---- parallel_for ---------------------------------------------------------------
    pf = module.globals.get(PARALLEL_FOR_NAME)
    if pf is None:
        pf = ir.Function(module, ir.FunctionType(VOID, [PTR, PTR, I64]), name=PARALLEL_FOR_NAME)
    pf.linkage = linkage
    fnp, ctxp, ntasks = pf.args
    b = ir.IRBuilder(pf.append_basic_block("entry"))

    def call_task(t):
        _call_indirect(b, fnp, [ctxp, t])

    def serial(start):
        """for t in [start, ntasks): fn(ctx, t) — in the calling thread."""
        with counted_loop(b, pf, ntasks, "ser", start=start) as t:
            call_task(t)

    few = b.icmp_signed("<=", ntasks, I64(1))
    with b.if_then(few):
        serial(I64(0))
        b.ret_void()
    # One dispatcher at a time: a second concurrent caller (another Python thread) runs
    # its tasks serially — same partition, same results, no deadlock.
    got = b.extract_value(b.cmpxchg(busy, I32(0), I32(1), "acquire", "monotonic"), 1)
    with b.if_then(b.not_(got)):
        serial(I64(0))
        b.ret_void()
    # After fork() the children have no workers: start afresh.
    pid = b.call(getpid, [])
    with b.if_then(b.icmp_signed("!=", pid, b.load(owner_pid, typ=I32))):
        b.call(memset, [slots, I8(0), I64(_SLOT * MAX_THREADS), ir.Constant(ir.IntType(1), 0)])
        b.store(I64(0), nworkers)
        b.store(pid, owner_pid)
    want = b.sub(ntasks, I64(1))
    want = b.select(b.icmp_signed(">", want, I64(MAX_THREADS)), I64(MAX_THREADS), want)
    # grow the pool to `want` workers
    ghead = pf.append_basic_block("grow.head")
    gbody = pf.append_basic_block("grow.body")
    gdone = pf.append_basic_block("grow.done")
    b.branch(ghead)
    b.position_at_end(ghead)
    have = b.load(nworkers, typ=I64)
    b.cbranch(b.icmp_signed("<", have, want), gbody, gdone)
    b.position_at_end(gbody)
    s = _field(b, slots, b.mul(have, I64(_SLOT)))
    rc = b.call(pthread_create, [_field(b, s, _TID), ir.Constant(PTR, None), worker, s])
    ok = b.icmp_signed("==", rc, I32(0))
    gcont = pf.append_basic_block("grow.ok")
    b.cbranch(ok, gcont, gdone)     # cannot start a thread: use the ones we have
    b.position_at_end(gcont)
    b.store(b.add(have, I64(1)), nworkers)
    b.branch(ghead)
    b.position_at_end(gdone)
    have = b.load(nworkers, typ=I64)
    nw = b.select(b.icmp_signed("<", have, want), have, want)

    def for_workers(body_fn, name):
        with counted_loop(b, pf, nw, name) as w:
            body_fn(w, _field(b, slots, b.mul(w, I64(_SLOT))))

    def dispatch(w, sw):
        b.store(fnp, _field(b, sw, _FN))
        b.store(ctxp, _field(b, sw, _CTX))
        b.store(b.add(w, I64(1)), _field(b, sw, _TASK))
        sp = _field(b, sw, _SEQ)
        nv = b.add(b.load_atomic(sp, "monotonic", 4, typ=I32), I32(1))
        _store_atomic(b, nv, sp, "seq_cst", 4)
        asleep = b.load_atomic(_field(b, sw, _SLEEPING), "seq_cst", 4, typ=I32)
        with b.if_then(b.icmp_unsigned("!=", asleep, I32(0))):
            b.call(syscall, [I64(_SYS_FUTEX), sp, I64(_FUTEX_WAKE_PRIVATE), I64(1)])

    for_workers(dispatch, "dispatch")
    call_task(I64(0))
    serial(b.add(nw, I64(1)))       # tasks beyond the pool's size run here

    def finish(w, sw):
        target = b.load_atomic(_field(b, sw, _SEQ), "monotonic", 4, typ=I32)
        # A worker still asleep (woken ~100 µs late on an idle VM core) has not claimed its
        # task: run it here instead of waiting. Same task, same scratch slot, same result.
        stolen = b.extract_value(b.cmpxchg(_field(b, sw, _CLAIM), b.sub(target, I32(1)),
                                           target, "acq_rel", "monotonic"), 1)
        with b.if_else(stolen) as (steal, wait):
            with steal:
                call_task(b.add(w, I64(1)))
            with wait:
                spin_wait(_field(b, sw, _DONE), target)

    def spin_wait(donep, target):
        pre = b.block
        head = pf.append_basic_block("wait.head")
        spin_b = pf.append_basic_block("wait.spin")
        yield_b = pf.append_basic_block("wait.yield")
        out = pf.append_basic_block("wait.out")
        b.branch(head)
        b.position_at_end(head)
        n = b.phi(I32)
        n.add_incoming(I32(0), pre)
        d = b.load_atomic(donep, "acquire", 4, typ=I32)
        b.cbranch(b.icmp_unsigned("==", d, target), out, spin_b)
        b.position_at_end(spin_b)
        _pause(b, module)
        n1 = b.add(n, I32(1))
        n.add_incoming(n1, spin_b)
        b.cbranch(b.icmp_unsigned("<", n1, I32(_CALLER_SPIN)), head, yield_b)
        b.position_at_end(yield_b)
        # The worker is slow (descheduled, or the machine is busy): give up the core.
        b.call(sched_yield, [])
        n.add_incoming(n1, yield_b)
        b.branch(head)
        b.position_at_end(out)

    for_workers(finish, "finish")
    _store_atomic(b, I32(0), busy, "release", 4)
    b.ret_void()

    size = ir.Function(module, ir.FunctionType(I64, []), name="graphc_pool_size")
    size.linkage = linkage
    b = ir.IRBuilder(size.append_basic_block("entry"))
    b.ret(b.load(nworkers, typ=I64))
    return pf


def define_spawn_runtime(module: ir.Module) -> ir.Function:
    """``graphc_spawn_for(fn, ctx, ntasks)``: the same contract as ``graphc_parallel_for``
    but with a pthread_create/pthread_join per region (option (a); kept to measure the
    pool against it)."""
    pthread_create = _decl(module, "pthread_create", I32, [PTR, PTR, PTR, PTR])
    pthread_join = _decl(module, "pthread_join", I32, [I64, PTR])
    job_ty = ir.LiteralStructType([PTR, PTR, I64, I64])   # fn, ctx, task, tid
    tramp = ir.Function(module, ir.FunctionType(PTR, [PTR]), name="graphc.spawn.tramp")
    tramp.linkage = "internal"
    b = ir.IRBuilder(tramp.append_basic_block("entry"))
    job = tramp.args[0]
    f = b.load(b.gep(job, [I32(0), I32(0)], source_etype=job_ty), typ=PTR)
    c = b.load(b.gep(job, [I32(0), I32(1)], source_etype=job_ty), typ=PTR)
    t = b.load(b.gep(job, [I32(0), I32(2)], source_etype=job_ty), typ=I64)
    _call_indirect(b, f, [c, t])
    b.ret(ir.Constant(PTR, None))

    fn = ir.Function(module, ir.FunctionType(VOID, [PTR, PTR, I64]), name="graphc_spawn_for")
    fp, cp, n = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    jobs = _alloca(b, job_ty, I64(MAX_THREADS))
    nt = b.select(b.icmp_signed(">", n, I64(MAX_THREADS)), I64(MAX_THREADS), n)

    def loop(start, stop, body_fn, name):
        with counted_loop(b, fn, stop, name, start=start) as i:
            body_fn(i)

    def spawn(i):
        j = b.gep(jobs, [i], source_etype=job_ty)
        b.store(fp, b.gep(j, [I32(0), I32(0)], source_etype=job_ty))
        b.store(cp, b.gep(j, [I32(0), I32(1)], source_etype=job_ty))
        b.store(i, b.gep(j, [I32(0), I32(2)], source_etype=job_ty))
        b.call(pthread_create, [b.gep(j, [I32(0), I32(3)], source_etype=job_ty),
                                ir.Constant(PTR, None), tramp, j])

    def join(i):
        j = b.gep(jobs, [i], source_etype=job_ty)
        tid = b.load(b.gep(j, [I32(0), I32(3)], source_etype=job_ty), typ=I64)
        b.call(pthread_join, [tid, ir.Constant(PTR, None)])

    loop(I64(1), nt, spawn, "spawn")
    _call_indirect(b, fp, [cp, I64(0)])
    loop(nt, n, lambda i: _call_indirect(b, fp, [cp, i]), "rest")
    loop(I64(1), nt, join, "join")
    b.ret_void()
    return fn


class _Runtime:
    """The process-wide pool (and the spawn-per-region variant), JIT-compiled once; their
    addresses are registered so generated modules can call them by name."""

    def __init__(self):
        m = jit.ir_module("graphc_parallel_runtime")
        define_runtime(m)
        define_spawn_runtime(m)
        # A do-nothing task, to measure the cost of a region itself.
        noop = ir.Function(m, TASK_FN_TYPE, name="graphc_noop_task")
        ir.IRBuilder(noop.append_basic_block("entry")).ret_void()
        self.jit = jit.JitModule(m)
        for name in (PARALLEL_FOR_NAME, "graphc_spawn_for", "graphc_pool_size"):
            jit.register_symbol(name, self.jit.address(name))
        c_for = (None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
        self.parallel_for = self.jit.cfunc(PARALLEL_FOR_NAME, *c_for)
        self.spawn_for = self.jit.cfunc("graphc_spawn_for", *c_for)
        self.pool_size = self.jit.cfunc("graphc_pool_size", ctypes.c_int64)
        self.noop_task = self.jit.address("graphc_noop_task")


_RUNTIME: _Runtime | None = None
_RUNTIME_LOCK = threading.Lock()


def runtime() -> _Runtime:
    """The process's pool runtime (compiled on first use, ~50 ms)."""
    global _RUNTIME
    if _RUNTIME is None:
        with _RUNTIME_LOCK:
            if _RUNTIME is None:
                _RUNTIME = _Runtime()
    return _RUNTIME


# --------------------------------------------------------------------------------------
# the multi-threaded GEMM entry point
# --------------------------------------------------------------------------------------

# Below this many multiply-adds per thread a second thread does not pay for itself: a
# region costs ~0.3 µs with spinning workers but 13-28 µs when one must be woken, and the
# split duplicates some packing. 2**20 multiply-adds ≈ 20 µs of one core at ~100 GFLOP/s.
# (Lower thresholds gained nothing measurable on the W1 shapes; 128^3 goes parallel.)
_MIN_MADDS_PER_THREAD = 1 << 20


def min_parallel_flops() -> int:
    """Smallest GEMM (in flops, 2*M*N*K) that is split across two threads."""
    return 2 * 2 * _MIN_MADDS_PER_THREAD


def build_parallel_gemm(module: ir.Module, name: str, spec, *, max_threads: int | None = None,
                        min_madds_per_thread: int | None = None) -> ir.Function:
    """Emit the GEMM of ``spec`` (see gemm.build_gemm) plus its entry point

        void {name}(i64 M, i64 N, i64 K, ptr A, i64 lda, ptr B, i64 ldb, ptr C, i64 ldc,
                    ptr scratch, i64 nthreads, <epilogue args...>)

    ``scratch`` holds ``gemm.scratch_floats(cfg, nthreads, N, K)`` floats (any alignment).
    The entry splits C into ``t <= nthreads`` blocks of whole register tiles — along N when
    the duplicated packing of A is the cheaper one, else along M — with t chosen so each
    thread gets at least ``min_madds_per_thread`` multiply-adds; t == 1 calls the tile
    function directly. Static split: under CPU contention from other processes the
    2-thread speedup falls toward 1x (the caller waits for the slower half)."""
    from graphc.codegen.cpu import gemm as G
    if min_madds_per_thread is None:
        min_madds_per_thread = _MIN_MADDS_PER_THREAD
    cfg = spec.cfg
    tile = G.build_gemm(module, name, spec)
    pfor = declare_parallel_for(module)
    extra_t = list(spec.epilogue.arg_types) if spec.epilogue else []
    max_threads = MAX_THREADS if max_threads is None else max(1, min(max_threads, MAX_THREADS))
    ctx_ty = ir.LiteralStructType([I64, I64, I64, PTR, I64, PTR, I64, PTR, I64, PTR,
                                   I64, I64, I64, I64, *extra_t])
    # ..., T, split_n, ntiles, per-thread scratch stride (floats)
    # ---- task: thread t's block ---------------------------------------------------
    task = ir.Function(module, TASK_FN_TYPE, name=f"{name}.task")
    task.linkage = "internal"
    ctxp, t = task.args
    b = ir.IRBuilder(task.append_basic_block("entry"))
    f = [b.load(b.gep(ctxp, [I32(0), I32(i)], source_etype=ctx_ty), typ=ty)
         for i, ty in enumerate(ctx_ty.elements)]
    M, N, K, A, lda, B, ldb, C, ldc, scratch, T, split_n, ntiles, stride = f[:14]
    extra = f[14:]
    lo = b.sdiv(b.mul(t, ntiles), T)
    hi = b.sdiv(b.mul(b.add(t, I64(1)), ntiles), T)
    sc = b.gep(scratch, [b.mul(t, stride)], source_etype=G.F32)
    with b.if_else(b.icmp_signed("!=", split_n, I64(0))) as (by_n, by_m):
        with by_n:
            n0 = b.mul(lo, I64(cfg.nr))
            n1 = G._min(b, b.mul(hi, I64(cfg.nr)), N)
            boff = b.mul(n0, ldb) if spec.trans_b else n0
            b.call(tile, [M, b.sub(n1, n0), K, A, lda,
                          b.gep(B, [boff], source_etype=G.F32), ldb,
                          b.gep(C, [n0], source_etype=G.F32), ldc, sc, I64(0), n0, *extra])
        with by_m:
            m0 = b.mul(lo, I64(cfg.mr))
            m1 = G._min(b, b.mul(hi, I64(cfg.mr)), M)
            aoff = m0 if spec.trans_a else b.mul(m0, lda)
            b.call(tile, [b.sub(m1, m0), N, K, b.gep(A, [aoff], source_etype=G.F32), lda,
                          B, ldb, b.gep(C, [b.mul(m0, ldc)], source_etype=G.F32), ldc, sc,
                          m0, I64(0), *extra])
    b.ret_void()

    # ---- entry --------------------------------------------------------------------
    fn = ir.Function(module, ir.FunctionType(VOID, [I64, I64, I64, PTR, I64, PTR, I64, PTR,
                                                    I64, PTR, I64, *extra_t]), name=name)
    M, N, K, A, lda, B, ldb, C, ldc, scratch, nthreads = fn.args[:11]
    extra = list(fn.args[11:])
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    ctx = _alloca(b, ctx_ty)
    tn = b.sdiv(b.add(N, I64(cfg.nr - 1)), I64(cfg.nr))
    tm = b.sdiv(b.add(M, I64(cfg.mr - 1)), I64(cfg.mr))
    # Cost (in multiply-adds of the busiest thread) of each split, with packing counted
    # as ~8 multiply-adds per element (measured ratio of pack throughput to FMA peak):
    # split N → every thread packs all of A (M*K); split M → all of B (K*N).
    T = G._min(b, b.select(b.icmp_signed("<", nthreads, I64(1)), I64(1), nthreads),
               I64(max_threads))
    madds = b.mul(b.mul(M, N), K)
    t_work = b.sdiv(madds, I64(min_madds_per_thread))
    T = G._min(b, T, b.select(b.icmp_signed("<", t_work, I64(1)), I64(1), t_work))
    Tn = G._min(b, T, tn)
    Tm = G._min(b, T, tm)
    Tn = b.select(b.icmp_signed("<", Tn, I64(1)), I64(1), Tn)
    Tm = b.select(b.icmp_signed("<", Tm, I64(1)), I64(1), Tm)
    mpad = b.mul(tm, I64(cfg.mr))
    npad = b.mul(tn, I64(cfg.nr))
    cost_n = b.add(b.mul(b.mul(b.sdiv(b.add(tn, b.sub(Tn, I64(1))), Tn), I64(cfg.nr)),
                         b.mul(mpad, K)), b.mul(I64(8), b.mul(mpad, K)))
    cost_m = b.add(b.mul(b.mul(b.sdiv(b.add(tm, b.sub(Tm, I64(1))), Tm), I64(cfg.mr)),
                         b.mul(npad, K)), b.mul(I64(8), b.mul(npad, K)))
    use_n = b.icmp_signed("<=", cost_n, cost_m)
    Tsel = b.select(use_n, Tn, Tm)
    with b.if_else(b.icmp_signed(">", Tsel, I64(1))) as (par, ser):
        with par:
            # Per-thread scratch stride, as gemm._per_thread_floats(cfg, N, K).
            one = I64(1)
            kc_b = G._min(b, I64(cfg.kc), b.select(b.icmp_signed("<", K, one), one, K))
            nc_b = G._min(b, I64(cfg.nc), b.mul(b.select(b.icmp_signed("<", tn, one), one, tn),
                                                 I64(cfg.nr)))
            stride = b.add(I64(cfg.mc * cfg.kc + 16), b.mul(kc_b, nc_b))
            vals = [M, N, K, A, lda, B, ldb, C, ldc, scratch, Tsel, b.zext(use_n, I64),
                    b.select(use_n, tn, tm), stride, *extra]
            for i, v in enumerate(vals):
                b.store(v, b.gep(ctx, [I32(0), I32(i)], source_etype=ctx_ty))
            b.call(pfor, [task, ctx, Tsel])
        with ser:
            b.call(tile, [M, N, K, A, lda, B, ldb, C, ldc, scratch, I64(0), I64(0), *extra])
    b.ret_void()
    return fn


def ensure_runtime_symbols() -> None:
    """Make ``graphc_parallel_for`` resolvable for modules about to be JIT-compiled."""
    runtime()
