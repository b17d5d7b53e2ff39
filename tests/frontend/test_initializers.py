"""Initializers: shapes, dtypes, Keras fan computations, first/second moment statistics,
bounds, orthogonality, seeding, and get() forms."""
import numpy as np
import pytest

import graphc.initializers as I
from graphc.errors import UnknownNameError
from graphc.frontend.seeding import set_random_seed

ALL = ["zeros", "ones", "constant", "random_normal", "random_uniform", "truncated_normal",
       "glorot_uniform", "glorot_normal", "he_normal", "he_uniform", "lecun_normal",
       "lecun_uniform", "orthogonal", "identity", "variance_scaling"]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_shape_and_dtype(name, dtype):
    init = I.get(name)
    out = init((5, 7), dtype=dtype)
    assert out.shape == (5, 7) and out.dtype == np.dtype(dtype)
    assert np.all(np.isfinite(out))
    assert init((5, 7)).dtype == np.float32  # default dtype


def test_fans_include_receptive_field():
    assert I.compute_fans((784, 64)) == (784, 64)
    assert I.compute_fans((3, 3, 16, 32)) == (144, 288)
    assert I.compute_fans((5, 8, 4)) == (40, 20)
    assert I.compute_fans((10,)) == (10, 10)
    assert I.compute_fans(()) == (1, 1)


def _var(fan_in, fan_out, scale, mode):
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    return scale / n


# (name, scale, mode, distribution) — Keras 3 definitions.
VS = [("glorot_uniform", 1.0, "fan_avg", "uniform"),
      ("glorot_normal", 1.0, "fan_avg", "truncated_normal"),
      ("he_normal", 2.0, "fan_in", "truncated_normal"),
      ("he_uniform", 2.0, "fan_in", "uniform"),
      ("lecun_normal", 1.0, "fan_in", "truncated_normal"),
      ("lecun_uniform", 1.0, "fan_in", "uniform")]


@pytest.mark.parametrize("name,scale,mode,dist", VS)
@pytest.mark.parametrize("shape", [(200, 300), (3, 3, 20, 40)])
def test_variance_scaling_statistics(name, scale, mode, dist, shape):
    fan_in = shape[-2] * int(np.prod(shape[:-2]))
    fan_out = shape[-1] * int(np.prod(shape[:-2]))
    want_var = _var(fan_in, fan_out, scale, mode)
    w = I.get(name)(shape).astype(np.float64)
    assert abs(w.mean()) < 4 * np.sqrt(want_var / w.size)
    assert w.var() == pytest.approx(want_var, rel=0.06)
    if dist == "uniform":
        assert np.abs(w).max() <= np.sqrt(3 * want_var) * (1 + 1e-6)
    else:  # truncated at two standard deviations of the untruncated normal
        assert np.abs(w).max() <= 2 * np.sqrt(want_var) / 0.87962566103423978 * (1 + 1e-6)


def test_variance_scaling_config_and_untruncated():
    init = I.VarianceScaling(scale=3.0, mode="fan_out", distribution="untruncated_normal")
    w = init((100, 400)).astype(np.float64)
    assert w.var() == pytest.approx(3.0 / 400, rel=0.06)
    assert np.abs(w).max() > 2 * np.sqrt(3.0 / 400)  # tails are not cut
    assert I.get(I.serialize(init)).get_config() == init.get_config()


def test_random_distributions_defaults():
    n = I.RandomNormal()((300, 300)).astype(np.float64)
    assert n.std() == pytest.approx(0.05, rel=0.03) and abs(n.mean()) < 1e-3
    u = I.RandomUniform()((300, 300))
    assert u.min() >= -0.05 and u.max() <= 0.05
    assert u.std() == pytest.approx(0.1 / np.sqrt(12), rel=0.03)
    t = I.TruncatedNormal()((300, 300)).astype(np.float64)
    assert np.abs(t).max() <= 0.1 + 1e-7
    assert t.std() == pytest.approx(0.05 * 0.87962566103423978, rel=0.03)
    r = I.RandomNormal(mean=2.0, stddev=0.5)((200, 200)).astype(np.float64)
    assert r.mean() == pytest.approx(2.0, abs=0.01) and r.std() == pytest.approx(0.5, rel=0.03)


