"""Sequential and functional models: building, layer graphs (nested, shared, multi-in/out),
weights and trainable semantics, tracing on graph values, user errors, configs and the thin
training/saving delegations."""
from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

from graphc.errors import ShapeError
from graphc.frontend.tracing import TraceContext
from graphc.ir.dtypes import DType, TensorType
from graphc.ir.graph import Graph
from graphc.ir.interpreter import interpret
from graphc.ir.registry import has_op
from graphc.layers import (Activation, Add, Concatenate, Conv2D, Dense, Dropout, Flatten,
                           Input, InputLayer, MaxPooling2D)
from graphc.models import Model, Sequential, clone_model, model_from_json

RNG = np.random.default_rng(99)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def relu(x):
    return np.maximum(x, 0)


def dense_np(layer, x, act=lambda v: v):
    k, b = layer.get_weights()
    return act(x @ k + b)


def trace_model(model, arrays, training=False, seed=1, step=0):
    """Trace ``model`` on graph values the way the train-step builder does, run the graph
    with the interpreter, and return (outputs, graph)."""
    g = Graph("m")
    s = g.add_input("seed", TensorType((), DType.i64))
    k = g.add_input("step", TensorType((), DType.i64))
    xs = [g.add_input(f"x{i}", TensorType.of(a)) for i, a in enumerate(arrays)]
    with TraceContext(g, training=training, seed=s, step=k) as ctx:
        outs = model(xs if len(xs) > 1 else xs[0], training=training)
    flat = outs if isinstance(outs, list) else [outs]
    g.set_outputs(flat)
    by_param = {val: var for var, val in ctx.var_values.items()}
    res = interpret(g, [np.array(seed, np.int64), np.array(step, np.int64)] + list(arrays),
                    [by_param[p].value for p in g.params])
    return res, g


# ----------------------------------------------------------------------------- Sequential

def test_sequential_with_input_dim_builds_at_once():
    model = Sequential()
    model.add(Dense(6, activation="relu", input_dim=8))
    assert model.built and model.inputs[0].shape == (None, 8)
    model.add(Dense(1, activation="sigmoid"))
    assert [type(l).__name__ for l in model.layers] == ["Dense", "Dense"]
    assert model.output_shape == (None, 1) and model.input_shape == (None, 8)
    x = rand(5, 8)
    d1, d2 = model.layers
    expect = 1 / (1 + np.exp(-dense_np(d2, dense_np(d1, x, relu))))
    np.testing.assert_allclose(model(x), expect, rtol=1e-5, atol=1e-6)
    assert [w.shape for w in model.get_weights()] == [(8, 6), (6,), (6, 1), (1,)]
    assert model.count_params() == 8 * 6 + 6 + 6 + 1


def test_sequential_list_constructor_with_input_first():
    model = Sequential([Input((4,)), Dense(3), Activation("tanh")])
    assert model.built and len(model.layers) == 2
    model2 = Sequential([InputLayer(shape=(4,)), Dense(3)])
    assert model2.built and model2.inputs[0].shape == (None, 4)


def test_sequential_deferred_build_on_call_and_build():
    model = Sequential([Dense(4), Dense(2)])
    assert not model.built and model.weights == []
    with pytest.raises(AttributeError):
        model.inputs
    x = rand(3, 5)
    y = model(x)
    assert model.built and y.shape == (3, 2)
    assert model.inputs[0].shape == (None, 5)
    d1, d2 = model.layers
    np.testing.assert_allclose(y, dense_np(d2, dense_np(d1, x)), rtol=1e-5, atol=1e-6)
    m2 = Sequential([Dense(3)])
    m2.build((None, 7))
    assert m2.get_weights()[0].shape == (7, 3)
    # fit/predict path: the runtime checks arrays first, which builds a deferred model
    m3 = Sequential([Dense(2)])
    m3._check_input_arrays([np.zeros((10, 6), np.float32)])
    assert m3.built and m3.inputs[0].shape == (None, 6)


