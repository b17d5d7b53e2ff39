"""The cuda target on a real GPU, against the device's measured peak and PyTorch on the same GPU.

    python benchmarks/bench_cuda.py [--only mlp,lenet,matmul,vgg] [--batch 128] [--kernels]
                                    [--write]

Workloads (fp32, batch 128): MLP 784-512-256-10 (Adam), LeNet-5 (SGD momentum), a 4096^3
matmul (graphc's GEMM kernel alone, operands on the device), a VGG-style CNN on 32x32x3
(conv64-conv64-pool-conv128-conv128-pool-conv256-conv256-pool-dense256-dense10, Adam).

For each: train steps/s through ``Executable.train_on_batch`` (the runtime: parameters and
optimizer slots stay on the device under each Variable's device lease; the batch goes up,
logs come down, plus the Python of a Keras call) and through ``CudaStep.run_resident``
called directly (the step alone), achieved TFLOP/s (matmul/conv FLOPs of
the step) and GB/s (bytes of every kernel's arguments) against the peaks measured here
(an FMA-bound kernel, a device-to-device copy), and PyTorch's steps/s (eager, TF32 off) when
torch with CUDA is installed. ``--kernels`` adds the ten slowest kernels of each step (CUDA
events). ``--write`` appends the table to benchmarks/RESULTS.md.

Without a GPU it exits with a message (status 2); ``--smoke`` runs every code path on tiny
shapes under the CUDA simulator (NUMBA_ENABLE_CUDASIM=1) to check the script, not to time.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# ``numba.cuda``, imported by main() once NUMBA_ENABLE_CUDASIM is settled. A module global:
# the simulator swaps the kernels' global ``cuda`` for its fake module (not a closure's).
cuda = None


def _rate(fn, min_time=1.0, min_reps=3, sync=None):
    if min_time <= 0:
        min_reps = 1
    """Calls per second of ``fn`` after a warm-up call (``sync`` waits for the device)."""
    fn()
    if sync:
        sync()
    reps, start = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        if sync:
            sync()
        el = time.perf_counter() - start
        if el >= min_time and reps >= min_reps:
            return reps / el

# ----------------------------------------------------------------------------- peaks


def measure_peaks(smoke=False):
    """(fp32 TFLOP/s, GB/s) this device reaches with simple numba kernels."""
    import numba
    from numba import float32

    @cuda.jit
    def fma_chain(out, n):
        i = cuda.grid(1)
        x = float32(i) * float32(1e-9)
        a0, a1, a2, a3 = x, x + float32(1), x + float32(2), x + float32(3)
        a4, a5, a6, a7 = x + float32(4), x + float32(5), x + float32(6), x + float32(7)
        m, c = float32(0.999999), float32(1e-7)
        for _ in range(n):
            a0 = a0 * m + c
            a1 = a1 * m + c
            a2 = a2 * m + c
            a3 = a3 * m + c
            a4 = a4 * m + c
            a5 = a5 * m + c
            a6 = a6 * m + c
            a7 = a7 * m + c
        out[i] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7

    @cuda.jit
    def copy(src, dst):
        i = cuda.grid(1)
        s = cuda.gridsize(1)
        while i < src.size:
            dst[i] = src[i]
            i += s

    del numba
    if smoke:
        blocks, threads, n, size = 1, 4, 4, 256
    else:
        sms = cuda.get_current_device().MULTIPROCESSOR_COUNT
        blocks, threads, n, size = sms * 16, 256, 4096, 1 << 27
    out = cuda.device_array(blocks * threads, np.float32)
    mt = 0.0 if smoke else 0.5
    rate = _rate(lambda: fma_chain[blocks, threads](out, n), mt, sync=cuda.synchronize)
    tflops = rate * 2 * 8 * n * blocks * threads / 1e12
    src = cuda.device_array(size, np.float32)
    dst = cuda.device_array(size, np.float32)
    grid = max(1, min(size // 256, 65535))
    threads = 4 if smoke else 256
    rate = _rate(lambda: copy[grid, threads](src, dst), mt, sync=cuda.synchronize)
    gbs = rate * 2 * size * 4 / 1e9
    return tflops, gbs

# ----------------------------------------------------------------------------- models


def _mlp(smoke=False):
    from graphc.layers import Dense
    from graphc.models import Sequential
    d_in, h1, h2 = (12, 8, 6) if smoke else (784, 512, 256)
    m = Sequential([Dense(h1, activation="relu", input_dim=d_in),
                    Dense(h2, activation="relu"), Dense(10, activation="softmax")])
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    return m, (d_in,)


def _lenet(smoke=False):
    from graphc.layers import Conv2D, Dense, Flatten, MaxPooling2D
    from graphc.models import Sequential
    from graphc.optimizers import SGD
    hw, c1, c2, d1, d2 = (12, 2, 3, 8, 6) if smoke else (28, 6, 16, 120, 84)
    m = Sequential([Conv2D(c1, 5, padding="same", activation="relu", input_shape=(hw, hw, 1)),
                    MaxPooling2D(2), Conv2D(c2, 5, activation="relu"), MaxPooling2D(2),
                    Flatten(), Dense(d1, activation="relu"), Dense(d2, activation="relu"),
                    Dense(10, activation="softmax")])
    m.compile(optimizer=SGD(0.01, momentum=0.9), loss="categorical_crossentropy")
    return m, (hw, hw, 1)


def _vgg(smoke=False):
    from graphc.layers import Conv2D, Dense, Flatten, MaxPooling2D
    from graphc.models import Sequential
    w = (4, 4, 4) if smoke else (64, 128, 256)
    hw = 8 if smoke else 32
    layers = []
    for i, c in enumerate(w):
        kw = {"input_shape": (hw, hw, 3)} if i == 0 else {}
        layers += [Conv2D(c, 3, padding="same", activation="relu", **kw),
                   Conv2D(c, 3, padding="same", activation="relu"), MaxPooling2D(2)]
    layers += [Flatten(), Dense(8 if smoke else 256, activation="relu"),
               Dense(10, activation="softmax")]
    m = Sequential(layers)
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    return m, (hw, hw, 3)


def step_flops(program) -> int:
    """FLOPs of the contractions (matmul, conv and its gradients) of one step."""
    from graphc.codegen.kernel import TemplateKernel
    bufs = program.buffers
    flops = 0
    for k in program.kernels:
        if isinstance(k, TemplateKernel):
            out = bufs[k.output]
            ins = [bufs[i] for i in k.inputs]
            # A conv split along K (graphc/codegen/cuda/conv.py) writes S partial outputs.
            out_size = out.size // k.attrs.get("split_k", 1)
            if k.op == "matmul":
                flops += 2 * out.size * ins[0].shape[-1]
            elif k.op in ("conv2d", "conv2d_backprop_input"):
                kh, kw, cg, _ = ins[1].shape
                ref_size = out_size if k.op == "conv2d" else ins[0].size
                flops += 2 * ref_size * kh * kw * cg
            elif k.op == "conv2d_backprop_filter":
                kh, kw, cg, _ = out.shape[-4:]
                flops += 2 * ins[1].size * kh * kw * cg
    return flops


def kernel_bytes(step) -> int:
    """Bytes of every launched kernel's arguments: what one step reads and writes at least
    once (the GB/s it reaches is a lower bound of its memory traffic)."""
    return sum(sum(step.program.buffers[b].nbytes for b in set(ln.source.args))
               for ln in step._launches)


class _LeasedVariable:
    """What ``run_resident`` needs of a Variable (see graphc.codegen.cuda.backend)."""

    def __init__(self, array):
        self._value = np.array(array, copy=True)
        self._device = None

    @property
    def value(self):
        if self._device is not None:
            self._device.pull(self)
        return self._value


def bench_model(name, build, batch, smoke, show_kernels):
    import graphc
    graphc.utils.set_random_seed(0)
    model, in_shape = build()
    exe = graphc.compile(model, target="cuda")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + in_shape).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)]
    t0 = time.perf_counter()
    exe.train_on_batch(x, y)
    compile_s = time.perf_counter() - t0
    mt = 0.0 if smoke else 2.0
    sps = _rate(lambda: exe.train_on_batch(x, y), mt)
    step, fn = next(v for k, v in exe._steps.items() if k[0] == "train")
    variables = [_LeasedVariable(v.value) for v in step.params]
    xs, ys, sws = exe._prepare_xy([x], [y], None)
    args = xs + ys + sws + [exe.seed]
    res = _rate(lambda: fn.run_resident(args, variables), mt, sync=cuda.synchronize)
    flops = step_flops(fn.program)
    nbytes = kernel_bytes(fn)
    row = {"name": name, "batch": batch, "compile_s": compile_s, "steps_s": sps,
           "resident_steps_s": res, "tflops": flops * res / 1e12,
           "gbs": nbytes * res / 1e9, "kernels": len(fn._launches)}
    if show_kernels:
        row["top"] = kernel_times(fn, args, variables)
    return row


def kernel_times(fn, args, variables):
    """The ten slowest kernels of one resident step (CUDA events around each launch)."""
    from graphc.codegen.cuda.program import Launch
    times = []
    orig = Launch.launch

    def timed(self, arrays):
        a, b = cuda.event(), cuda.event()
        a.record()
        orig(self, arrays)
        b.record()
        b.synchronize()
        times.append((a.elapsed_time(b), self.source.name, self.source.schedule))
    Launch.launch = timed
    try:
        fn.run_resident(args, variables)
    finally:
        Launch.launch = orig
    return sorted(times, reverse=True)[:10]


def bench_matmul(n, smoke):
    """graphc's GEMM kernel alone on n x n x n, operands already on the device."""
    from graphc.codegen.cuda.program import CudaProgram
    from graphc.codegen.lowering import lower_graph
    from graphc.ir.dtypes import DType, TensorType
    from graphc.ir.graph import Graph
    g = Graph("mm")
    a = g.add_input("a", TensorType((n, n), DType.f32))
    b = g.add_input("b", TensorType((n, n), DType.f32))
    g.set_outputs([g.builder.matmul(a, b)])
    prog = lower_graph(g)
    cp = CudaProgram(prog)
    ln = next(x for x in cp.launches if x.source.name.endswith("matmul"))
    rng = np.random.default_rng(0)
    ha = rng.standard_normal((n, n)).astype(np.float32)
    hb = rng.standard_normal((n, n)).astype(np.float32)
    dev = {0: cuda.to_device(ha.reshape(-1)), 1: cuda.to_device(hb.reshape(-1))}
    for bid in ln.source.args:
        if bid not in dev:
            dev[bid] = cuda.device_array(prog.buffers[bid].size, np.float32)
    arrays = [dev[bid] for bid in ln.source.args]
    rate = _rate(lambda: ln.launch(arrays), 0.0 if smoke else 2.0, sync=cuda.synchronize)
    out = dev[ln.source.args[-1]].copy_to_host().reshape(n, n)
    err = float(np.abs(out - ha @ hb).max() / max(np.abs(ha @ hb).max(), 1e-30))
    return {"name": f"matmul {n}^3", "tflops": 2 * n ** 3 * rate / 1e12, "calls_s": rate,
            "gbs": 3 * n * n * 4 * rate / 1e9, "rel_err": err, "schedule": ln.source.schedule}

