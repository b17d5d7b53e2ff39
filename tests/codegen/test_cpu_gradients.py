"""Gradients on the cpu target, in float64, for every differentiable op of the registry, and
whole example models trained on cpu against the reference target.

Per op (walking ``all_ops()``, NOT_DIFFERENTIABLE ones left out): the registry's sampler
draws float64 inputs, a random cotangent is drawn for each float output, the op's VJP rule
builds the gradient graph (as tests/ir/test_registry.py does), and that graph — forward
outputs and gradients — is compiled for the cpu target. Its gradients must agree with
central finite differences of ``sum(ref(x) * cotangent)`` (relative L2 error < 1e-6) and with
the reference interpreter running the same graph (relative L2 error < 1e-10). An op whose
float64 gradient graph the cpu target cannot compile fails with that message.

Models: the seed MLP, the small CNN and the functional two-input example are built twice
from the same seed (same initial weights, same dropout stream), trained 5 steps on
different batches through ``graphc.compile(model, target="cpu")`` and ``target="reference"``:
losses, metrics and weights agree within 1e-4 relative; a second cpu run from the same seed
gives bit-identical weights. (tests/codegen/test_cpu_models.py runs 3 steps on one repeated
batch and checks bit-identity only for digits_cnn; this extends both.)
"""
from __future__ import annotations

import importlib.util
import os
import pathlib

import numpy as np
import pytest

pytest.importorskip("llvmlite")

import graphc  # noqa: E402
from graphc.frontend.layers.base import reset_name_counters  # noqa: E402
from graphc.ir.dtypes import TensorType  # noqa: E402
from graphc.ir.graph import Graph, building  # noqa: E402
from graphc.ir.interpreter import interpret  # noqa: E402
from graphc.ir.registry import NOT_DIFFERENTIABLE, all_ops, get_op  # noqa: E402
from graphc.runtime.backends import get_backend  # noqa: E402
from graphc.utils import set_random_seed  # noqa: E402

CPU = get_backend("cpu")

# Every op with a gradient rule and at least one input (``constant`` has a VJP with nothing
# to differentiate: it takes no inputs).
DIFFERENTIABLE = sorted(n for n, op in all_ops().items()
                        if op.vjp is not NOT_DIFFERENTIABLE and op.arity != 0)
# GRAPHC_HYPOTHESIS_SCALE=10 (as in test_cpu_hypothesis.py) checks 10x the samples per op.
SAMPLES_PER_OP = max(1, int(3 * float(os.environ.get("GRAPHC_HYPOTHESIS_SCALE", "1"))))
FD_STEP = 1e-6
FD_RTOL = 1e-6          # VJP (on cpu) vs central differences, relative L2 error
REF_RTOL = 1e-10        # cpu vs the interpreter on the same float64 gradient graph


def test_every_registered_op_is_classified():
    """The walk below covers every op that has a gradient; the rest declare they have none."""
    ops = all_ops()
    missing = [n for n, op in ops.items() if op.vjp is None]
    assert not missing, f"ops without a vjp declaration: {missing}"
    skipped = sorted(n for n in ops if n not in DIFFERENTIABLE
                     and ops[n].vjp is not NOT_DIFFERENTIABLE)
    assert skipped == ["constant"], skipped


def _is_float(a) -> bool:
    return np.asarray(a).dtype.kind == "f"