def test_sequential_pop_and_add_errors():
    model = Sequential([Input((3,)), Dense(4, name="p1"), Dense(5, name="p2")])
    popped = model.pop()
    assert popped.name == "p2" and model.output_shape == (None, 4)
    model.add(Dense(2, name="p3"))
    assert model.output_shape == (None, 2)
    with pytest.raises(ValueError, match="unique names"):
        model.add(Dense(2, name="p1"))
    with pytest.raises(TypeError, match="Only instances of `Layer`"):
        model.add("dense")
    with pytest.raises(ValueError, match="Input"):
        model.add(Input((3,)))


def test_failed_add_leaves_model_usable():
    model = Sequential([Input((8,)), Dense(4)])
    with pytest.raises(ShapeError) as e:
        model.add(Conv2D(2, 3, name="bad_conv"))
    assert "bad_conv" in str(e.value) and "rank 4" in str(e.value)
    assert len(model.layers) == 1 and model.output_shape == (None, 4)
    model.add(Dense(1))
    assert model.output_shape == (None, 1)


def test_sequential_cnn_shapes():
    if not (has_op("conv2d") and has_op("max_pool2d")):
        pytest.skip("conv/pool ops not registered yet")
    model = Sequential()
    model.add(Conv2D(4, (3, 3), activation="relu", input_shape=(10, 10, 3)))
    model.add(MaxPooling2D((2, 2)))
    model.add(Flatten())
    model.add(Dense(5, activation="relu"))
    model.add(Dense(1, activation="sigmoid"))
    assert [l.output_shape for l in model.layers] == [
        (None, 8, 8, 4), (None, 4, 4, 4), (None, 64), (None, 5), (None, 1)]
    assert model(rand(2, 10, 10, 3)).shape == (2, 1)


# ----------------------------------------------------------------------------- functional

def test_sequential_and_functional_of_same_layers_agree():
    d1, d2 = Dense(7, activation="relu"), Dense(3, activation="softmax")
    seq = Sequential([Input((5,)), d1, d2])
    inp = Input((5,))
    fun = Model(inputs=inp, outputs=d2(d1(inp)))
    assert type(fun).__name__ == "Functional" and isinstance(fun, Model)
    x = rand(6, 5)
    np.testing.assert_array_equal(seq(x), fun(x))
    np.testing.assert_array_equal(seq.predict_on_batch.__func__ is not None, True)
    assert [id(w) for w in seq.weights] == [id(w) for w in fun.weights]
    h = relu(x @ d1.get_weights()[0] + d1.get_weights()[1])
    z = h @ d2.get_weights()[0] + d2.get_weights()[1]
    e = np.exp(z - z.max(-1, keepdims=True))
    np.testing.assert_allclose(fun(x), e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)
    assert fun.layers[0].__class__ is InputLayer and len(fun.layers) == 3


def test_functional_layers_between_inputs_and_outputs_only():
    inp = Input((4,))
    h = Dense(3, name="h")(inp)
    Dense(9, name="dangling")(h)           # not on the path to the output
    out = Dense(2, name="out")(h)
    model = Model(inp, out)
    assert [l.name for l in model.layers][1:] == ["h", "out"]
    assert model.count_params() == (4 * 3 + 3) + (3 * 2 + 2)


def test_nested_models():
    inner = Sequential([Input((4,)), Dense(3, activation="relu"), Dense(2)], name="inner")
    inp = Input((4,))
    mid = inner(inp)
    out = Dense(1, name="head")(mid)
    outer = Model(inp, out, name="outer")
    assert outer.layers[1] is inner
    assert len(outer.weights) == 6 and outer.weights[-2].path == "head.kernel"
    x = rand(5, 4)
    a, b = inner.layers
    expect = dense_np(outer.get_layer("head"), dense_np(b, dense_np(a, x, relu)))
    np.testing.assert_allclose(outer(x), expect, rtol=1e-5, atol=1e-6)
    # a functional model inside a Sequential, and a Sequential inside that
    wrap = Sequential([outer, Activation("sigmoid")])
    assert wrap.built and wrap.output_shape == (None, 1)
    np.testing.assert_allclose(wrap(x), 1 / (1 + np.exp(-expect)), rtol=1e-5, atol=1e-6)
    res, g = trace_model(wrap, [x])
    np.testing.assert_allclose(res[0], wrap(x), rtol=1e-6)
    assert {p.name for p in g.params} == {w.path for w in wrap.weights}


