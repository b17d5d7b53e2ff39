"""GFLOP/s of graphc's generated GEMM against numpy's matmul (OpenBLAS), same machine, same
run: 1024^3 and the W1 MLP shapes (batch 128, 784-512-256-10: forward products, and the
backward A^T@B (weight gradients) and A@B^T (input gradients)), on 1 and 2 threads; the
small / skinny products of the LSTM, W4 and batch-1 workloads on smallgemm.py's kernels
(``--only small``); plus JIT compile time and the cost of one parallel region for each
threading option.

    python benchmarks/bench_gemm.py            # everything (~1-2 min on 2 cores)
    python benchmarks/bench_gemm.py --quick    # fewer repetitions
    python benchmarks/bench_gemm.py --only gemm|small|overhead|compile

numpy runs in a child process: with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE removed from its
environment (when set, they force an older OpenBLAS kernel and slow a current numpy; tests
and CI keep them), its thread count switched through OpenBLAS's own API, and its busy-waiting
worker threads kept out of graphc's measurements. Reported: ratios, never pass/fail.
"""
from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

BATCH = 128
LAYERS = [(784, 512), (512, 256), (256, 10)]


def shapes():
    """(label, trans_a, trans_b, M, N, K): op(A) is M x K, op(B) is K x N."""
    out = [("1024^3", False, False, 1024, 1024, 1024)]
    for i, (fin, fout) in enumerate(LAYERS, 1):
        out.append((f"L{i} fwd  x@W", False, False, BATCH, fout, fin))
        out.append((f"L{i} dW   x^T@dy", True, False, fin, fout, BATCH))
        out.append((f"L{i} dx   dy@W^T", False, True, BATCH, fin, fout))
    return out


def small_shapes():
    """(label, trans_a, trans_b, M, N, K) of the small / skinny products that run on
    smallgemm.py: LSTM(64) over 16 features at batch 32 (W3: the recurrent product, its two
    gradient forms, the input product and its weight gradient), the W4 MLP 10-64-32-1 at
    batch 32, W1's 10-column layer at batch 128 and W1's layers at batch 1."""
    return [
        ("W3 h@U", False, False, 32, 256, 64), ("W3 dU h^T@dz", True, False, 64, 256, 32),
        ("W3 dh dz@U^T", False, True, 32, 64, 256), ("W3 x@W", False, False, 32, 256, 16),
        ("W3 dW x^T@dz", True, False, 16, 256, 32),
        ("W4 L1 fwd", False, False, 32, 64, 10), ("W4 L2 fwd", False, False, 32, 32, 64),
        ("W4 L3 fwd", False, False, 32, 1, 32), ("W4 L1 dW", True, False, 10, 64, 32),
        ("W4 L2 dW", True, False, 64, 32, 32), ("W4 L3 dW", True, False, 32, 1, 32),
        ("W4 L2 dx", False, True, 32, 64, 32), ("W4 L3 dx", False, True, 32, 32, 1),
        ("W1 L3 fwd", False, False, 128, 10, 256), ("W1 L3 dW", True, False, 256, 10, 128),
        ("W1 L3 dx", False, True, 128, 256, 10),
        ("W1 b=1 L1", False, False, 1, 512, 784), ("W1 b=1 L2", False, False, 1, 256, 512),
        ("W1 b=1 L3", False, False, 1, 10, 256)]


def fused_shapes():
    """relu(x @ W + b) of the two hidden layers: graphc fuses bias+relu into the GEMM's
    store; numpy needs three passes over C."""
    return [(f"L{i} relu(x@W+b)", BATCH, fout, fin)
            for i, (fin, fout) in enumerate(LAYERS[:2], 1)]