def _vjp_graph(name, arrays, attrs, rng):
    """y = op(x) and its VJP for a random cotangent: (graph, cotangent arrays per output,
    indices of the inputs whose gradient the graph outputs, number of forward outputs)."""
    opdef = get_op(name)
    g = Graph(f"vjp_{name}")
    xs = [g.add_input(f"x{i}", TensorType.of(a)) for i, a in enumerate(arrays)]
    with building(g) as b:
        b.emit(name, xs, attrs)
    node = g.nodes[-1]
    ct_vals, cts = [], []
    for j, out in enumerate(node.outputs):
        if out.dtype.is_float:
            ct_vals.append(g.add_input(f"ct{j}", out.type))
            cts.append(rng.standard_normal(out.shape).astype(out.dtype.np))
        else:
            ct_vals.append(None)
            cts.append(None)
    with building(g) as b:
        grads = list(opdef.vjp(b, node, ct_vals))
    assert len(grads) == len(node.inputs), f"{name}: vjp gave {len(grads)} gradients"
    checked = [i for i, x in enumerate(node.inputs)
               if x.dtype.is_float and grads[i] is not None]
    for i in checked:
        assert grads[i].type == node.inputs[i].type, (
            f"{name}: gradient of input {i} is {grads[i].type}, input is {node.inputs[i].type}")
    fwd = [v for v in node.outputs if v.dtype.is_float]
    g.set_outputs(fwd + [grads[i] for i in checked])
    return g, cts, checked, len(fwd)


def _central_differences(opdef, arrays, attrs, cts):
    """d/dx_i sum_j <ref(x)_j, ct_j> for each float input (None for the others)."""
    out = []
    for i, x in enumerate(arrays):
        if not _is_float(x):
            out.append(None)
            continue
        grad = np.zeros(x.shape, np.float64)
        for k in np.ndindex(x.shape):
            h = FD_STEP * max(1.0, abs(float(x[k])))
            plus = [a.copy() for a in arrays]
            minus = [a.copy() for a in arrays]
            plus[i][k] = x[k] + h
            minus[i][k] = x[k] - h
            step = float(plus[i][k]) - float(minus[i][k])
            p, m = opdef.run_ref(plus, attrs), opdef.run_ref(minus, attrs)
            grad[k] = sum(np.sum((np.asarray(a, np.float64) - np.asarray(c, np.float64)) * t)
                          for a, c, t in zip(p, m, cts) if t is not None) / step
        out.append(grad)
    return out


def _rel(a, e):
    a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
    return float(np.linalg.norm(a - e)) / max(float(np.linalg.norm(a + e)) / 2, 1e-12)


def _samples(name):
    """The first SAMPLES_PER_OP seeds whose float64 sample has a gradient to check."""
    opdef = get_op(name)
    assert opdef.sample is not None, f"{name} has no sampler"
    found = []
    for seed in range(200 + 20 * SAMPLES_PER_OP):
        arrays, attrs = opdef.sample(np.random.default_rng(seed), np.float64)
        arrays = [np.asarray(a) for a in arrays]
        attrs = opdef.normalize_attrs(attrs)
        g, cts, checked, _ = _vjp_graph(name, arrays, attrs, np.random.default_rng(seed + 7))
        if checked and any(c is not None for c in cts):
            found.append(seed)
            if len(found) == SAMPLES_PER_OP:
                break
    assert found, f"{name}: no float64 sample with a gradient to check"
    return found


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_vjp_on_cpu_float64(name):
    opdef = get_op(name)
    for seed in _samples(name):
        arrays, attrs = opdef.sample(np.random.default_rng(seed), np.float64)
        arrays = [np.asarray(a) for a in arrays]
        attrs = opdef.normalize_attrs(attrs)
        for a in arrays:
            assert a.dtype.kind != "f" or a.dtype == np.float64, (
                f"{name}: the float64 sampler gave a {a.dtype} input")
        g, cts, checked, nfwd = _vjp_graph(name, arrays, attrs,
                                           np.random.default_rng(seed + 7))
        feed = arrays + [c for c in cts if c is not None]
        what = (f"{name} seed {seed}: inputs "
                f"{[f'{a.dtype}{list(a.shape)}' for a in arrays]}, attrs {attrs}")
        try:
            step = CPU.compile(g)
        except Exception as e:      # noqa: BLE001 - report what the cpu target rejects
            pytest.fail(f"the cpu target cannot compile the float64 gradient graph of "
                        f"{what}: {type(e).__name__}: {e}")
        got = [np.array(o, copy=True) for o in step(feed, [])]
        want = interpret(g, feed)
        assert len(got) == len(want)
        for k, (h, w) in enumerate(zip(got, want)):
            assert h.dtype == w.dtype == np.float64 and h.shape == w.shape, (
                f"{what}: output {k} is {h.dtype}{list(h.shape)}, "
                f"reference {w.dtype}{list(w.shape)}")
            rel = _rel(h, w)
            kind = "forward output" if k < nfwd else f"gradient of input {checked[k - nfwd]}"
            assert rel < REF_RTOL, (
                f"{what}: {kind} on cpu differs from the interpreter: relative L2 error "
                f"{rel:.3g}\ncpu:\n{h}\ninterpreter:\n{w}")
        fd = _central_differences(opdef, arrays, attrs, cts)
        grads = dict(zip(checked, got[nfwd:]))
        for i, e in enumerate(fd):
            if e is None:
                continue
            a = grads.get(i, np.zeros(e.shape))       # no gradient means zero
            rel = _rel(a, e)
            assert rel < FD_RTOL, (
                f"{what}: cpu gradient of input {i} differs from central differences: "
                f"relative L2 error {rel:.3g}\ncpu:\n{a}\nfinite differences:\n{e}")