def test_shared_layer():
    shared = Dense(3, name="shared")
    a, b = Input((2,), name="a"), Input((2,), name="b")
    out = Add()([shared(a), shared(b)])
    model = Model([a, b], out)
    assert len(model.weights) == 2 and model.count_params() == 9
    xa, xb = rand(4, 2), rand(4, 2)
    np.testing.assert_allclose(model([xa, xb]), dense_np(shared, xa) + dense_np(shared, xb),
                               rtol=1e-5, atol=1e-6)
    res, _ = trace_model(model, [xa, xb])
    np.testing.assert_allclose(res[0], model([xa, xb]), rtol=1e-6)


def test_multi_input_multi_output_and_dicts():
    a, b = Input((3,), name="left"), Input((2,), name="right")
    h = Concatenate()([Dense(4, name="da")(a), Dense(4, name="db")(b)])
    o1 = Dense(1, activation="sigmoid", name="score")(h)
    o2 = Dense(3, activation="softmax", name="cls")(h)
    model = Model(inputs=[a, b], outputs=[o1, o2])
    assert model.input_names == ["left", "right"]
    assert model.output_names == ["score", "cls"]
    xa, xb = rand(5, 3), rand(5, 2)
    y1, y2 = model([xa, xb])
    hh = np.concatenate([dense_np(model.get_layer("da"), xa),
                         dense_np(model.get_layer("db"), xb)], -1)
    np.testing.assert_allclose(y1, 1 / (1 + np.exp(-dense_np(model.get_layer("score"), hh))),
                               rtol=1e-5, atol=1e-6)
    assert y2.shape == (5, 3)
    yd = model({"right": xb, "left": xa})            # dict by input name
    np.testing.assert_array_equal(yd[0], y1)
    dmodel = Model({"l": a, "r": b}, {"s": o1, "c": o2})
    assert dmodel.output_names == ["s", "c"] and dmodel.input_names == ["l", "r"]
    out = dmodel({"l": xa, "r": xb})
    assert list(out) == ["s", "c"]
    np.testing.assert_array_equal(out["s"], y1)
    with pytest.raises(ValueError, match="missing input"):
        model({"left": xa})
    with pytest.raises(ShapeError, match="expects 2 input"):
        model(xa)


def test_tensor_operators_in_functional_graph():
    inp = Input((3,))
    d = Dense(3)
    y = d(inp) + inp
    z = 2.0 * y - 1.0
    model = Model(inp, z)
    x = rand(4, 3)
    np.testing.assert_allclose(model(x), 2 * (dense_np(d, x) + x) - 1, rtol=1e-5, atol=1e-5)


def test_graph_disconnected_error():
    a, b = Input((2,), name="ga"), Input((2,), name="gb")
    out = Add()([a, b])
    with pytest.raises(ValueError, match="disconnected.*gb"):
        Model(a, out)


def test_get_layer():
    model = Sequential([Input((2,)), Dense(2, name="g1"), Dense(1, name="g2")])
    assert model.get_layer("g2") is model.layers[1]
    assert model.get_layer(index=0).name == "g1"
    with pytest.raises(ValueError, match="No such layer: nope"):
        model.get_layer("nope")
    with pytest.raises(ValueError):
        model.get_layer(index=5)


# ----------------------------------------------------------------------------- tracing

def test_model_traced_on_values_matches_eager_and_names_params():
    model = Sequential([Input((4,)), Dense(3, activation="relu", name="t1"),
                        Dropout(0.5), Dense(2, name="t2")])
    x = rand(8, 4)
    res, g = trace_model(model, [x], training=False)
    np.testing.assert_allclose(res[0], model(x), rtol=1e-6)
    assert [p.name for p in g.params] == ["t1.kernel", "t1.bias", "t2.kernel", "t2.bias"]
    assert "random_uniform" not in g.op_counts()
    if has_op("random_uniform"):
        rt, gt = trace_model(model, [x], training=True)
        assert gt.op_counts()["random_uniform"] == 1
        assert not np.allclose(rt[0], res[0])


