"""Compile time of the W1 train step (MLP 784-512-256-10, Adam, batch 128) on the cpu
target, cold and from the disk cache, each in a fresh process; and the memory planner's
arena peak against the unplanned sum for W1, the digits CNN and the LSTM example.

    python benchmarks/bench_compile.py [--reps 3]

"cold": an empty cache directory (every GEMM and the step through LLVM); "cached": a new
process over the directory the cold run filled. The GEMMs and the step's module parts
compile at once on threads: "gemm llvm" and "step llvm" are summed per-module LLVM
seconds, "llvm elapsed" the wall time of that phase. ``backend`` is CpuBackend.compile's total
(optimize passes → machine code ready); ``first step`` adds building the train graph and
the first call. Imports are not counted.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
import numpy as np
import graphc
from graphc.layers import LSTM, Dense
from graphc.models import Sequential
from graphc.codegen.cpu import cache
graphc.utils.set_random_seed(0)
rng = np.random.default_rng(0)
{model}
exe = graphc.compile(m, target="cpu")
t0 = time.perf_counter()
exe.train_on_batch(x, y)
t1 = time.perf_counter()
(_, fn), = exe._steps.values()
print(json.dumps({{"first_step": t1 - t0, "timings": fn.timings, "stats": cache.STATS,
                  "memory": exe.memory_report()[0]}}))
"""


# The W1 MLP (Adam, batch 128).
_W1 = """
m = Sequential([Dense(512, activation="relu", input_dim=784), Dense(256, activation="relu"),
                Dense(10, activation="softmax")])
m.compile(optimizer="adam", loss="categorical_crossentropy")
x = rng.random((128, 784), dtype=np.float32)
y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 128)]
"""

# LSTM(64) over T steps of 16 features (batch 32): the unrolled-recurrence compile cost.
_LSTM = """
m = Sequential([LSTM(64, input_shape=({steps}, 16)), Dense(1, activation="sigmoid")])
m.compile(optimizer="adam", loss="binary_crossentropy")
x = rng.random((32, {steps}, 16), dtype=np.float32)
y = rng.integers(0, 2, (32, 1)).astype(np.float32)
"""


def _child(cache_dir, model=_W1):
    env = dict(os.environ, GRAPHC_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", _CHILD.format(root=ROOT, model=model)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _memory(name, batch):
    sys.path.insert(0, ROOT)
    import importlib.util
    from graphc.frontend.layers.base import reset_name_counters
    from graphc.passes import train_step as ts
    from graphc.runtime.backends import get_backend
    from graphc.utils import set_random_seed
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "examples",
                                                                     f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    set_random_seed(0)
    reset_name_counters()
    model = mod.build_model()
    step = ts.build_train_graph(model, ts.model_input_types(model, batch),
                                ts.default_target_types(model, batch))
    return get_backend("cpu").compile(step.graph, inplace_state=True).memory_report()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--lstm-steps", type=int, default=0,
                    help="also time one cold compile of an LSTM(64) train step over this "
                         "many time steps (e.g. 200)")
    args = ap.parse_args()
    cold, cached, mem = [], [], None
    for _ in range(args.reps):
        with tempfile.TemporaryDirectory(prefix="graphc-bench-cache-") as d:
            a = _child(d)
            b = _child(d)
        assert a["timings"]["cache"] == "compiled" and b["timings"]["cache"] == "disk", (a, b)
        cold.append(a)
        cached.append(b)
        mem = a["memory"]
    med = lambda rs, f: statistics.median(f(r) for r in rs)  # noqa: E731
    print("W1 train step compile (fresh process each, median of %d):" % args.reps)
    for label, rs in (("cold", cold), ("cached", cached)):
        print(f"  {label:7s} backend {med(rs, lambda r: r['timings']['total']):6.3f} s   "
              f"first step {med(rs, lambda r: r['first_step']):6.3f} s   "
              f"(gemm llvm {med(rs, lambda r: r['timings']['gemm_llvm']):.3f} s, step llvm "
              f"{med(rs, lambda r: r['timings']['llvm_optimize'] + r['timings']['llvm_codegen']):.3f} s, "
              f"ir build {med(rs, lambda r: r['timings']['ir_build']):.3f} s; llvm elapsed "
              f"{med(rs, lambda r: r['timings'].get('llvm_wall', 0.0)):.3f} s)")
    if args.lstm_steps:
        with tempfile.TemporaryDirectory(prefix="graphc-bench-cache-") as d:
            r = _child(d, _LSTM.format(steps=args.lstm_steps))
        print(f"LSTM(64) T={args.lstm_steps} b32 train step, cold: backend "
              f"{r['timings']['total']:.3f} s, first step {r['first_step']:.3f} s")
    print("\nArena: planned peak vs unplanned sum of temps + workspace (train step):")
    rows = [("W1 MLP b128", mem)]
    with tempfile.TemporaryDirectory(prefix="graphc-bench-cache-") as d:
        os.environ["GRAPHC_CACHE_DIR"] = d
        rows += [("digits_cnn b32", _memory("digits_cnn", 32)),
                 ("lstm_sequence b32", _memory("lstm_sequence", 32))]
    for label, r in rows:
        print(f"  {label:18s} peak {r['peak_bytes'] / 1024:9.1f} KiB  unplanned "
              f"{r['unplanned_bytes'] / 1024:9.1f} KiB  ({r['peak_bytes'] / r['unplanned_bytes']:.0%})"
              f"  external {r['external_bytes'] / 1024:9.1f} KiB")


if __name__ == "__main__":
    main()