# ----------------------------------------------------------------------------- models

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
MODELS = ["seed_mlp", "small_cnn", "functional_two_input"]
STEPS = 5
BATCH = 32


def _module(name):
    spec = importlib.util.spec_from_file_location(f"cpu_grad_example_{name}",
                                                  EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _executable(mod, target, seed=0):
    set_random_seed(seed)
    reset_name_counters()           # same layer names: same dropout salts
    model = mod.build_model()
    exe = graphc.compile(model, target=target)
    exe.seed = np.array(4321, np.int64)
    return exe


def _batches(mod, seed=5):
    rng = np.random.default_rng(seed)
    x, y = mod.make_data(BATCH * STEPS, rng)

    def part(a, s):
        return [v[s] for v in a] if isinstance(a, list) else a[s]
    return [(part(x, slice(i * BATCH, (i + 1) * BATCH)), part(y, slice(i * BATCH, (i + 1) * BATCH)))
            for i in range(STEPS)]


def _close(ref, got, rtol, what):
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    scale = max(float(np.abs(ref).max(initial=0.0)), 1e-3)
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * scale, err_msg=what)


def _train(mod, target, batches, seed=0):
    exe = _executable(mod, target, seed)
    w0 = [np.array(w, copy=True) for w in exe.get_weights()]
    logs, weights = [], []
    for x, y in batches:
        logs.append(exe.train_on_batch(x, y, return_dict=True))
        weights.append([np.array(w, copy=True) for w in exe.get_weights()])
    return w0, logs, weights


@pytest.mark.parametrize("name", MODELS)
def test_model_trains_like_reference_and_reproducibly(name):
    mod = _module(name)
    batches = _batches(mod)
    r0, rlogs, rweights = _train(mod, "reference", batches)
    c0, clogs, cweights = _train(mod, "cpu", batches)
    assert len(r0) == len(c0) > 0
    for a, b in zip(r0, c0):
        np.testing.assert_array_equal(a, b, err_msg=f"{name}: initial weights differ")
    for step in range(STEPS):
        assert rlogs[step].keys() == clogs[step].keys()
        for k in rlogs[step]:
            _close(rlogs[step][k], clogs[step][k], 1e-4, f"{name} step {step} {k}")
        for i, (a, b) in enumerate(zip(rweights[step], cweights[step])):
            _close(a, b, 1e-4, f"{name} step {step} weight {i} {a.shape}")
    # The weights moved (the comparison above is not of untouched initial values).
    assert any(not np.array_equal(a, b) for a, b in zip(c0, cweights[-1]))
    # Same seed, second cpu run: bit-identical logs and weights.
    _, clogs2, cweights2 = _train(mod, "cpu", batches)
    assert clogs2 == clogs, f"{name}: losses differ between two cpu runs"
    for step in range(STEPS):
        for i, (a, b) in enumerate(zip(cweights[step], cweights2[step])):
            np.testing.assert_array_equal(a, b, err_msg=f"{name} run 2 step {step} weight {i}")