def test_model_input_dtype_and_int_inputs():
    inp = Input((3,), dtype="int32")
    model = Model(inp, Dense(2)(inp))
    y = model(np.ones((2, 3), np.int64))
    assert y.dtype == np.float32
    k, b = model.layers[1].get_weights()
    np.testing.assert_allclose(y, np.ones((2, 3)) @ k + b, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- errors

def test_transposed_input_array_is_explained():
    model = Sequential()
    model.add(Dense(4, activation="relu", input_dim=8))
    model.add(Dense(1))
    with pytest.raises(ShapeError) as e:
        model._check_input_arrays([np.zeros((8, 100), np.float32)])
    msg = str(e.value)
    assert "'input_layer" in msg and "(None, 8)" in msg and "(8, 100)" in msg
    assert "transposed" in msg
    with pytest.raises(ValueError) as e2:       # calling directly: same clear error
        model(np.zeros((8, 100), np.float32))
    assert "(None, 8)" in str(e2.value) and "(None, 100)" in str(e2.value)
    with pytest.raises(ShapeError, match="expects 1 input array"):
        model._check_input_arrays([np.zeros((2, 8)), np.zeros((2, 8))])
    model._check_input_arrays([np.zeros((3, 8))])          # fine


def test_model_called_on_incompatible_keras_tensor():
    model = Sequential([Input((8,)), Dense(2)], name="small")
    with pytest.raises(ShapeError, match=r"small.*expects shape \(None, 8\), got \(None, 5\)"):
        model(Input((5,)))


# ----------------------------------------------------------------------------- weights

def test_get_set_weights_round_trip_and_errors():
    model = Sequential([Input((3,)), Dense(4, name="w1"), Dense(2, name="w2")])
    ws = [rand(*w.shape) for w in model.get_weights()]
    model.set_weights(ws)
    for a, b in zip(model.get_weights(), ws):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ShapeError, match="expects 4 weight"):
        model.set_weights(ws[:3])
    bad = list(ws)
    bad[2] = np.zeros((2, 4))
    with pytest.raises(ShapeError) as e:
        model.set_weights(bad)
    assert "w2.kernel" in str(e.value) and "(4, 2)" in str(e.value)
    other = Sequential([Input((3,)), Dense(4), Dense(2)])
    other.set_weights(model.get_weights())
    x = rand(2, 3)
    np.testing.assert_array_equal(other(x), model(x))


def test_trainable_recursive_and_frozen_base():
    base = Sequential([Input((4,)), Dense(3, name="fb1"), Dense(3, name="fb2")], name="base")
    inp = Input((4,))
    model = Model(inp, Dense(1, name="new_head")(base(inp)))
    assert len(model.trainable_weights) == 6
    base.trainable = False                                       # transfer learning
    assert [v.path for v in model.trainable_weights] == ["new_head.kernel", "new_head.bias"]
    assert len(model.non_trainable_weights) == 4
    assert all(not l.trainable for l in base.layers)
    base.layers[1].trainable = True                               # unfreeze the top
    assert [v.path for v in model.trainable_weights] == ["fb2.kernel", "fb2.bias",
                                                         "new_head.kernel", "new_head.bias"]
    model.trainable = False
    assert model.trainable_weights == [] and len(model.non_trainable_weights) == 6
    model.trainable = True
    assert len(model.trainable_weights) == 6


def test_gan_pattern_discriminator_frozen_inside_combined():
    gen = Sequential([Dense(4, activation="relu", input_dim=2), Dense(3)], name="gen")
    disc = Sequential([Dense(4, activation="relu", input_dim=3), Dense(1, activation="sigmoid")],
                      name="disc")
    disc.trainable = False
    gan = Sequential([gen, disc])
    assert gan.built and gan.output_shape == (None, 1)
    assert {v.path.split(".")[0] for v in gan.trainable_weights} == {
        l.name for l in gen.layers}
    assert len(gan.weights) == 8
    z = rand(3, 2)
    np.testing.assert_allclose(gan(z), disc(gen(z)), rtol=1e-6)