def operands(ta, tb, M, N, K, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    return a, b


def best_time(fn, flops, budget_s):
    """Best per-call seconds over repeated timed batches (robust to a busy neighbour)."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    reps = max(1, int(0.02 / one))           # ~20 ms batches
    best = one
    end = time.perf_counter() + budget_s
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps)
        if time.perf_counter() > end:
            return best


# ---------------------------------------------------------------------------- numpy side

def _openblas():
    import numpy
    libs = glob.glob(os.path.join(os.path.dirname(numpy.__file__), "..", "numpy.libs",
                                  "*openblas*"))
    if not libs:
        return None
    lib = ctypes.CDLL(libs[0])     # the copy numpy already loaded (same handle)
    for name in ("scipy_openblas_get_corename64_", "openblas_get_corename"):
        if hasattr(lib, name):
            getattr(lib, name).restype = ctypes.c_char_p
            return lib, name, name.replace("get_corename", "set_num_threads")
    return None


def numpy_worker(budget):
    """Child process: numpy GFLOP/s for every shape at 1 and 2 threads, as JSON."""
    ob = _openblas()
    core = getattr(ob[0], ob[1])().decode() if ob else "unknown"
    res = {"corename": core, "gflops": {}}
    for threads in (1, 2):
        if ob:
            getattr(ob[0], ob[2])(threads)
        for label, ta, tb, M, N, K in shapes():
            a, b = operands(ta, tb, M, N, K)
            A, B = (a.T if ta else a), (b.T if tb else b)  # views: BLAS reads them in place
            c = np.empty((M, N), np.float32)
            t = best_time(lambda: np.matmul(A, B, out=c), 2 * M * N * K, budget)
            res["gflops"][f"{label}|{threads}"] = 2 * M * N * K / t / 1e9
        for label, M, N, K in fused_shapes():
            a, b = operands(False, False, M, N, K)
            bias = np.linspace(-1, 1, N, dtype=np.float32)
            c = np.empty((M, N), np.float32)

            def dense_relu():
                np.matmul(a, b, out=c)
                np.add(c, bias, out=c)
                np.maximum(c, 0, out=c)
            t = best_time(dense_relu, 2 * M * N * K, budget)
            res["gflops"][f"{label}|{threads}"] = 2 * M * N * K / t / 1e9
        for label, ta, tb, M, N, K in small_shapes():
            a, b = operands(ta, tb, M, N, K)
            A, B = (a.T if ta else a), (b.T if tb else b)
            c = np.empty((M, N), np.float32)
            t = best_time(lambda: np.matmul(A, B, out=c), 2 * M * N * K, budget / 3)
            res["gflops"][f"{label}|{threads}"] = 2 * M * N * K / t / 1e9
    print(json.dumps(res))


def run_numpy(budget, keep_coretype=False):
    env = dict(os.environ)
    if not keep_coretype:
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    env.pop("OPENBLAS_NUM_THREADS", None)
    env.pop("OMP_NUM_THREADS", None)
    out = subprocess.run([sys.executable, __file__, "--numpy-worker", "--budget", str(budget)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- graphc side

def bench_graphc(budget):
    from graphc.codegen.cpu import gemm as G
    kernels = {}
    res = {}
    for label, ta, tb, M, N, K in shapes():
        g = kernels.get((ta, tb))
        if g is None:
            g = kernels[(ta, tb)] = G.Gemm(ta, tb, threads=2)
        a, b = operands(ta, tb, M, N, K)
        c = np.empty((M, N), np.float32)
        for threads in (1, 2):
            # Bound call: pointers fixed once, as the runtime calls a planned kernel.
            run = g.bind(a, b, c, threads=threads)
            t = best_time(run, 2 * M * N * K, budget)
            res[f"{label}|{threads}"] = 2 * M * N * K / t / 1e9
    g = G.Gemm(epilogue=G.bias_relu_epilogue(), threads=2)
    for label, M, N, K in fused_shapes():
        a, b = operands(False, False, M, N, K)
        bias = np.linspace(-1, 1, N, dtype=np.float32)
        c = np.empty((M, N), np.float32)
        for threads in (1, 2):
            t = best_time(g.bind(a, b, c, bias, threads=threads), 2 * M * N * K, budget)
            res[f"{label}|{threads}"] = 2 * M * N * K / t / 1e9
    return res


def section_gemm(budget):
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    print(f"OPENBLAS_CORETYPE={coretype!r} OPENBLAS_L2_SIZE="
          f"{os.environ.get('OPENBLAS_L2_SIZE')!r} in this environment")
    npres = run_numpy(budget)
    print(f"numpy {np.__version__}, OpenBLAS kernel in the benchmark child: "
          f"{npres['corename']} (OPENBLAS_CORETYPE/L2_SIZE unset there)")
    if coretype:
        slow = run_numpy(budget, keep_coretype=True)
        key = "1024^3|1"
        print(f"  with the environment's OPENBLAS_CORETYPE={coretype}: kernel "
              f"{slow['corename']}, 1024^3 1 thread {slow['gflops'][key]:.1f} GFLOP/s vs "
              f"{npres['gflops'][key]:.1f} without it")
    gres = bench_graphc(budget)
    hdr = (f"{'shape':18s} {'M x N x K':>16s} | {'graphc 1T':>9s} {'numpy 1T':>9s} {'ratio':>6s}"
           f" | {'graphc 2T':>9s} {'numpy 2T':>9s} {'ratio':>6s}")
    print()
    print("GFLOP/s (best of repeated batches; ratio = graphc / numpy)")
    print(hdr)
    print("-" * len(hdr))
    rows = [(lab, M, N, K) for lab, _, _, M, N, K in shapes()] + fused_shapes()
    for label, M, N, K in rows:
        row = [f"{label:18s} {f'{M}x{N}x{K}':>16s}"]
        for t in (1, 2):
            gv, nv = gres[f"{label}|{t}"], npres["gflops"][f"{label}|{t}"]
            row.append(f"{gv:9.1f} {nv:9.1f} {gv / nv:6.2f}")
        print(" | ".join(row))
    # Time for all nine W1 products (a train step needs eight: not dx of layer 1).
    for t in (1, 2):
        # flops / (GFLOP/s) = nanoseconds
        tg = sum(2 * M * N * K / gres[f"{lab}|{t}"] for lab, _, _, M, N, K in shapes()[1:])
        tn = sum(2 * M * N * K / npres["gflops"][f"{lab}|{t}"]
                 for lab, _, _, M, N, K in shapes()[1:])
        print(f"all 9 W1 products above, {t} thread(s): graphc {tg / 1e3:.0f} us, numpy "
              f"{tn / 1e3:.0f} us, ratio {tn / tg:.2f}")


def section_small(budget):
    """smallgemm.py's kernels (1 and 2 threads) vs the packed GEMM (1 thread) and numpy, in
    microseconds per call (ctypes call included: ~0.2 us; numpy's ~1 us)."""
    from graphc.codegen.cpu import gemm as G
    from graphc.codegen.cpu import smallgemm as S
    npres = run_numpy(budget)
    specs = [dict(M=M, N=N, K=K, trans_a=ta, trans_b=tb) for _, ta, tb, M, N, K in
             small_shapes()]
    _, one = S.compile_kernels(specs, tasks=1)
    _, two = S.compile_kernels(specs, tasks=2)
    packed = {}
    hdr = (f"{'shape':14s} {'M x N x K':>12s} | {'small 1T':>8s} {'small 2T':>8s} "
           f"{'packed 1T':>9s} {'numpy 1T':>8s} {'numpy 2T':>8s} | {'1T vs numpy':>11s} "
           f"{'best vs numpy':>13s} {'vs packed':>9s}")
    print("microseconds per call (best of repeated batches; ratios: speedup of smallgemm)")
    print(hdr)
    print("-" * len(hdr))
    tot = np.zeros(5)
    for (label, ta, tb, M, N, K), f1, f2 in zip(small_shapes(), one, two):
        a, b = operands(ta, tb, M, N, K)
        c = np.empty((M, N), np.float32)
        pa, pb, pc = a.ctypes.data, b.ctypes.data, c.ctypes.data
        t1 = best_time(lambda: f1.cfunc(pa, pb, pc), 0, budget / 3)
        t2 = best_time(lambda: f2.cfunc(pa, pb, pc), 0, budget / 3)
        if (ta, tb) not in packed:
            packed[ta, tb] = G.Gemm(ta, tb, threads=1)
        g = packed[ta, tb]
        tp = best_time(g.bind(a, b, c), 0, budget / 3)
        fl = 2 * M * N * K
        n1, n2 = (fl / npres["gflops"][f"{label}|{t}"] / 1e9 for t in (1, 2))
        us = np.array([t1, t2, tp, n1, n2]) * 1e6
        tot += us
        print(f"{label:14s} {f'{M}x{N}x{K}':>12s} | {us[0]:8.2f} {us[1]:8.2f} {us[2]:9.2f} "
              f"{us[3]:8.2f} {us[4]:8.2f} | {us[3] / us[0]:11.2f} "
              f"{min(us[3:]) / min(us[:2]):13.2f} {us[2] / us[0]:9.2f}")
    print(f"{'all of the above':27s} | {tot[0]:8.1f} {tot[1]:8.1f} {tot[2]:9.1f} {tot[3]:8.1f} "
          f"{tot[4]:8.1f} | {tot[3] / tot[0]:11.2f} {min(tot[3:]) / min(tot[:2]):13.2f} "
          f"{tot[2] / tot[0]:9.2f}")


# ------------------------------------------------------------------------- other sections

def section_overhead(n=3000):
    from concurrent.futures import ThreadPoolExecutor

    from graphc.codegen.cpu import parallel as P
    rt = P.runtime()

    def med(fn, reps, pause=None):
        ts = []
        for _ in range(reps):
            if pause:
                time.sleep(pause)
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts)) * 1e6

    base = med(lambda: rt.parallel_for(rt.noop_task, None, 1), n)
    print("cost of one parallel region with 2 tasks that do nothing, median us "
          f"(minus the {base:.2f} us of a 1-task ctypes call):")
    rt.parallel_for(rt.noop_task, None, 2)
    pool = med(lambda: rt.parallel_for(rt.noop_task, None, 2), n) - base
    parked = med(lambda: rt.parallel_for(rt.noop_task, None, 2), 100, pause=0.005) - base
    spawn = med(lambda: rt.spawn_for(rt.noop_task, None, 2), n // 3) - base
    ex = ThreadPoolExecutor(1)
    one = lambda: rt.parallel_for(rt.noop_task, None, 1)  # noqa: E731

    def pyregion():
        f = ex.submit(one)
        one()
        f.result()
    pyregion()
    pyth = med(pyregion, n // 3) - base
    ex.shutdown()
    print(f"  (c) IR pool, workers spinning       {pool:8.2f}")
    print(f"  (c) IR pool, workers parked (futex) {parked:8.2f}")
    print(f"  (a) pthread_create/join per region  {spawn:8.2f}")
    print(f"  (b) Python threads + CFUNCTYPE      {pyth:8.2f}")


def section_compile():
    from llvmlite import ir

    from graphc.codegen.cpu import gemm as G
    from graphc.codegen.cpu import jit
    from graphc.codegen.cpu import parallel as P
    P.runtime()

    def small():
        m = jit.ir_module()
        f32, i64, ptr = ir.FloatType(), ir.IntType(64), ir.PointerType()
        fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [ptr, ptr, i64]), name="scale")
        entry = fn.append_basic_block("entry")
        loop = fn.append_basic_block("loop")
        done = fn.append_basic_block("done")
        b = ir.IRBuilder(entry)
        b.cbranch(b.icmp_signed(">", fn.args[2], i64(0)), loop, done)
        b.position_at_end(loop)
        i = b.phi(i64)
        i.add_incoming(i64(0), entry)
        x = b.load(b.gep(fn.args[0], [i], source_etype=f32), typ=f32)
        b.store(b.fmul(x, f32(2.0)), b.gep(fn.args[1], [i], source_etype=f32))
        nx = b.add(i, i64(1))
        i.add_incoming(nx, loop)
        b.cbranch(b.icmp_signed("<", nx, fn.args[2]), loop, done)
        b.position_at_end(done)
        b.ret_void()
        return m

    def gemm_module(spec):
        m = jit.ir_module()
        P.build_parallel_gemm(m, "g", spec)
        return m

    print("JIT compile time, median ms (parse+verify / O3 / machine code):")
    for label, make in [("small loop (1 function)", small),
                        ("GEMM nn", lambda: gemm_module(G.GemmSpec())),
                        ("GEMM nt + bias/relu", lambda: gemm_module(
                            G.GemmSpec(trans_b=True, epilogue=G.bias_relu_epilogue())))]:
        for engine in ("mcjit", "lljit"):
            tims = []
            for _ in range(5 if make is small else 3):
                tims.append(jit.JitModule(make(), engine=engine).timings)
            tot = sorted(t["total"] for t in tims)[len(tims) // 2] * 1e3
            parts = "/".join(f"{sorted(t[k] for t in tims)[len(tims) // 2] * 1e3:.1f}"
                             for k in ("parse_verify", "optimize", "codegen"))
            print(f"  {label:24s} {engine:6s} {tot:7.1f}   ({parts})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["gemm", "small", "overhead", "compile"])
    ap.add_argument("--numpy-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--budget", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    budget = args.budget if args.budget is not None else (0.15 if args.quick else 0.6)
    if args.numpy_worker:
        numpy_worker(budget)
        return
    print(f"machine: {os.cpu_count()} CPUs; python {sys.version.split()[0]}; numpy "
          f"{np.__version__}")
    if args.only in (None, "compile"):
        section_compile()
        print()
    if args.only in (None, "overhead"):
        section_overhead(1000 if args.quick else 3000)
        print()
    if args.only in (None, "gemm"):
        section_gemm(budget)
        print()
    if args.only in (None, "small"):
        section_small(budget)


if __name__ == "__main__":
    main()
