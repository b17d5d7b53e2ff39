"""Issue-3 workloads through graphc's Keras-style API, against peers measured in the same run.

    python benchmarks/bench_workloads.py [--target cpu] [--only W1,W2,W4] [--quick] [--write]

W1  MLP 784-512-256-10 (relu, relu, softmax), Adam, categorical cross-entropy:
    train steps/s at batch 128; predict samples/s at batch 1024; predict latency at batch 1.
W2  LeNet-5 (conv 6@5x5 same, pool, conv 16@5x5 valid, pool, 120, 84, 10), SGD momentum 0.9:
    train steps/s at batch 64; predict samples/s at batch 1024.
W3  LSTM(64) over 32 steps of 16 features -> Dense(1, sigmoid), Adam: train steps/s at batch 32.
W4  the seed MLP (10-64-32-1) fit for 100 epochs at batch 32 on 1,000 samples: seconds for
    the first fit (compile included) and a second, steady-state fit.

Peers, when installed: PyTorch eager and torch.compile, JAX jit of the whole step; numpy's
matmul gives the hardware yardstick (the step's GEMM FLOPs at numpy's measured rate).
Everything prints as ratios; ``--write`` appends the table to benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _rate(fn, min_time=1.0, min_reps=3):
    """Calls per second of ``fn`` (after one warm-up call), timed over at least min_time."""
    fn()
    reps, start = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        el = time.perf_counter() - start
        if el >= min_time and reps >= min_reps:
            return reps / el

# ----------------------------------------------------------------------------- graphc


def _graphc_w1(target):
    import graphc
    from graphc.layers import Dense
    from graphc.models import Sequential
    graphc.utils.set_random_seed(0)
    m = Sequential([Dense(512, activation="relu", input_dim=784),
                    Dense(256, activation="relu"), Dense(10, activation="softmax")])
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    return m, graphc.compile(m, target=target)


def _graphc_w2(target):
    import graphc
    from graphc.layers import Conv2D, Dense, Flatten, MaxPooling2D
    from graphc.models import Sequential
    from graphc.optimizers import SGD
    graphc.utils.set_random_seed(0)
    m = Sequential([Conv2D(6, 5, padding="same", activation="relu", input_shape=(28, 28, 1)),
                    MaxPooling2D(2), Conv2D(16, 5, activation="relu"), MaxPooling2D(2),
                    Flatten(), Dense(120, activation="relu"), Dense(84, activation="relu"),
                    Dense(10, activation="softmax")])
    m.compile(optimizer=SGD(0.01, momentum=0.9), loss="categorical_crossentropy")
    return m, graphc.compile(m, target=target)


def _graphc_w3(target):
    import graphc
    from graphc.layers import LSTM, Dense
    from graphc.models import Sequential
    graphc.utils.set_random_seed(0)
    m = Sequential([LSTM(64, input_shape=(32, 16)), Dense(1, activation="sigmoid")])
    m.compile(optimizer="adam", loss="binary_crossentropy")
    return m, graphc.compile(m, target=target)


def _graphc_w4(target):
    import graphc
    from graphc.layers import Dense
    from graphc.models import Sequential
    graphc.utils.set_random_seed(0)
    m = Sequential([Dense(64, activation="relu", input_dim=10), Dense(32, activation="relu"),
                    Dense(1, activation="sigmoid")])
    m.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return m, graphc.compile(m, target=target)

# ----------------------------------------------------------------------------- torch


def _torch():
    try:
        import torch
        torch.set_num_threads(os.cpu_count() or 1)
        return torch
    except Exception:
        return None


def _torch_step(torch, net, opt, x, y, loss_fn, compiled):
    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        return loss
    return torch.compile(step) if compiled else step


def _torch_w1(torch):
    nn = torch.nn
    net = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                        nn.Linear(256, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    return net, opt, nn.CrossEntropyLoss()


def _torch_w3(torch):
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(16, 64, batch_first=True)
            self.head = nn.Linear(64, 1)

        def forward(self, x):
            return torch.sigmoid(self.head(self.lstm(x)[0][:, -1]))
    net = Net()
    return net, torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7), nn.BCELoss()


def _torch_w2(torch):
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                        nn.Linear(84, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    return net, opt, nn.CrossEntropyLoss()

# ----------------------------------------------------------------------------- numpy


def numpy_gemm_gflops(shapes, min_time=0.5):
    """numpy's matmul GFLOP/s summed over a list of (m, k, n) products."""
    rng = np.random.default_rng(0)
    ops = [(rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32))
           for m, k, n in shapes]
    flops = sum(2 * m * k * n for m, k, n in shapes)
    return _rate(lambda: [a @ b for a, b in ops], min_time) * flops / 1e9, flops


def mlp_step_gemms(batch, dims):
    """(m, k, n) of every matmul in a dense MLP train step (forward, dX, dW)."""
    out = []
    for i, (din, dout) in enumerate(zip(dims[:-1], dims[1:])):
        out.append((batch, din, dout))           # forward
        out.append((din, batch, dout))           # dW = X^T dY
        if i > 0:
            out.append((batch, dout, din))       # dX = dY W^T
    return out