# ----------------------------------------------------------------------------- subclassed

def test_subclassed_model():
    class TwoLayer(Model):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.d1 = Dense(4, activation="relu")
            self.d2 = Dense(2)

        def call(self, x, training=None):
            return self.d2(self.d1(x))

    m = TwoLayer(name="two_layer")
    x = rand(3, 5)
    y = m(x)
    assert y.shape == (3, 2) and len(m.weights) == 4
    np.testing.assert_allclose(y, dense_np(m.d2, dense_np(m.d1, x, relu)), rtol=1e-5,
                               atol=1e-6)
    res, _ = trace_model(m, [x])
    np.testing.assert_allclose(res[0], y, rtol=1e-6)
    m2 = TwoLayer()
    m2.build((None, 5))
    assert len(m2.weights) == 4
    assert TwoLayer()(Input((5,))).shape == (None, 2)


# ----------------------------------------------------------------------------- configs

def test_functional_config_round_trip():
    a, b = Input((3,), name="ca"), Input((2,), name="cb")
    shared = Dense(3, name="cshared")
    h = Concatenate(name="ccat")([shared(a), Dense(3, name="cdb")(b)])
    out = Dense(2, activation="softmax", name="cout")(Add(name="cadd")([h, h]))
    model = Model([a, b], [out, shared(a)], name="cfg_model")
    cfg = json.loads(json.dumps(model.get_config()))
    names = [l["name"] for l in cfg["layers"]]
    assert names == ["ca", "cb", "cshared", "cdb", "ccat", "cadd", "cout"]
    shared_cfg = cfg["layers"][2]
    assert len(shared_cfg["inbound_nodes"]) == 2
    assert shared_cfg["inbound_nodes"][0]["args"][0]["config"]["keras_history"] == ["ca", 0, 0]
    assert cfg["input_layers"] == [["ca", 0, 0], ["cb", 0, 0]]
    assert cfg["output_layers"] == [["cout", 0, 0], ["cshared", 1, 0]]
    again = Model.from_config(cfg)
    again.set_weights(model.get_weights())
    xa, xb = rand(4, 3), rand(4, 2)
    for p, q in zip(model([xa, xb]), again([xa, xb])):
        np.testing.assert_array_equal(p, q)


def test_sequential_config_json_and_clone():
    model = Sequential([Input((6,)), Dense(4, activation="relu", name="s1"),
                        Dropout(0.2, name="s2"), Dense(1, name="s3")], name="seqcfg")
    cfg = model.get_config()
    assert cfg["layers"][0]["class_name"] == "InputLayer"
    assert cfg["layers"][0]["config"]["batch_shape"] == [None, 6]
    again = model_from_json(model.to_json())
    assert isinstance(again, Sequential) and again.built
    assert [l.name for l in again.layers] == ["s1", "s2", "s3"]
    again.set_weights(model.get_weights())
    x = rand(3, 6)
    np.testing.assert_array_equal(again(x), model(x))
    clone = clone_model(model)
    assert [type(l) for l in clone.layers] == [type(l) for l in model.layers]
    assert not {l.name for l in clone.layers} & {l.name for l in model.layers}
    assert [w.shape for w in clone.get_weights()] == [w.shape for w in model.get_weights()]
    assert not np.array_equal(clone.get_weights()[0], model.get_weights()[0])


