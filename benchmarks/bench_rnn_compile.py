"""What a statically unrolled recurrent layer costs graphc: IR size, time to build and
simplify the train-step graph, and one train step on the reference target, for
``Sequential([Input((T, 16)), <RNN>(64), Dense(1)])`` at batch 32 (the issue's yardstick
is T=200: it must compile in seconds without IR or memory growing with a large constant
per step).

    python benchmarks/bench_rnn_compile.py                 # LSTM/GRU/SimpleRNN, T=50..200
    python benchmarks/bench_rnn_compile.py --layers lstm --steps 200 --chunks 1 2 4 8 200
    python benchmarks/bench_rnn_compile.py --layers stacked_lstm bilstm --steps 200
    python benchmarks/bench_rnn_compile.py --profile       # time per simplify pass

Columns: traced = forward-graph nodes; train raw / train = train-graph nodes before and
after simplify; build = tracing + autodiff + optimizer update; simplify = the pipeline's
fold/algebra/cse/dce to a fixed point; pad MB = bytes written by the pads of the train
graph (slice gradients: the cost that grows quadratically with flat per-step slicing);
step = best of ``--reps`` wall times of one train step through the reference interpreter,
timed round-robin over all cases (numpy; best-of and round-robin because machines are
shared, and its small matmuls are sensitive to OpenBLAS threading — on 2 cores an LSTM
step is several times slower with OpenBLAS' threads than with OPENBLAS_NUM_THREADS=1 —
so the header shows the setting found). ``chunk`` is the
number of time steps per input-projection matmul (``_FusedCell._chunk``). Ratios and sizes
matter here, not absolute seconds.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

BATCH, FEATURES, UNITS = 32, 16, 64


KINDS = ("lstm", "gru", "simple_rnn", "stacked_lstm", "bilstm")


def build_model(kind: str, steps: int):
    from graphc.layers import Dense, Input
    from graphc.models import Sequential
    from graphc.frontend.layers import recurrent as r
    layers = {"lstm": lambda: [r.LSTM(UNITS)], "gru": lambda: [r.GRU(UNITS)],
              "simple_rnn": lambda: [r.SimpleRNN(UNITS)],
              "stacked_lstm": lambda: [r.LSTM(UNITS, return_sequences=True), r.LSTM(UNITS)],
              "bilstm": lambda: [r.Bidirectional(r.LSTM(UNITS))]}[kind]()
    model = Sequential([Input((steps, FEATURES)), *layers, Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model


def timed_simplify(graph, per_pass: dict):
    """``graphc.passes.simplify`` with the time of each pass accumulated in ``per_pass``."""
    from graphc.passes import SIMPLIFY_MAX_ROUNDS, _SIMPLIFY_PIPELINE
    for _ in range(SIMPLIFY_MAX_ROUNDS):
        start = graph
        for p in _SIMPLIFY_PIPELINE:
            t0 = time.perf_counter()
            graph = p(graph)
            per_pass[p.__name__] = per_pass.get(p.__name__, 0.0) + time.perf_counter() - t0
        if graph is start:
            break
    return graph


def step_inputs(graph, rng):
    out = []
    for v in graph.inputs:
        if v.name == "seed":
            out.append(np.array(1234, np.int64))
        elif v.dtype.is_float:
            out.append(rng.standard_normal(v.shape).astype(v.dtype.np))
        else:
            out.append(np.zeros(v.shape, v.dtype.np))
    return out


def compile_case(kind: str, steps: int, chunk: int, memory: bool) -> dict:
    from graphc.frontend.layers import recurrent
    from graphc.ir.interpreter import interpret
    from graphc.passes import train_step as ts
    from graphc.passes.pipeline import build_stage, verify_graph

    recurrent._FusedCell._chunk = chunk
    model = build_model(kind, steps)
    traced = build_stage(model, "traced", BATCH)
    x_types = ts.model_input_types(model, BATCH)
    y_types = ts.default_target_types(model, BATCH)
    t0 = time.perf_counter()
    sg = ts.build_train_graph(model, x_types, y_types)
    t_build = time.perf_counter() - t0
    raw = len(sg.graph.nodes)
    per_pass: dict = {}
    t0 = time.perf_counter()
    g = verify_graph(timed_simplify(sg.graph, per_pass))
    t_simplify = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    ins = step_inputs(g, rng)
    params = [v.value for v in sg.params]
    peak = None
    if memory:
        tracemalloc.start()
        interpret(g, ins, params)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return {"layer": kind, "T": steps, "chunk": chunk, "traced": len(traced.nodes),
            "raw": raw, "train": len(g.nodes), "build": t_build, "simplify": t_simplify,
            "run": lambda: interpret(g, ins, params), "times": [], "peak": peak,
            "passes": per_pass,
            "pad_mb": sum(4 * int(np.prod(n.outputs[0].shape)) for n in g.nodes
                          if n.op == "pad") / 2**20}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", nargs="+", default=["lstm", "gru", "simple_rnn"],
                    choices=KINDS)
    ap.add_argument("--steps", nargs="+", type=int, default=[50, 100, 200])
    ap.add_argument("--chunks", nargs="+", type=int, default=None,
                    help="time steps per input-projection matmul (default: graphc's)")
    ap.add_argument("--reps", type=int, default=5, help="train steps timed per case (best of)")
    ap.add_argument("--memory", action="store_true",
                    help="peak interpreter memory of one step (tracemalloc; slow)")
    ap.add_argument("--profile", action="store_true", help="time per simplify pass")
    args = ap.parse_args(argv)

    from graphc.frontend.layers import recurrent
    chunks = args.chunks or [recurrent._FusedCell._chunk]
    print(f"batch {BATCH}, {FEATURES} features, {UNITS} units, reference target; "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    head = (f"{'layer':<11}{'T':>5}{'chunk':>6}{'traced':>8}{'/step':>6}{'train raw':>10}"
            f"{'train':>7}{'/step':>6}{'pad MB':>8}{'build s':>9}{'simplify s':>11}"
            f"{'step ms':>9}")
    if args.memory:
        head += f"{'peak MB':>9}"
    print(head)
    rows = [compile_case(kind, steps, chunk, args.memory)
            for kind in args.layers for steps in args.steps for chunk in chunks]
    # Train steps are timed round-robin over all cases, so that load from other processes
    # on a shared machine falls on every case alike.
    for _ in range(args.reps):
        for r in rows:
            t0 = time.perf_counter()
            r["run"]()
            r["times"].append(time.perf_counter() - t0)
    for r in rows:
        r["step"] = min(r["times"])
        steps = r["T"]
        line = (f"{r['layer']:<11}{steps:>5}{r['chunk']:>6}{r['traced']:>8}"
                f"{r['traced'] / steps:>6.1f}{r['raw']:>10}{r['train']:>7}"
                f"{r['train'] / steps:>6.1f}{r['pad_mb']:>8.1f}{r['build']:>9.2f}"
                f"{r['simplify']:>11.2f}{r['step'] * 1e3:>9.1f}")
        if args.memory:
            line += f"{r['peak'] / 2**20:>9.1f}"
        print(line, flush=True)
    if args.profile:
        print("\nsimplify, seconds per pass (summed over rounds):")
        for r in rows:
            parts = ", ".join(f"{k} {v:.2f}" for k, v in
                              sorted(r["passes"].items(), key=lambda kv: -kv[1]))
            print(f"  {r['layer']} T={r['T']} chunk={r['chunk']}: {parts}")
    return rows


if __name__ == "__main__":
    main()
