"""Where a compiled cpu train step spends its time: TSC cycles per piece of the step
(``build_program_module(profile=True)``), grouped by kind (GEMM by shape, loop kernels,
extern kernels).

    python benchmarks/profile_step.py --model W3 [--steps 300] [--top 25]
    python benchmarks/profile_step.py --model W1 --predict 1      # batch-1 predict
    python benchmarks/profile_step.py --model W3 --packed         # without smallgemm.py

A tool for finding slow kernels; the readcyclecounter around every piece adds a little to
each (tens of cycles)."""
from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _model(name):
    """(model, x, y) of a bench_workloads workload (its own model builders)."""
    import bench_workloads as bw
    rng = np.random.default_rng(0)
    build = {"W1": bw._graphc_w1, "W2": bw._graphc_w2, "W3": bw._graphc_w3,
             "W4": bw._graphc_w4}.get(name)
    if build is None:
        raise SystemExit(f"unknown model {name}")
    m, _ = build("cpu")
    x = {"W1": lambda: rng.random((128, 784), dtype=np.float32),
         "W2": lambda: rng.random((64, 28, 28, 1), dtype=np.float32),
         "W3": lambda: rng.random((32, 32, 16), dtype=np.float32),
         "W4": lambda: rng.random((32, 10), dtype=np.float32)}[name]()
    n_out = m.outputs[0].shape[-1]
    y = np.eye(n_out, dtype=np.float32)[rng.integers(0, n_out, len(x))] if n_out > 1 else \
        rng.integers(0, 2, (len(x), 1)).astype(np.float32)
    return m, x, y


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="W3")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--predict", type=int, default=0, metavar="BATCH",
                    help="profile the predict step at this batch size instead of training")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--rounds", type=int, default=5,
                    help="per piece, the best of this many rounds' averages (load noise)")
    ap.add_argument("--packed", action="store_true",
                    help="no small-GEMM kernels: every float32 matmul on the packed path")
    args = ap.parse_args(argv)
    from graphc.codegen.cpu import templates
    if args.packed:
        templates._small_gemm_shape = lambda k, buffers: None
    from graphc.codegen.cpu import jit, memplan
    from graphc.codegen.cpu.backend import CpuBackend, CpuStep, StepMeta
    from graphc.codegen.cpu.program import build_program_module
    from graphc.codegen.lowering import lower_graph
    from graphc.passes import train_step as ts
    from graphc.ir.dtypes import TensorType

    m, x, y = _model(args.model)
    if args.predict:
        x = x[:args.predict].copy()
        step = ts.build_predict_graph(m, [TensorType.of(x)])
    else:
        step = ts.build_train_graph(m, [TensorType.of(x)], [TensorType.of(y)])
    g = CpuBackend().prepare(step.graph)
    prog = lower_graph(g)
    pm = build_program_module(prog, profile=True)
    pm.ensure_symbols()
    jm = jit.JitModule(pm.module)
    fn = CpuStep(g, prog, StepMeta.of(pm, memplan.plan_memory(pm), []), jm, {})
    params = [v.value.copy() for v in step.params]
    inputs = [x] if args.predict else [x, y, np.ones(x.shape[0], np.float32),
                                       np.array(1, np.int64)]
    for _ in range(20):
        fn(inputs, params)
    prof = (ctypes.c_int64 * len(pm.stats["pieces"])).from_address(
        jm.address(f"{pm.entry}_profile"))
    cycles, wall = None, None
    for _ in range(args.rounds):
        for i in range(len(prof)):
            prof[i] = 0
        t0 = time.perf_counter()
        for _ in range(args.steps):
            fn(inputs, params)
        w = (time.perf_counter() - t0) / args.steps
        c = np.array(prof[:], dtype=np.float64) / args.steps
        cycles = c if cycles is None else np.minimum(cycles, c)
        wall = w if wall is None else min(wall, w)
    # TSC rate: cycles per second measured against perf_counter over the run.
    c0, t0 = _tsc(), time.perf_counter()
    time.sleep(0.05)
    hz = (_tsc() - c0) / (time.perf_counter() - t0)
    us = cycles / hz * 1e6
    # Piece names -> groups: GEMMs by shape (from the templates' info), loops by name stem.
    info = {}
    for kernel, pieces in pm.schedule:
        for p in pieces:
            if isinstance(p, templates.NativeStep) and "gemm" in p.info:
                i = p.info
                info[id(p)] = f"gemm {i['gemm'].split('_')[0]} {i['M']}x{i['N']}x{i['K']}"
    names = []
    for kernel, pieces in pm.schedule:
        for p in pieces:
            if id(p) in info:
                names.append(info[id(p)])
            elif isinstance(p, templates.ExternKernel) and kernel.op == "matmul":
                a, o = pm.buffers[p.inputs[0]], pm.buffers[p.output]
                # A folded transpose's source is [K, M]: K leads.
                K = a.shape[-1] if p.inputs[0] in kernel.inputs else a.shape[0]
                ep = "+epilogue" if p.epilogue_fused else ""
                names.append(f"smallgemm {o.shape} K={K}{ep}")
            elif isinstance(p, templates.ExternKernel):
                names.append(f"extern {p.name.rstrip('0123456789_')}")
            else:
                names.append(f"{type(p).__name__} {p.name.rstrip('0123456789_')}")
    groups = defaultdict(lambda: [0.0, 0])
    for n, t in zip(names, us):
        groups[n][0] += t
        groups[n][1] += 1
    total = us.sum()
    print(f"{args.model}: best step wall {wall * 1e6:.1f} us, native pieces {total:.1f} us "
          f"({len(us)} pieces)")
    for n, (t, c) in sorted(groups.items(), key=lambda kv: -kv[1][0])[:args.top]:
        print(f"  {t:8.1f} us {100 * t / total:5.1f}%  x{c:<4d} {t / c:7.2f} us each  {n}")


def _tsc() -> int:
    from graphc.codegen.cpu import jit
    global _RDTSC
    if "_RDTSC" not in globals():
        from llvmlite import ir
        mod = jit.ir_module("tsc")
        f = ir.Function(mod, ir.FunctionType(ir.IntType(64), []), name="tsc")
        b = ir.IRBuilder(f.append_basic_block())
        rd = ir.Function(mod, ir.FunctionType(ir.IntType(64), []), name="llvm.readcyclecounter")
        b.ret(b.call(rd, []))
        jm = jit.JitModule(mod)
        _RDTSC = (jm, jm.cfunc("tsc", ctypes.c_int64))
    return _RDTSC[1]()


if __name__ == "__main__":
    main()
