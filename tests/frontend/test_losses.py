"""Losses and regularizers vs float64 numpy formulas (Keras 3 semantics), eagerly and through
a traced graph run by the reference interpreter; extreme logits and saturated probabilities
stay finite; reductions, sample weights, label shapes and dtypes; get() forms."""
import numpy as np
import pytest

import graphc.losses as L
import graphc.regularizers as R
from graphc.errors import ShapeError, UnknownNameError
from graphc.frontend import ops
from graphc.frontend.tracing import TraceContext
from graphc.ir.dtypes import TensorType
from graphc.ir.graph import Graph
from graphc.ir.interpreter import interpret

EPS = 1e-7


def run_graph(fn, *arrays):
    g = Graph("t")
    ins = [g.add_input(f"x{i}", TensorType.of(a)) for i, a in enumerate(arrays)]
    with TraceContext(g):
        out = fn(*ins)
    g.set_outputs([out])
    return interpret(g, list(arrays))[0]


def both(fn, *arrays):
    """Eager and graph results of ``fn`` (they must agree)."""
    e = np.asarray(fn(*arrays))
    g = run_graph(fn, *arrays)
    np.testing.assert_allclose(e, g, rtol=1e-6, atol=1e-7)
    return e


# ---------------------------------------------------------------- float64 numpy references

def np_bce(y, p):
    p = np.clip(p, EPS, 1 - EPS)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(-1)


def np_bce_logits(y, x):
    return (np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))).mean(-1)


def np_cce(y, p):
    p = p / p.sum(-1, keepdims=True)
    return -(y * np.log(np.clip(p, EPS, 1 - EPS))).sum(-1)


def np_log_softmax(x):
    z = x - x.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_msle(y, p):
    return ((np.log(np.maximum(p, EPS) + 1) - np.log(np.maximum(y, EPS) + 1)) ** 2).mean(-1)


rng = np.random.default_rng(1)
N, C = 6, 4
Y_REG = rng.normal(size=(N, 3)).astype(np.float32)
P_REG = rng.normal(size=(N, 3)).astype(np.float32)
Y_POS = rng.uniform(0, 3, size=(N, 3)).astype(np.float32)
P_POS = rng.uniform(0, 3, size=(N, 3)).astype(np.float32)
Y_BIN = rng.integers(0, 2, size=(N, 3)).astype(np.float32)
P_PROB = rng.uniform(0.01, 0.99, size=(N, 3)).astype(np.float32)
LOGITS = rng.normal(scale=3, size=(N, C)).astype(np.float32)
IDS = rng.integers(0, C, size=(N,))
ONEHOT = np.eye(C, dtype=np.float32)[IDS]
PROBS = np.exp(np_log_softmax(LOGITS.astype(np.float64))).astype(np.float32)
f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731


@pytest.mark.parametrize("name,y,p,ref", [
    ("mean_squared_error", Y_REG, P_REG, lambda y, p: ((y - p) ** 2).mean(-1)),
    ("mse", Y_REG, P_REG, lambda y, p: ((y - p) ** 2).mean(-1)),
    ("mean_absolute_error", Y_REG, P_REG, lambda y, p: np.abs(y - p).mean(-1)),
    ("mae", Y_REG, P_REG, lambda y, p: np.abs(y - p).mean(-1)),
    ("mean_squared_logarithmic_error", Y_POS, P_POS,
     np_msle),
    ("msle", Y_REG, P_REG,  # negatives are floored at epsilon, as Keras
     np_msle),
    ("binary_crossentropy", Y_BIN, P_PROB, np_bce),
    ("categorical_crossentropy", ONEHOT, PROBS, np_cce),
    ("hinge", Y_BIN, P_REG, lambda y, p: np.maximum(1 - (2 * y - 1) * p, 0).mean(-1)),
    ("squared_hinge", Y_BIN, P_REG,
     lambda y, p: (np.maximum(1 - (2 * y - 1) * p, 0) ** 2).mean(-1)),
    ("hinge", np.where(Y_BIN > 0, 1.0, -1.0).astype(np.float32), P_REG,
     lambda y, p: np.maximum(1 - y * p, 0).mean(-1)),
    ("hinge", Y_REG, P_REG,  # not all 0/1: labels used as given
     lambda y, p: np.maximum(1 - y * p, 0).mean(-1)),
])
def test_loss_functions(name, y, p, ref):
    fn = L.get(name).fn
    got = both(fn, y, p)
    assert got.shape == (y.shape[0],)
    np.testing.assert_allclose(got, ref(f64(y), f64(p)), rtol=2e-5, atol=1e-6)


