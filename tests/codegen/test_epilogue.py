"""Epilogue formation (graphc/codegen/epilogue.py) and its CPU rendering: bias, activation,
residual add and activation-gradient masks fold into matmul / conv kernels when the
contraction's output has that one elementwise reader at the same index, and nowhere else;
the fused code agrees with the reference and is bit-identical run to run."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("llvmlite")

import graphc  # noqa: E402
from graphc.codegen.cpu import templates  # noqa: E402
from graphc.codegen.epilogue import fuse_epilogues, vector_subset  # noqa: E402
from graphc.codegen.kernel import (Acc, Buffer, Load, LoopKernel, Op, Program, Store,  # noqa: E402
                                   TemplateKernel, Var, flatten, format_expr)
from graphc.codegen.lowering import lower_graph  # noqa: E402
from graphc.frontend.layers.base import reset_name_counters  # noqa: E402
from graphc.ir.dtypes import DType  # noqa: E402
from graphc.layers import Add, Conv2D, Dense, Flatten, Input, MaxPooling2D  # noqa: E402
from graphc.models import Model, Sequential  # noqa: E402
from graphc.passes import train_step as ts  # noqa: E402
from graphc.runtime.backends import get_backend  # noqa: E402
from graphc.utils import set_random_seed  # noqa: E402


def _mlp():
    set_random_seed(0)
    reset_name_counters()
    m = Sequential([Dense(40, activation="relu", input_dim=20), Dense(24, activation="relu"),
                    Dense(5, activation="softmax")])
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    return m


def _cnn():
    set_random_seed(0)
    reset_name_counters()
    m = Sequential([Conv2D(8, 3, activation="relu", input_shape=(10, 10, 3)),
                    Conv2D(6, 3, padding="same", activation="relu"), MaxPooling2D(2),
                    Flatten(), Dense(4, activation="softmax")])
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    return m


def _program(model, kind, batch):
    if kind == "predict":
        step = ts.build_predict_graph(model, ts.model_input_types(model, batch))
    else:
        step = ts.build_train_graph(model, ts.model_input_types(model, batch),
                                    ts.default_target_types(model, batch))
    g = get_backend("cpu").prepare(step.graph)
    return step, lower_graph(g)


def _epilogues(p, op=None):
    return [k for k in p.kernels if isinstance(k, TemplateKernel) and k.epilogue is not None
            and (op is None or k.op == op)]


def _new_temp(bufs):
    def new_temp(shape, dtype, name=""):
        b = Buffer(len(bufs), tuple(shape), dtype, "temp", name)
        bufs.append(b)
        return b
    return new_temp


def _expand(p, k):
    bufs = list(p.buffers)
    return templates.expand(k, bufs, _new_temp(bufs), {})

@pytest.fixture(autouse=True)
def _fuse_small_gemms(monkeypatch):
    # These tests check the fusion machinery on small, fast shapes; production skips GEMM
    # epilogue variants below templates.MIN_EPILOGUE_GEMM_FLOPS (compile time).
    monkeypatch.setattr(templates, "MIN_EPILOGUE_GEMM_FLOPS", 0)


def _packed_only(monkeypatch):
    # Every float32 matmul on the packed GEMM (none on smallgemm.py's kernels).
    monkeypatch.setattr(templates, "SMALL_GEMM_MAX_MADDS", 0)
    monkeypatch.setattr(templates, "SMALL_GEMM_MAX_ROWS_ANY_SIZE", 0)


def test_small_packed_matmuls_keep_their_epilogue_loop(monkeypatch):
    monkeypatch.setattr(templates, "MIN_EPILOGUE_GEMM_FLOPS", 1 << 24)
    _packed_only(monkeypatch)
    _, p = _program(_mlp(), "predict", 16)
    q = fuse_epilogues(p, templates.epilogue_supported)
    assert not _epilogues(q, "matmul")


def test_small_gemm_kernels_take_epilogues_of_few_loads(monkeypatch):
    # smallgemm.py's kernels are specialized per shape anyway: an epilogue costs them no
    # extra variant, so the packed path's size threshold does not apply ...
    monkeypatch.setattr(templates, "MIN_EPILOGUE_GEMM_FLOPS", 1 << 24)
    _, p = _program(_mlp(), "predict", 16)
    q = fuse_epilogues(p, templates.epilogue_supported)
    eps = _epilogues(q, "matmul")
    assert len(eps) == 3
    pieces = _expand(q, eps[0])
    assert len(pieces) == 1 and isinstance(pieces[0], templates.ExternKernel)
    assert pieces[0].epilogue_fused and len(pieces[0].inputs) == 3     # x, w, bias
    # ... but a sum of many buffers (an RNN's gradient summed over time steps) stays a loop.
    k = eps[0]
    out = q.buffers[k.output]
    idx = flatten([Var(0), Var(1)], out.shape)
    many = Acc(DType.f32)
    for b in q.buffers[:templates.SMALL_GEMM_EPILOGUE_LOADS + 1]:
        many = Op("add", (many, Load(b.id, idx, DType.f32)), DType.f32)
    few = Op("add", (Acc(DType.f32), Load(q.buffers[0].id, idx, DType.f32)), DType.f32)
    assert templates.epilogue_supported(k, few, q.buffers)
    assert not templates.epilogue_supported(k, many, q.buffers)


# ----------------------------------------------------------------------------- formation


def test_dense_relu_forward_fuses_bias_and_relu_into_the_gemm():
    _, p = _program(_mlp(), "predict", 16)
    q = fuse_epilogues(p, templates.epilogue_supported)
    eps = _epilogues(q, "matmul")
    assert len(eps) == 3                    # relu, relu, and the logits' bias
    text = [format_expr(k.epilogue) for k in eps]
    assert text[0].startswith("maximum(add(acc, ") and text[0].endswith(", 0.0)")
    assert text[2].startswith("add(acc, ")
    # The bias+relu loops are gone and their intermediates are no longer read or written.
    assert len(q.kernels) == len(p.kernels) - 3
    for k in eps:
        orig = next(t for t in p.kernels if isinstance(t, TemplateKernel) and t.name == k.name)
        assert q.buffers[orig.output].size == 0
    # On the small-GEMM path (16 rows) the epilogue runs in the register tile's store ...
    pieces = _expand(q, eps[0])
    assert len(pieces) == 1 and pieces[0].epilogue_fused
    assert isinstance(pieces[0], templates.ExternKernel)


def test_dense_relu_forward_fuses_into_the_packed_gemm(monkeypatch):
    # ... and on the packed GEMM in the micro-kernel's store.
    _packed_only(monkeypatch)
    _, p = _program(_mlp(), "predict", 16)
    q = fuse_epilogues(p, templates.epilogue_supported)
    eps = _epilogues(q, "matmul")
    assert len(eps) == 3
    pieces = _expand(q, eps[0])
    assert len(pieces) == 1 and pieces[0].epilogue_fused
    assert "maximum" in pieces[0].info["epilogue"]


def test_conv_relu_forward_fuses_into_the_conv_kernel():
    _, p = _program(_cnn(), "predict", 4)
    q = fuse_epilogues(p, templates.epilogue_supported)
    eps = _epilogues(q, "conv2d")
    assert len(eps) == 2
    assert all(format_expr(k.epilogue).startswith("maximum(add(acc, ") for k in eps)
    pieces = _expand(q, eps[0])
    assert len(pieces) == 1 and isinstance(pieces[0], templates.ExternKernel)
    assert pieces[0].epilogue_fused
    assert len(pieces[0].inputs) == 3       # x, w and the bias


def test_backward_relu_mask_fuses_into_the_input_gradient():
    _, p = _program(_mlp(), "train", 16)
    q = fuse_epilogues(p, templates.epilogue_supported)
    masks = [k for k in _epilogues(q, "matmul") if "greater(" in format_expr(k.epilogue)]
    assert len(masks) == 2                  # dX of layers 2 and 3, masked by relu'
    assert all(_expand(q, k)[0].epilogue_fused for k in masks)
    _, p = _program(_cnn(), "train", 4)
    q = fuse_epilogues(p, templates.epilogue_supported)
    (bi,) = _epilogues(q, "conv2d_backprop_input")    # conv2's dx, masked by conv1's relu'
    assert "greater(" in format_expr(bi.epilogue)
    pieces = _expand(q, bi)
    assert pieces[-1].epilogue_fused and len(pieces[-1].inputs) == 3
    # The forward convs keep bias epilogues (relu's input is read again by relu').
    assert len(_epilogues(q, "conv2d")) == 2


def _manual(readers):
    """matmul(b0, b1) -> b2 [8, 8], then loop kernels from ``readers``: (index of b2, out)."""
    f32 = DType.f32
    bufs = [Buffer(0, (8, 8), f32, "input", "x"), Buffer(1, (8, 8), f32, "param", "w"),
            Buffer(2, (8, 8), f32, "temp")]
    kernels = [TemplateKernel("k0_matmul", "matmul", [0, 1], 2, {})]
    i0, i1 = Var(0), Var(1)
    outs = []
    for n, idx in enumerate(readers):
        bid = len(bufs)
        bufs.append(Buffer(bid, (8, 8), f32, "output", f"y{n}"))
        ld = Load(2, flatten(idx(i0, i1), (8, 8)), f32)
        kernels.append(LoopKernel(f"k{n + 1}_relu", (8, 8), [Store(
            bid, flatten([i0, i1], (8, 8)), Op("maximum", (ld, Load(0, flatten([i0, i1], (8, 8)),
                                                                     f32)), f32))]))
        outs.append(bid)
    return Program("t", bufs, kernels, [0], [1], outs, [f"y{n}" for n in range(len(outs))])


def test_no_fusion_with_other_readers_or_another_index():
    same = lambda i, j: [i, j]          # noqa: E731
    p = _manual([same])
    q = fuse_epilogues(p)
    assert len(q.kernels) == 1 and q.kernels[0].output == 3
    assert format_expr(q.kernels[0].epilogue) == "maximum(acc, b0[(i0*8 + i1)])"
    p = _manual([same, same])               # two readers of the matmul's output
    assert fuse_epilogues(p) is p
    p = _manual([lambda i, j: [j, i]])      # reads the transpose: not the same element
    assert fuse_epilogues(p) is p
    # The program's outputs are never folded away.
    p = _manual([same])
    p.buffers[2].kind = "output"
    p.outputs.append(2)
    assert fuse_epilogues(p) is p


def test_vector_subset():
    f32 = DType.f32
    acc = Acc(f32)
    bias = Load(5, Var(1), f32)
    assert vector_subset(Op("maximum", (Op("add", (acc, bias), f32), acc), f32), (4, 6))
    assert not vector_subset(Op("exp", (acc,), f32), (4, 6))
    assert not vector_subset(Op("add", (acc, Load(5, Var(0), f32)), f32), (4, 6))  # a row load

# ----------------------------------------------------------------------------- numerics


def _residual_model(n):
    set_random_seed(1)
    reset_name_counters()
    x = Input((n,))
    h = Dense(n)(x)
    out = graphc.layers.Activation("relu")(Add()([h, x]))
    return Model(x, out)


@pytest.mark.parametrize("batch", [1, 3, 37])
def test_residual_bias_relu_epilogue_matches_reference(batch):
    n = 33                                  # not a multiple of the vector width: edges
    model = _residual_model(n)
    _, p = _program(model, "predict", batch)
    q = fuse_epilogues(p, templates.epilogue_supported)
    (k,) = _epilogues(q, "matmul")
    assert format_expr(k.epilogue).count("b0[") == 1        # the residual input, per element
    x = np.random.default_rng(0).standard_normal((batch, n)).astype(np.float32)
    ref = graphc.compile(model, target="reference").predict_on_batch(x)
    cpu = graphc.compile(model, target="cpu")
    a, b = cpu.predict_on_batch(x), cpu.predict_on_batch(x)
    np.testing.assert_allclose(a, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make,shape,packed", [(_mlp, (20,), False), (_mlp, (20,), True),
                                               (_cnn, (10, 10, 3), False)])
def test_fused_train_steps_match_reference_and_repeat_bit_identically(make, shape, packed,
                                                                      monkeypatch):
    if packed:          # the epilogues in the packed GEMM's micro-kernel, not smallgemm.py
        _packed_only(monkeypatch)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((16,) + shape).astype(np.float32)
    ncls = make().outputs[0].shape[-1]
    y = np.eye(ncls, dtype=np.float32)[rng.integers(0, ncls, 16)]
    runs = []
    for target in ("reference", "cpu", "cpu"):
        m = make()
        exe = graphc.compile(m, target=target)
        exe.seed = np.array(5, np.int64)
        losses = [exe.train_on_batch(x, y) for _ in range(3)]
        runs.append((losses, m.get_weights(), exe.predict_on_batch(x)))
        if target == "cpu" and make is _mlp:     # which GEMM path the step took
            gemms = [fn.module_info.gemms for _, fn in exe._steps.values()]
            assert all(bool(g) == packed for g in gemms)
    (lr, wr, pr), (lc, wc, pc), (lc2, wc2, pc2) = runs
    np.testing.assert_allclose(np.ravel(lc), np.ravel(lr), rtol=1e-5)
    for a, b in zip(wr, wc):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * max(np.abs(a).max(), 1e-3))
    np.testing.assert_allclose(pc, pr, rtol=1e-5, atol=1e-6)
    for a, b in zip(wc, wc2):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(pc, pc2)