def test_keras2_legacy_configs_load():
    seq_cfg = {"name": "legacy_seq", "layers": [
        {"class_name": "Dense", "config": {"name": "ld1", "trainable": True,
                                           "batch_input_shape": [None, 5], "dtype": "float32",
                                           "units": 3, "activation": "relu", "use_bias": True,
                                           "kernel_initializer": {"class_name": "GlorotUniform",
                                                                  "config": {"seed": None}},
                                           "bias_initializer": {"class_name": "Zeros",
                                                                "config": {}},
                                           "kernel_regularizer": None, "bias_regularizer": None,
                                           "activity_regularizer": None,
                                           "kernel_constraint": None, "bias_constraint": None}},
        {"class_name": "Dense", "config": {"name": "ld2", "units": 1}}]}
    m = Sequential.from_config(seq_cfg)
    assert m.built and m.input_shape == (None, 5) and m.output_shape == (None, 1)
    fun_cfg = {"name": "legacy_fun", "layers": [
        {"class_name": "InputLayer", "name": "in1",
         "config": {"batch_input_shape": [None, 4], "dtype": "float32", "name": "in1"},
         "inbound_nodes": []},
        {"class_name": "Dense", "name": "fd", "config": {"name": "fd", "units": 2},
         "inbound_nodes": [[["in1", 0, 0, {}]]]}],
        "input_layers": [["in1", 0, 0]], "output_layers": [["fd", 0, 0]]}
    f = Model.from_config(fun_cfg)
    assert f.input_shape == (None, 4) and f.output_shape == (None, 2)


# ----------------------------------------------------------------------------- delegations

def test_compile_and_training_api_delegate_to_runtime(monkeypatch):
    calls = []

    class FakeExe:
        def __getattr__(self, name):
            return lambda *a, **k: calls.append((name, a, k)) or name

    compiled = []
    fake_rt = types.ModuleType("graphc.runtime")
    fake_rt.compile_model = lambda model, target=None: compiled.append(target) or FakeExe()
    monkeypatch.setitem(sys.modules, "graphc.runtime", fake_rt)
    model = Sequential([Input((3,)), Dense(1)])
    assert model.predict("x") == "predict"              # predict works without compile
    model.compile(optimizer="adam", loss="mse", metrics=["mae"], target="reference")
    assert model.compiled and model.loss == "mse" and model.metrics_config == ["mae"]
    assert type(model.optimizer).__name__ == "Adam" and model.compile_target == "reference"
    for name in ("fit", "evaluate", "predict", "train_on_batch", "test_on_batch",
                 "predict_on_batch"):
        assert getattr(model, name)(1, batch_size=2) == name
    assert compiled == [None, "reference"]              # recompiled once after compile()
    assert calls[-1] == ("predict_on_batch", (1,), {"batch_size": 2})
    assert model._training_weights() == model.trainable_weights


def test_compile_snapshots_trainable_weights():
    disc = Sequential([Dense(2, input_dim=3)])
    disc.compile(optimizer="sgd", loss="mse")
    disc.trainable = False
    assert disc.trainable_weights == []
    assert [v.path for v in disc._training_weights()] == [v.path for v in disc.weights]


def test_save_and_weights_delegate_to_saving(monkeypatch):
    calls = []
    fake = types.ModuleType("graphc.saving")
    for fn in ("save_model", "save_weights", "load_weights", "load_model"):
        setattr(fake, fn, lambda *a, _fn=fn, **k: calls.append((_fn, a, k)))
    monkeypatch.setitem(sys.modules, "graphc.saving", fake)
    import graphc.models as gm
    model = Sequential([Input((2,)), Dense(1)])
    model.save("m.keras")
    model.save_weights("m.weights.h5")
    model.load_weights("m.weights.h5")
    gm.load_model("m.h5")
    assert [c[0] for c in calls] == ["save_model", "save_weights", "load_weights",
                                     "load_model"]
    assert calls[0][1] == (model, "m.keras") and calls[3][1] == ("m.h5",)


def test_nested_models_config_round_trip():
    inner_f_in = Input((3,))
    inner_f = Model(inner_f_in, Dense(3, name="nf_d")(inner_f_in), name="nf")
    inner_s = Sequential([Dense(2, input_dim=3, name="ns_d")], name="ns")
    inp = Input((3,), name="nest_in")
    model = Model(inp, inner_s(inner_f(inp)), name="nested_cfg")
    cfg = json.loads(json.dumps(model.get_config()))
    assert [l["class_name"] for l in cfg["layers"]] == ["InputLayer", "Functional",
                                                        "Sequential"]
    again = Model.from_config(cfg)
    again.set_weights(model.get_weights())
    x = rand(2, 3)
    y = again(x)
    assert isinstance(y, np.ndarray)             # a single output stays a single array
    np.testing.assert_array_equal(y, model(x))