def test_binary_crossentropy_logits_and_smoothing():
    x = rng.normal(scale=4, size=(N, 3)).astype(np.float32)
    got = both(lambda y, p: L.binary_crossentropy(y, p, from_logits=True), Y_BIN, x)
    np.testing.assert_allclose(got, np_bce_logits(f64(Y_BIN), f64(x)), rtol=2e-5)
    ys = f64(Y_BIN) * 0.8 + 0.1
    got = both(lambda y, p: L.binary_crossentropy(y, p, label_smoothing=0.2), Y_BIN, P_PROB)
    np.testing.assert_allclose(got, np_bce(ys, f64(P_PROB)), rtol=2e-5)
    got = L.BinaryCrossentropy(from_logits=True, label_smoothing=0.2)(Y_BIN, x)
    np.testing.assert_allclose(got, np_bce_logits(ys, f64(x)).mean(), rtol=2e-5)


def test_categorical_crossentropy_logits_smoothing_axis():
    got = both(lambda y, p: L.categorical_crossentropy(y, p, from_logits=True), ONEHOT, LOGITS)
    want = -(f64(ONEHOT) * np_log_softmax(f64(LOGITS))).sum(-1)
    np.testing.assert_allclose(got, want, rtol=2e-5)
    ys = f64(ONEHOT) * 0.9 + 0.1 / C
    got = both(lambda y, p: L.categorical_crossentropy(y, p, label_smoothing=0.1), ONEHOT, PROBS)
    np.testing.assert_allclose(got, np_cce(ys, f64(PROBS)), rtol=2e-5)
    # class axis 0
    got = both(lambda y, p: L.categorical_crossentropy(y, p, from_logits=True, axis=0),
               ONEHOT.T.copy(), LOGITS.T.copy())
    np.testing.assert_allclose(got, want, rtol=2e-5)
    # unnormalized probabilities are normalized by their sum first (Keras)
    got = L.categorical_crossentropy(ONEHOT, PROBS * 3.0)
    np.testing.assert_allclose(got, np_cce(f64(ONEHOT), f64(PROBS)), rtol=2e-5)


@pytest.mark.parametrize("labels", [IDS, IDS.reshape(-1, 1), IDS.astype(np.float32),
                                    IDS.astype(np.int32)])
def test_sparse_categorical_crossentropy(labels):
    want_logits = -np_log_softmax(f64(LOGITS))[np.arange(N), IDS]
    got = both(lambda y, p: L.sparse_categorical_crossentropy(y, p, from_logits=True),
               labels, LOGITS)
    assert got.shape == (N,)
    np.testing.assert_allclose(got, want_logits, rtol=2e-5)
    got = both(L.sparse_categorical_crossentropy, labels, PROBS)
    np.testing.assert_allclose(got, -np.log(f64(PROBS)[np.arange(N), IDS]), rtol=2e-5)
    got = L.SparseCategoricalCrossentropy(from_logits=True)(labels, LOGITS)
    np.testing.assert_allclose(got, want_logits.mean(), rtol=2e-5)


def test_sparse_ignore_class():
    labels = IDS.copy()
    labels[0] = -1
    got = L.sparse_categorical_crossentropy(labels, LOGITS, from_logits=True, ignore_class=-1)
    want = -np_log_softmax(f64(LOGITS))[np.arange(N), np.maximum(labels, 0)]
    want[0] = 0
    np.testing.assert_allclose(got, want, rtol=2e-5)


def test_extreme_logits_are_finite_and_exact():
    x = np.array([[1e4], [-1e4], [1e4], [-1e4], [0.0]], np.float32)
    y = np.array([[1], [0], [0], [1], [1]], np.float32)
    for got in (L.binary_crossentropy(y, x, from_logits=True),
                run_graph(lambda a, b: L.binary_crossentropy(a, b, from_logits=True), y, x)):
        np.testing.assert_allclose(got, [0, 0, 1e4, 1e4, np.log(2)], rtol=1e-6)
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]], np.float32)
    oh = np.array([[1, 0, 0], [1, 0, 0]], np.float32)
    for got in (L.categorical_crossentropy(oh, z, from_logits=True),
                run_graph(lambda a, b: L.categorical_crossentropy(a, b, from_logits=True), oh, z)):
        np.testing.assert_allclose(got, [0, 2e4], rtol=1e-6)
    for got in (L.sparse_categorical_crossentropy(np.array([0, 0]), z, from_logits=True),
                run_graph(lambda a, b: L.sparse_categorical_crossentropy(a, b, from_logits=True),
                          np.array([0, 0]), z)):
        np.testing.assert_allclose(got, [0, 2e4], rtol=1e-6)