def test_constant_zeros_ones_identity():
    assert np.all(I.Zeros()((2, 3)) == 0) and np.all(I.Ones()((2, 3)) == 1)
    assert np.all(I.Constant(0.25)((4,)) == np.float32(0.25))
    np.testing.assert_array_equal(I.get("identity")((3, 4)), np.eye(3, 4))
    np.testing.assert_array_equal(I.Identity(gain=2.0)((2, 2)), 2 * np.eye(2))


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (3, 3, 4, 12)])
def test_orthogonal(shape):
    w = I.Orthogonal(gain=1.5)(shape).astype(np.float64)
    flat = w.reshape(-1, shape[-1])
    if flat.shape[0] >= flat.shape[1]:
        np.testing.assert_allclose(flat.T @ flat, 2.25 * np.eye(flat.shape[1]), atol=1e-5)
    else:
        np.testing.assert_allclose(flat @ flat.T, 2.25 * np.eye(flat.shape[0]), atol=1e-5)


def test_seeded_initializers_are_reproducible():
    a = I.GlorotUniform(seed=3)((20, 10))
    np.testing.assert_array_equal(a, I.GlorotUniform(seed=3)((20, 10)))
    assert not np.array_equal(a, I.GlorotUniform(seed=4)((20, 10)))
    for cls in (I.RandomNormal, I.RandomUniform, I.TruncatedNormal, I.HeNormal, I.Orthogonal):
        np.testing.assert_array_equal(cls(seed=7)((6, 6)), cls(seed=7)((6, 6)))


def test_global_seed_reproduces_unseeded_draws():
    set_random_seed(123)
    a = [I.get("glorot_uniform")((8, 8)), I.get("random_normal")((5,))]
    set_random_seed(123)
    b = [I.get("glorot_uniform")((8, 8)), I.get("random_normal")((5,))]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], I.get("glorot_uniform")((8, 8)))


def test_get_forms_and_config_roundtrip():
    assert isinstance(I.get("GlorotUniform"), I.GlorotUniform)
    assert isinstance(I.get("normal"), I.RandomNormal)
    assert isinstance(I.get("uniform"), I.RandomUniform)
    assert I.get(None) is None
    inst = I.HeNormal(seed=5)
    assert I.get(inst) is inst
    f = lambda shape, dtype=None: np.zeros(shape)  # noqa: E731
    assert I.get(f) is f
    k3 = {"module": "keras.initializers", "class_name": "GlorotUniform",
          "config": {"seed": None}, "registered_name": None}
    assert isinstance(I.get(k3), I.GlorotUniform)
    k2 = {"class_name": "VarianceScaling",
          "config": {"scale": 2.0, "mode": "fan_in", "distribution": "normal", "seed": 1}}
    vs = I.get(k2)
    assert vs.scale == 2.0 and vs.distribution == "truncated_normal" and vs.seed == 1
    c = I.get({"class_name": "Constant", "config": {"value": 3.0}})
    assert np.all(c((2,)) == 3.0)
    for name in ALL:
        obj = I.get(name)
        again = I.deserialize(I.serialize(obj))
        assert type(again) is type(obj) and again.get_config() == obj.get_config()


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError) as e:
        I.get("glorot_uniformm")
    for n in ("glorot_uniform", "he_normal", "orthogonal", "zeros"):
        assert n in str(e.value)


def test_serialize_plain_function_and_none():
    def my_init(shape, dtype=None):
        return np.zeros(shape)
    assert I.serialize(my_init)["config"] == "my_init"
    assert I.serialize(None) is None