# ----------------------------------------------------------------------------- main


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="cpu")
    ap.add_argument("--only", default="W1,W2,W3,W4")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--write", action="store_true", help="append to benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    t = 0.5 if args.quick else 1.5
    rows = []
    torch = _torch()
    rng = np.random.default_rng(0)

    def row(workload, metric, graphc_value, peers, unit):
        # The numpy-GEMM bound is a yardstick, not a peer: reported as a share of it.
        best = max((v for k, v in peers.items() if v and "bound" not in k), default=None)
        rows.append((workload, metric, graphc_value, peers, best, unit))
        peer_txt = ", ".join(f"{k} {v:.4g}" for k, v in peers.items() if v)
        ratio = f"{graphc_value / best:.2f}x best peer" if best else "no peer"
        bound = next((v for k, v in peers.items() if "bound" in k), None)
        if bound:
            ratio += f", {100 * graphc_value / bound:.0f}% of GEMM bound"
        print(f"{workload:3s} {metric:28s} graphc {graphc_value:10.4g} {unit:10s} "
              f"{ratio:18s} [{peer_txt}]", flush=True)

    only = set(args.only.split(","))
    if "W1" in only:
        m, exe = _graphc_w1(args.target)
        x = rng.random((128, 784), dtype=np.float32)
        y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 128)]
        g = _rate(lambda: exe.train_on_batch(x, y), t)
        peers = {}
        if torch is not None:
            net, opt, lf = _torch_w1(torch)
            tx, ty = torch.from_numpy(x), torch.from_numpy(y.argmax(1))
            peers["torch"] = _rate(_torch_step(torch, net, opt, tx, ty, lf, False), t)
            try:
                peers["torch.compile"] = _rate(_torch_step(torch, net, opt, tx, ty, lf, True), t)
            except Exception as e:  # noqa: BLE001 (report, keep benchmarking)
                print(f"    torch.compile failed: {type(e).__name__}: {e}"[:200])
        gf, flops = numpy_gemm_gflops(mlp_step_gemms(128, [784, 512, 256, 10]))
        peers["numpy-GEMM bound"] = gf * 1e9 / flops
        row("W1", "train steps/s (b=128)", g, peers, "steps/s")
        xb = rng.random((1024, 784), dtype=np.float32)
        g = _rate(lambda: exe.predict_on_batch(xb), t) * 1024
        peers = {}
        if torch is not None:
            with torch.no_grad():
                txb = torch.from_numpy(xb)
                peers["torch"] = _rate(lambda: net(txb), t) * 1024
        row("W1", "predict samples/s (b=1024)", g, peers, "samples/s")
        x1 = xb[:1]
        g = 1e6 / _rate(lambda: exe.predict_on_batch(x1), t)
        peers = {}
        if torch is not None:
            with torch.no_grad():
                tx1 = torch.from_numpy(x1)
                peers["torch"] = 1e6 / _rate(lambda: net(tx1), t)
        rows.append(("W1", "predict latency b=1 (us, lower is better)", g, peers, None, "us"))
        print(f"W1  predict latency b=1         graphc {g:10.4g} us         "
              f"[{', '.join(f'{k} {v:.4g}' for k, v in peers.items())}]", flush=True)
    if "W2" in only:
        m, exe = _graphc_w2(args.target)
        x = rng.random((64, 28, 28, 1), dtype=np.float32)
        y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 64)]
        g = _rate(lambda: exe.train_on_batch(x, y), t)
        peers = {}
        if torch is not None:
            net, opt, lf = _torch_w2(torch)
            tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
            ty = torch.from_numpy(y.argmax(1))
            peers["torch"] = _rate(_torch_step(torch, net, opt, tx, ty, lf, False), t)
        row("W2", "train steps/s (b=64)", g, peers, "steps/s")
    if "W3" in only:
        m, exe = _graphc_w3(args.target)
        x = rng.random((32, 32, 16), dtype=np.float32)
        y = rng.integers(0, 2, (32, 1)).astype(np.float32)
        g = _rate(lambda: exe.train_on_batch(x, y), t)
        peers = {}
        if torch is not None:
            net, opt, lf = _torch_w3(torch)
            peers["torch"] = _rate(_torch_step(torch, net, opt, torch.from_numpy(x),
                                               torch.from_numpy(y), lf, False), t)
        row("W3", "train steps/s (b=32, T=32)", g, peers, "steps/s")
    if "W4" in only:
        xs = rng.random((1000, 10), dtype=np.float32)
        ys = (xs[:, 0] + xs[:, 1] > 1).astype(np.int64)
        start = time.perf_counter()
        m, exe = _graphc_w4(args.target)
        exe.fit(xs, ys, epochs=100, batch_size=32, verbose=0)
        first = time.perf_counter() - start
        start = time.perf_counter()
        exe.fit(xs, ys, epochs=100, batch_size=32, verbose=0)
        steady = time.perf_counter() - start
        rows.append(("W4", "fit 100 epochs: first / steady (s)", first, {"steady": steady},
                     None, "s"))
        print(f"W4  fit 100 epochs               first {first:.3f} s, steady {steady:.3f} s")
    if args.write:
        path = os.path.join(ROOT, "benchmarks", "RESULTS.md")
        with open(path, "a") as f:
            f.write(f"\n## bench_workloads — {time.strftime('%Y-%m-%d')} — target {args.target}\n\n")
            f.write(f"`python benchmarks/bench_workloads.py --target {args.target} "
                    f"--only {args.only}{' --quick' if args.quick else ''} --write` on "
                    f"{platform.machine()}, {os.cpu_count()} cores\n\n")
            f.write("| workload | metric | graphc | peers | ratio to best peer |\n|---|---|---|---|---|\n")
            for w, metric, gv, peers, best, unit in rows:
                ptxt = ", ".join(f"{k} {v:.4g}" for k, v in peers.items() if v)
                ratio = f"{gv / best:.2f}x" if best else "—"
                bound = next((v for k, v in peers.items() if "bound" in k), None)
                if bound:
                    ratio += f" ({100 * gv / bound:.0f}% of the numpy-GEMM bound)"
                f.write(f"| {w} | {metric} | {gv:.4g} {unit} | {ptxt} | {ratio} |\n")


if __name__ == "__main__":
    main()