def test_saturated_probabilities_are_clipped():
    p = np.array([[0.0], [1.0], [1.0], [0.0]], np.float32)
    y = np.array([[0], [1], [0], [1]], np.float32)
    got = both(L.binary_crossentropy, y, p)
    assert np.all(np.isfinite(got))
    big = -np.log(np.float32(EPS))
    # in float32, 1 - 1e-7 rounds to 1 - 1.19e-7: that is the clip bound Keras gets too
    big_hi = -np.log(1 - np.float64(np.float32(1 - EPS)))
    np.testing.assert_allclose(got, [0, 0, big_hi, big], rtol=1e-3, atol=2e-7)
    oh = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    pr = np.array([[1, 0, 0], [1, 0, 0]], np.float32)
    got = both(L.categorical_crossentropy, oh, pr)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, [0, big], rtol=1e-3, atol=2e-7)
    got = both(L.sparse_categorical_crossentropy, np.array([0, 1]), pr)
    np.testing.assert_allclose(got, [0, big], rtol=1e-3, atol=2e-7)


def test_graph_sigmoid_and_softmax_outputs_use_their_logits():
    """As Keras on TensorFlow: no clipping plateau when y_pred is a sigmoid/softmax node."""
    x = np.array([[30.0], [-30.0], [2.0]], np.float32)
    y = np.array([[0], [1], [1]], np.float32)
    got = run_graph(lambda a, b: L.binary_crossentropy(a, ops.sigmoid(b)), y, x)
    np.testing.assert_allclose(got, np_bce_logits(f64(y), f64(x)), rtol=1e-5)
    z = np.array([[40.0, 0.0, -3.0], [1.0, 2.0, 3.0]], np.float32)
    oh = np.array([[0, 1, 0], [0, 0, 1]], np.float32)
    import graphc.activations as A
    got = run_graph(lambda a, b: L.categorical_crossentropy(a, A.softmax(b)), oh, z)
    np.testing.assert_allclose(got, -(f64(oh) * np_log_softmax(f64(z))).sum(-1), rtol=1e-5)


def test_int_labels_against_one_unit_output():
    """``model.fit(X, y)`` with y as ints of shape (N,) and a (N,1) sigmoid output."""
    y = np.array([0, 1, 1, 0])
    p = np.array([[0.2], [0.7], [0.9], [0.4]], np.float32)
    want = np_bce(f64(y)[:, None], f64(p))
    loss = L.get("binary_crossentropy")
    np.testing.assert_allclose(loss(y, p), want.mean(), rtol=1e-6)
    np.testing.assert_allclose(run_graph(lambda a, b: loss(a, b), y, p), want.mean(), rtol=1e-6)
    np.testing.assert_allclose(L.get("mse")(y, p), ((f64(y) - f64(p)[:, 0]) ** 2).mean(), rtol=1e-6)


def test_reductions_and_sample_weight():
    per = ((f64(Y_REG) - f64(P_REG)) ** 2).mean(-1)
    w = rng.uniform(0, 2, size=(N,)).astype(np.float32)
    np.testing.assert_allclose(L.MeanSquaredError()(Y_REG, P_REG), per.mean(), rtol=1e-6)
    np.testing.assert_allclose(L.MeanSquaredError(reduction="sum")(Y_REG, P_REG), per.sum(),
                               rtol=1e-6)
    np.testing.assert_allclose(L.MeanSquaredError(reduction="none")(Y_REG, P_REG), per,
                               rtol=1e-6)
    # sum_over_batch_size divides the weighted sum by the number of samples, not by sum(w)
    for sw in (w, w.reshape(-1, 1)):
        np.testing.assert_allclose(L.MeanSquaredError()(Y_REG, P_REG, sample_weight=sw),
                                   (per * w).sum() / N, rtol=1e-5)
        got = run_graph(lambda a, b, s: L.MeanSquaredError()(a, b, sample_weight=s),
                        Y_REG, P_REG, sw)
        np.testing.assert_allclose(got, (per * w).sum() / N, rtol=1e-5)
    np.testing.assert_allclose(
        L.MeanSquaredError(reduction="sum")(Y_REG, P_REG, sample_weight=w), (per * w).sum(),
        rtol=1e-5)
    np.testing.assert_allclose(
        L.MeanSquaredError(reduction="none")(Y_REG, P_REG, sample_weight=w), per * w, rtol=1e-5)
    # per-sample weights broadcast over per-timestep losses (N, T)
    y3, p3 = Y_REG.reshape(N, 3, 1), P_REG.reshape(N, 3, 1)
    per3 = (f64(y3) - f64(p3))[..., 0] ** 2
    np.testing.assert_allclose(L.MeanSquaredError()(y3, p3, sample_weight=w),
                               (per3 * f64(w)[:, None]).sum() / per3.size, rtol=1e-5)
    with pytest.raises(ValueError):
        L.MeanSquaredError(reduction="average")