# ----------------------------------------------------------------------------- torch


def torch_peer(name, batch, n=4096, smoke=False):
    """PyTorch steps/s (or TFLOP/s for the matmul) on the same GPU; None without it."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cuda.matmul.allow_tf32 = False     # fp32 against fp32
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    sync = torch.cuda.synchronize
    if name == "matmul":
        a = torch.randn(n, n, device=dev)
        b = torch.randn(n, n, device=dev)
        rate = _rate(lambda: a @ b, 2.0, sync=sync)
        return {"tflops": 2 * n ** 3 * rate / 1e12}
    nn = torch.nn
    if name == "mlp":
        net = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                            nn.Linear(256, 10))
        x = torch.randn(batch, 784, device=dev)
        opt_fn = lambda p: torch.optim.Adam(p, 1e-3)                  # noqa: E731
    elif name == "lenet":
        net = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                            nn.Linear(84, 10))
        x = torch.randn(batch, 1, 28, 28, device=dev)
        opt_fn = lambda p: torch.optim.SGD(p, 0.01, momentum=0.9)     # noqa: E731
    else:
        layers, cin = [], 3
        for c in (64, 128, 256):
            layers += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1),
                       nn.ReLU(), nn.MaxPool2d(2)]
            cin = c
        net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(256 * 16, 256), nn.ReLU(),
                            nn.Linear(256, 10))
        x = torch.randn(batch, 3, 32, 32, device=dev)
        opt_fn = lambda p: torch.optim.Adam(p, 1e-3)                  # noqa: E731
    net = net.to(dev)
    opt = opt_fn(net.parameters())
    y = torch.randint(0, 10, (batch,), device=dev)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        return loss
    return {"steps_s": _rate(step, 2.0, sync=sync), "version": torch.__version__}

# ----------------------------------------------------------------------------- main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="mlp,lenet,matmul,vgg")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--matmul-n", type=int, default=4096)
    p.add_argument("--kernels", action="store_true", help="the ten slowest kernels per step")
    p.add_argument("--write", action="store_true", help="append the table to RESULTS.md")
    p.add_argument("--smoke", action="store_true",
                   help="tiny shapes under the simulator: checks the script, times nothing")
    args = p.parse_args(argv)
    if args.smoke:
        os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
    global cuda
    from graphc.codegen.cuda import simulator_enabled
    from numba import cuda as numba_cuda
    cuda = numba_cuda
    if simulator_enabled() and not args.smoke:
        print("bench_cuda: NUMBA_ENABLE_CUDASIM is set; the simulator is not a benchmark "
              "target (use --smoke to check the script on it)")
        return 2
    if not cuda.is_available():
        print("bench_cuda: no NVIDIA GPU found (numba.cuda.is_available() is False); the "
              "CUDA benchmark needs one. Real-GPU figures are pending.")
        return 2
    import graphc.codegen.cuda.backend  # noqa: F401  (registers the 'cuda' target)
    smoke = args.smoke
    batch = 2 if smoke else args.batch
    n = 16 if smoke else args.matmul_n
    dev_name = "simulator" if smoke else cuda.get_current_device().name
    dev_name = dev_name.decode() if isinstance(dev_name, bytes) else str(dev_name)
    peak_tf, peak_gb = measure_peaks(smoke)
    print(f"device: {dev_name}; measured peak {peak_tf:.1f} TFLOP/s fp32, {peak_gb:.0f} GB/s")
    builds = {"mlp": lambda: _mlp(smoke), "lenet": lambda: _lenet(smoke),
              "vgg": lambda: _vgg(smoke)}
    rows = []
    for name in args.only.split(","):
        name = name.strip()
        if name == "matmul":
            r = bench_matmul(n, smoke)
            t = None if smoke else torch_peer("matmul", batch, n)
            rows.append(f"| {r['name']} | — | {r['calls_s']:.1f} calls/s | "
                        f"{r['tflops']:.2f} ({100 * r['tflops'] / peak_tf:.0f}% of peak) | "
                        f"{r['gbs']:.0f} | "
                        f"{'%.2f TFLOP/s' % t['tflops'] if t else 'n/a'} | "
                        f"{r['schedule']}; rel. error {r['rel_err']:.1e} |")
        elif name in builds:
            r = bench_model(name, builds[name], batch, smoke, args.kernels)
            t = None if smoke else torch_peer(name, batch)
            ratio = f" ({r['resident_steps_s'] / t['steps_s']:.2f}x)" if t else ""
            rows.append(f"| {name} b{batch} | {r['steps_s']:.1f} | {r['resident_steps_s']:.1f} "
                        f"steps/s{ratio} | {r['tflops']:.2f} ({100 * r['tflops'] / peak_tf:.0f}%) "
                        f"| {r['gbs']:.0f} ({100 * r['gbs'] / peak_gb:.0f}%) | "
                        f"{'%.1f steps/s' % t['steps_s'] if t else 'n/a'} | "
                        f"{r['kernels']} kernels, compile {r['compile_s']:.1f} s |")
            for ms, kname, sched in r.get("top", []):
                print(f"    {name}: {ms:8.3f} ms  {kname}  {sched}")
        else:
            print(f"unknown workload {name!r}")
            return 2
        print(rows[-1])
    table = ["| workload | steps/s (train_on_batch) | steps/s (resident) | TFLOP/s (of peak) | "
             "GB/s (of peak) | PyTorch | notes |", "|---|---|---|---|---|---|---|"] + rows
    text = "\n".join(table)
    print(f"\n{dev_name}: peak {peak_tf:.1f} TFLOP/s, {peak_gb:.0f} GB/s\n{text}")
    if args.write and not smoke:
        with open(os.path.join(ROOT, "benchmarks", "RESULTS.md"), "a") as f:
            f.write(f"\n## CUDA target — {time.strftime('%Y-%m-%d')}\n\n"
                    f"`python benchmarks/bench_cuda.py` on {dev_name} (measured peak "
                    f"{peak_tf:.1f} TFLOP/s fp32, {peak_gb:.0f} GB/s)\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
