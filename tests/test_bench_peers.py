"""The benchmark peers (benchmarks/peers_jax.py, peers_torch.py) train the same models as
graphc: given graphc's initial weights, a peer's loss (and W4's accuracy) over two train steps
and its predictions afterwards match graphc's reference interpreter. This catches a peer that
benchmarks a different model, loss or optimizer (a wrong activation, gate order, flatten
order, Adam/momentum formula). Skipped for a framework that is not installed. Also the
table's arithmetic and the round-robin timing every runner goes through."""
import os
import sys
import time

import numpy as np
import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH)

import bench_workloads as bw  # noqa: E402
import peers_jax  # noqa: E402
import peers_torch  # noqa: E402

WORKLOADS = ["W1", "W2", "W3", "W4"]
# XLA compiles of the LeNet and LSTM steps take ~5-10 s each on the loaded 2-core machine.
SLOW = {("jax", "W2"), ("jax", "W3")}
CASES = [pytest.param(fw, w, id=f"{w}-{fw}", marks=[pytest.mark.slow] if (fw, w) in SLOW else [])
         for fw in ("jax", "torch") for w in WORKLOADS]


def _data(workload, rng):
    """A small batch of each workload's inputs and targets (graphc's NHWC and one-hot)."""
    if workload == "W1":
        return rng.random((16, 784), dtype=np.float32), bw._one_hot(rng, 16)
    if workload == "W2":
        return rng.random((8, 28, 28, 1), dtype=np.float32), bw._one_hot(rng, 8)
    if workload == "W3":
        x = rng.standard_normal((4, 32, 16)).astype(np.float32)
        return x, np.array([[0], [1], [1], [0]], np.float32)
    x = rng.random((32, 10), dtype=np.float32)
    return x, (x[:, :1] + x[:, 1:2] > 1).astype(np.float32)


def _jax_params(workload, w):
    """graphc's weight list as the peers_jax parameter pytree."""
    import jax.numpy as jnp
    w = [jnp.asarray(a) for a in w]
    dense = [{"w": k, "b": b} for k, b in zip(w[::2], w[1::2])]
    if workload == "W2":
        return {"c1": dense[0], "c2": dense[1], "fc": dense[2:]}
    if workload == "W3":
        return {"w": w[0], "u": w[1], "b": w[2], "head": {"w": w[3], "b": w[4]}}
    return dense


def _torch_load(net, w):
    """graphc's weights into the torch net's Linear/Conv2d/LSTM modules, in order."""
    import torch
    from torch import nn
    w = list(w)
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, nn.Conv2d):
                k, b = w.pop(0), w.pop(0)
                mod.weight.copy_(torch.from_numpy(k.transpose(3, 2, 0, 1)))   # HWIO -> OIHW
                mod.bias.copy_(torch.from_numpy(b))
            elif isinstance(mod, nn.Linear):
                k, b = w.pop(0), w.pop(0)
                if k.shape[0] == 400:   # LeNet's first dense: graphc flattens HWC, torch CHW
                    k = k.reshape(5, 5, 16, -1).transpose(2, 0, 1, 3).reshape(400, -1)
                mod.weight.copy_(torch.from_numpy(np.ascontiguousarray(k.T)))
                mod.bias.copy_(torch.from_numpy(b))
            elif isinstance(mod, nn.LSTM):
                k, rk, b = w.pop(0), w.pop(0), w.pop(0)   # Keras gate order i,f,c,o = torch's
                mod.weight_ih_l0.copy_(torch.from_numpy(np.ascontiguousarray(k.T)))
                mod.weight_hh_l0.copy_(torch.from_numpy(np.ascontiguousarray(rk.T)))
                mod.bias_ih_l0.copy_(torch.from_numpy(b))
                # torch's second bias would take the same gradient step again: freeze it at
                # zero so the update is Keras' (the benchmark keeps it: same cost).
                mod.bias_hh_l0.zero_()
                mod.bias_hh_l0.requires_grad_(False)
    assert not w


def _peer(framework, workload, weights):
    if framework == "jax":
        if not peers_jax.available():
            pytest.skip("jax not installed")
        runner = getattr(peers_jax, workload.lower())()
        runner.load(_jax_params(workload, weights))
        return runner
    if not peers_torch.available():
        pytest.skip("torch not installed")
    runner = getattr(peers_torch, workload.lower())(False)
    _torch_load(runner.net, weights)
    return runner


def _scalars(out):
    return np.atleast_1d(np.asarray([np.asarray(v) for v in (out if isinstance(out, (tuple, list))
                                                             else (out,))], np.float64))


@pytest.mark.parametrize("framework, workload", CASES)
def test_peer_matches_graphc_reference(framework, workload):
    rng = np.random.default_rng(1)
    x, y = _data(workload, rng)
    model, exe = getattr(bw, f"_graphc_{workload.lower()}")("reference")
    runner = _peer(framework, workload, model.get_weights())
    for t in (1, 2):
        if framework == "torch" and isinstance(runner.opt, __import__("torch").optim.Adam):
            # torch adds epsilon to the bias-corrected sqrt(v), Keras to the raw one: the
            # same update needs torch's eps = Keras' eps / sqrt(1 - beta2**t) at step t.
            runner.opt.param_groups[0]["eps"] = 1e-7 / np.sqrt(1 - 0.999 ** t)
        want = _scalars(exe.train_on_batch(x, y))            # loss (, accuracy)
        got = _scalars(runner.step(x, y))
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(runner.predict(x)()), exe.predict_on_batch(x),
                               rtol=1e-3, atol=2e-5)


def test_ratio_column_uses_the_best_of_all_peers():
    rate = bw.Metric("train steps/s", "steps/s", None)
    row = bw.make_row("W1", rate, {"graphc": 300.0, "torch": 100.0, "torch.compile": 150.0,
                                   "jax": 120.0}, bound=400.0)
    assert row[3] == ("torch 100, torch.compile 150, jax 120, numpy-GEMM bound 400")
    assert row[4] == "2.00x (75% of the numpy-GEMM bound)"
    fit = bw.Metric("fit", "s", None, lower=True)
    row = bw.make_row("W4", fit, {"graphc": (1.0, 0.1), "torch": (4.0, 0.5),
                                  "jax": (2.0, 0.8)})
    assert row[2] == "1 / 0.1 s" and row[4] == "2.00x / 5.00x"
    assert bw.make_row("W4", fit, {"graphc": (1.0, 0.1)})[3:] == ("no peer", "—")


def test_rates_are_timed_in_turns_and_a_failing_runner_is_dropped(capsys):
    calls = []

    def runner(name, cost):
        def fn():
            calls.append(name)
            t = time.perf_counter()
            while time.perf_counter() - t < cost:
                pass
        return fn

    def broken():
        raise RuntimeError("no such backend")
    rates = bw._rates_round_robin({"fast": runner("fast", 1e-4), "slow": runner("slow", 4e-4),
                                   "broken": broken}, min_time=0.05, windows=3, settle=0)
    assert set(rates) == {"fast", "slow"} and rates["fast"] > 2 * rates["slow"] > 0
    assert "broken failed: RuntimeError: no such backend" in capsys.readouterr().out
    # Turns: the runners' windows alternate (fast's calls, then slow's, ... 3 times each).
    runs = [calls[0]] + [b for a, b in zip(calls, calls[1:]) if a != b]
    assert runs[2:] == ["fast", "slow"] * 3      # (after one warm-up call each)