def test_shape_mismatch_errors():
    with pytest.raises(ShapeError):
        L.categorical_crossentropy(IDS, PROBS)
    with pytest.raises(ShapeError):
        L.sparse_categorical_crossentropy(ONEHOT[:, :2], PROBS)
    with pytest.raises(ShapeError):
        L.mean_squared_error(np.zeros((N, 3)), np.zeros((N, 4), np.float32))


def test_get_forms_names_and_unknown():
    for ident, name in [("mse", "mean_squared_error"), ("MSE", "mean_squared_error"),
                        ("mean_squared_error", "mean_squared_error"),
                        ("MeanSquaredError", "mean_squared_error"), ("mae", "mean_absolute_error"),
                        ("msle", "mean_squared_logarithmic_error"),
                        ("binary_crossentropy", "binary_crossentropy"),
                        ("categorical_crossentropy", "categorical_crossentropy"),
                        ("sparse_categorical_crossentropy", "sparse_categorical_crossentropy"),
                        ("hinge", "hinge"), ("squared_hinge", "squared_hinge")]:
        loss = L.get(ident)
        assert loss.name == name and callable(loss)
    inst = L.CategoricalCrossentropy(from_logits=True)
    assert L.get(inst) is inst
    custom = lambda y, p: ops.mean(ops.abs(ops.subtract(y, p)), axis=-1)  # noqa: E731
    np.testing.assert_allclose(L.get(custom)(Y_REG, P_REG),
                               np.abs(f64(Y_REG) - f64(P_REG)).mean(), rtol=1e-6)
    cfg = L.serialize(L.BinaryCrossentropy(from_logits=True, label_smoothing=0.1))
    again = L.get(cfg)
    assert isinstance(again, L.BinaryCrossentropy)
    assert again.from_logits and again.label_smoothing == 0.1
    k2 = {"class_name": "CategoricalCrossentropy",
          "config": {"reduction": "auto", "name": "categorical_crossentropy",
                     "from_logits": False, "label_smoothing": 0}}
    assert isinstance(L.get(k2), L.CategoricalCrossentropy)
    assert L.get(None) is None
    with pytest.raises(UnknownNameError) as e:
        L.get("binary_cross_entropy")
    for n in ("binary_crossentropy", "mse", "categorical_crossentropy", "hinge"):
        assert n in str(e.value)


# ---------------------------------------------------------------- regularizers

W = rng.normal(size=(4, 3)).astype(np.float32)


@pytest.mark.parametrize("ident,l1,l2", [("l1", 0.01, 0), ("l2", 0, 0.01), ("l1_l2", 0.01, 0.01),
                                         (R.L1L2(), 0, 0), (R.L1L2(l1=0.3, l2=0.2), 0.3, 0.2),
                                         (R.l2(0.5), 0, 0.5), (R.L1(0.1), 0.1, 0),
                                         ({"class_name": "L2", "config": {"l2": 0.05}}, 0, 0.05)])
def test_regularizers(ident, l1, l2):
    reg = R.get(ident)
    want = l1 * np.abs(f64(W)).sum() + l2 * (f64(W) ** 2).sum()
    np.testing.assert_allclose(reg(W), want, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(run_graph(reg, W), want, rtol=1e-6, atol=1e-9)
    assert type(R.deserialize(R.serialize(reg))) is type(reg)


def test_regularizer_unknown_name():
    with pytest.raises(UnknownNameError) as e:
        R.get("l3")
    assert "l1_l2" in str(e.value)


def test_without_softmax_and_one_hot_ops(monkeypatch):
    """The compositions used when the registry lacks softmax/log_softmax/one_hot agree."""
    import graphc.frontend.activations as fa
    import graphc.frontend.losses as fl
    monkeypatch.setattr(fa, "has_op", lambda name: False)
    monkeypatch.setattr(fl, "has_op", lambda name: False)
    want = -np_log_softmax(f64(LOGITS))[np.arange(N), IDS]
    for fn in (lambda y, p: L.sparse_categorical_crossentropy(y, p, from_logits=True),):
        np.testing.assert_allclose(both(fn, IDS, LOGITS), want, rtol=2e-5)
    got = both(lambda y, p: L.categorical_crossentropy(y, p, from_logits=True), ONEHOT, LOGITS)
    np.testing.assert_allclose(got, want, rtol=2e-5)
    got = both(L.sparse_categorical_crossentropy, IDS.reshape(-1, 1), PROBS)
    np.testing.assert_allclose(got, -np.log(f64(PROBS)[np.arange(N), IDS]), rtol=2e-5)
    import graphc.activations as A
    z = np.array([[1e4, -1e4, 0.0]], np.float32)
    np.testing.assert_allclose(both(A.softmax, z), [[1, 0, 0]], atol=1e-30)
    np.testing.assert_allclose(both(A.log_softmax, z), [[0, -2e4, -1e4]], rtol=1e-6)