def test_dropout_training_flag_recorded_in_graph_is_overridden_by_model_call():
    if not has_op("random_uniform"):
        pytest.skip("random_uniform not registered yet")
    inp = Input((50,))
    out = Dropout(0.5)(inp, training=True)        # MC-dropout style explicit flag
    model = Model(inp, out)
    x = np.ones((4, 50), np.float32)
    _, g_inf = trace_model(model, [x], training=False)
    assert "random_uniform" not in g_inf.op_counts()   # Keras 3: the model call wins
    _, g_tr = trace_model(model, [x], training=True)
    assert g_tr.op_counts()["random_uniform"] == 1


def test_duplicate_layer_names_rejected_and_mask_kwarg_dropped():
    a, b = Input((2,), name="dup"), Input((2,), name="dup")
    with pytest.raises(ValueError, match="dup"):
        Model([a, b], Add()([a, b]))
    inp = Input((2,))
    out = Dense(1)(inp, mask=None)               # Keras configs may carry mask=None
    assert out.shape == (None, 1)


def test_keras3_functional_config_with_op_node_and_dtype_policy_loads():
    kt = lambda layer: {"class_name": "__keras_tensor__",   # noqa: E731
                        "config": {"shape": [None, 3], "dtype": "float32",
                                   "keras_history": [layer, 0, 0]}}
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
              "registered_name": None}
    cfg = {"name": "k3", "trainable": True, "layers": [
        {"module": "keras.layers", "class_name": "InputLayer", "name": "k3_in",
         "config": {"batch_shape": [None, 3], "dtype": "float32", "sparse": False,
                    "ragged": False, "name": "k3_in"}, "registered_name": None,
         "inbound_nodes": []},
        {"module": "keras.src.ops.numpy", "class_name": "Add", "name": "k3_add",
         "config": {"name": "k3_add"}, "registered_name": None,
         "inbound_nodes": [{"args": [kt("k3_in"), 2.0], "kwargs": {}}]},
        {"module": "keras.layers", "class_name": "Dense", "name": "k3_d",
         "config": {"name": "k3_d", "units": 2, "dtype": policy, "lora_rank": None},
         "registered_name": None, "build_config": {"input_shape": [None, 3]},
         "inbound_nodes": [{"args": [kt("k3_add")], "kwargs": {"mask": None}}]}],
        "input_layers": [["k3_in", 0, 0]], "output_layers": [["k3_d", 0, 0]]}
    m = Model.from_config(cfg)
    k, b = m.get_layer("k3_d").get_weights()
    x = rand(2, 3)
    np.testing.assert_allclose(m(x), (x + 2.0) @ k + b, rtol=1e-5, atol=1e-6)


def test_feature_extraction_from_a_sequential_base():
    base = Sequential([Input((5,)), Dense(4, activation="relu", name="fe1"),
                       Dense(3, name="fe2"), Dense(2, name="fe3")])
    base.pop()
    base.add(Dense(6, name="fe4"))
    features = Model(inputs=base.input, outputs=base.get_layer("fe2").output)
    assert [l.name for l in features.layers[1:]] == ["fe1", "fe2"]
    head = Model(base.input, Dense(1, name="fe_head")(base.output))
    x = rand(3, 5)
    f = dense_np(base.get_layer("fe2"), dense_np(base.get_layer("fe1"), x, relu))
    np.testing.assert_allclose(features(x), f, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(head(x), dense_np(head.get_layer("fe_head"),
                                                 dense_np(base.get_layer("fe4"), f)),
                               rtol=1e-5, atol=1e-5)
    import graphc
    assert graphc.Input is Input and graphc.Sequential is Sequential
