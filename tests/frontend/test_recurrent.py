"""Recurrent layers (SimpleRNN, LSTM, GRU, cells, RNN, Bidirectional) against an independent
float64 numpy implementation of Keras' equations written here; weight layouts and names;
dropout masks; gradients through the unrolled graph vs central finite differences; and an
LSTM that learns a toy sequence task through ``model.fit`` on the reference target."""
from __future__ import annotations

import numpy as np
import pytest

from graphc.errors import ShapeError
from graphc.frontend.layers._tree import flatten
from graphc.frontend.layers.recurrent import (GRU, LSTM, RNN, Bidirectional, GRUCell,
                                              LSTMCell, SimpleRNN, SimpleRNNCell,
                                              split_steps)
from graphc.frontend.tracing import TraceContext
from graphc.ir.dtypes import DType, TensorType
from graphc.ir.graph import Graph
from graphc.ir.interpreter import interpret
from graphc.layers import Dense, Input, Layer, deserialize, serialize

RNG = np.random.default_rng(20240611)
B, T, F, U = 3, 5, 4, 3


def rand(*shape, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype(np.float32)


# ----------------------------------------------------------------------------- oracles
# Keras 3's equations (keras/src/layers/rnn/{simple_rnn,lstm,gru}.py), float64.

def sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _loop(step, x, states, go_backwards):
    outs = []
    for t in (range(x.shape[1] - 1, -1, -1) if go_backwards else range(x.shape[1])):
        out, states = step(x[:, t].astype(np.float64), states)
        outs.append(out)
    return np.stack(outs, axis=1), states


def simple_rnn_ref(x, w, h0=None, go_backwards=False):
    k, rk, b = (np.float64(a) for a in w)
    h = np.zeros((x.shape[0], rk.shape[0])) if h0 is None else np.float64(h0[0])

    def step(xt, s):
        h = np.tanh(xt @ k + b + s[0] @ rk)
        return h, [h]
    return _loop(step, x, [h], go_backwards)


def lstm_ref(x, w, h0=None, go_backwards=False):
    k, rk, b = (np.float64(a) for a in w)
    u = rk.shape[0]
    s0 = [np.zeros((x.shape[0], u))] * 2 if h0 is None else [np.float64(a) for a in h0]

    def step(xt, s):
        h, c = s
        z = xt @ k + h @ rk + b
        i, f, g, o = sig(z[:, :u]), sig(z[:, u:2 * u]), np.tanh(z[:, 2 * u:3 * u]), \
            sig(z[:, 3 * u:])
        c = f * c + i * g
        h = o * np.tanh(c)
        return h, [h, c]
    return _loop(step, x, s0, go_backwards)


def gru_ref(x, w, reset_after=True, h0=None, go_backwards=False):
    k, rk, b = (np.float64(a) for a in w)
    u = rk.shape[0]
    h = np.zeros((x.shape[0], u)) if h0 is None else np.float64(h0[0])

    def step(xt, s):
        h = s[0]
        if reset_after:
            mx = xt @ k + b[0]
            mi = h @ rk + b[1]
            z = sig(mx[:, :u] + mi[:, :u])
            r = sig(mx[:, u:2 * u] + mi[:, u:2 * u])
            hh = np.tanh(mx[:, 2 * u:] + r * mi[:, 2 * u:])
        else:
            mx = xt @ k + b
            z = sig(mx[:, :u] + h @ rk[:, :u])
            r = sig(mx[:, u:2 * u] + h @ rk[:, u:2 * u])
            hh = np.tanh(mx[:, 2 * u:] + (r * h) @ rk[:, 2 * u:])
        h = z * h + (1 - z) * hh
        return h, [h]
    return _loop(step, x, [h], go_backwards)


def expected(seq, states, return_sequences, return_state):
    out = seq if return_sequences else seq[:, -1]
    return [out] + list(states) if return_state else [out]


def randomize(layer, scale=0.5):
    layer.set_weights([rand(*w.shape, scale=scale) for w in layer.get_weights()])
    return layer.get_weights()


def trace_run(layer, x, training=False, seed=7, step=0, **kwargs):
    """Run ``layer`` in a trace with explicit seed/step inputs (as the train-step builder
    does); returns the flat outputs as numpy arrays, and the graph."""
    g = Graph("t")
    s = g.add_input("seed", TensorType((), DType.i64))
    k = g.add_input("step", TensorType((), DType.i64))
    xv = g.add_input("x", TensorType.of(x))
    with TraceContext(g, training=training, seed=s, step=k) as ctx:
        out = layer(xv, **kwargs)
    outs = flatten(out)
    g.set_outputs(outs)
    by_param = {val: var for var, val in ctx.var_values.items()}
    res = interpret(g, [np.array(seed, np.int64), np.array(step, np.int64), x],
                    [by_param[p].value for p in g.params])
    return res, g


def check(got, want, atol=1e-5):
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=atol, rtol=1e-5)


VARIANTS = [dict(return_sequences=rs, return_state=st, go_backwards=gb)
            for rs in (False, True) for st in (False, True) for gb in (False, True)]


# ----------------------------------------------------------------------------- forward

@pytest.mark.parametrize("kw", VARIANTS, ids=lambda kw: "-".join(k for k, v in kw.items() if v)
                         or "plain")
def test_simple_rnn_and_lstm_forward_match_keras_equations(kw):
    x = rand(B, T, F)
    for cls, ref, n_states in ((SimpleRNN, simple_rnn_ref, 1), (LSTM, lstm_ref, 2)):
        layer = cls(U, **kw)
        layer.build((None, T, F))
        w = randomize(layer)
        check(layer(x), expected(*ref(x, w, go_backwards=kw["go_backwards"]),
                                 kw["return_sequences"], kw["return_state"]))
        h0 = [rand(B, U) for _ in range(n_states)]
        check(layer(x, initial_state=h0),
              expected(*ref(x, w, h0=h0, go_backwards=kw["go_backwards"]),
                       kw["return_sequences"], kw["return_state"]))


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_gru_forward_matches_keras_equations(reset_after, go_backwards):
    x = rand(B, T, F)
    layer = GRU(U, reset_after=reset_after, go_backwards=go_backwards,
                return_sequences=True, return_state=True)
    layer.build((None, T, F))
    assert layer.get_weights()[2].shape == ((2, 3 * U) if reset_after else (3 * U,))
    w = randomize(layer)
    check(layer(x), expected(*gru_ref(x, w, reset_after, go_backwards=go_backwards),
                             True, True))
    h0 = [rand(B, U)]
    check(layer(x, initial_state=h0),
          expected(*gru_ref(x, w, reset_after, h0=h0, go_backwards=go_backwards), True, True))
    last = GRU(U, reset_after=reset_after, go_backwards=go_backwards)
    last.build((None, T, F))
    last.set_weights(w)
    check(last(x), [gru_ref(x, w, reset_after, go_backwards=go_backwards)[0][:, -1]])


def test_initial_state_as_list_input_and_time_steps_one():
    x = rand(B, 1, F)
    layer = LSTM(U, return_state=True)
    layer.build((None, 1, F))
    w = randomize(layer)
    h0 = [rand(B, U), rand(B, U)]
    res, _ = trace_run(layer, x, initial_state=h0)
    check(res, expected(*lstm_ref(x, w, h0=h0), False, True))
    check(layer([x] + h0), res)                 # Keras' [sequence, *states] input form
    with pytest.raises(ValueError, match="expected 2 initial state"):
        layer(x, initial_state=h0[:1])


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_merge_modes(merge_mode, return_sequences):
    x = rand(B, T, F)
    layer = Bidirectional(LSTM(U, return_sequences=return_sequences), merge_mode=merge_mode)
    layer.build((None, T, F))
    w = randomize(layer)
    fw, _ = lstm_ref(x, w[:3])
    bw, _ = lstm_ref(x, w[3:], go_backwards=True)
    if return_sequences:
        bw = bw[:, ::-1]                # Keras flips the backward sequence back in time
    else:
        fw, bw = fw[:, -1], bw[:, -1]
    want = {"concat": [np.concatenate([fw, bw], -1)], "sum": [fw + bw], "mul": [fw * bw],
            "ave": [(fw + bw) / 2], None: [fw, bw]}[merge_mode]
    check(layer(x), want)
    out = layer(Input((T, F)))
    shapes = [o.shape for o in flatten(out)]
    assert shapes == [(None,) + w_.shape[1:] for w_ in want]


def test_bidirectional_return_state_initial_state_and_gru_backward_layer():
    x = rand(B, T, F)
    layer = Bidirectional(LSTM(U, return_sequences=True, return_state=True))
    layer.build((None, T, F))
    w = randomize(layer)
    s0 = [rand(B, U) for _ in range(4)]
    fw, fs = lstm_ref(x, w[:3], h0=s0[:2])
    bw, bs = lstm_ref(x, w[3:], h0=s0[2:], go_backwards=True)
    check(layer(x, initial_state=s0), [np.concatenate([fw, bw[:, ::-1]], -1)] + fs + bs)
    # an explicit backward layer of another kind, and a wrapped GRU
    bi = Bidirectional(GRU(U, return_sequences=True),
                       backward_layer=SimpleRNN(U, return_sequences=True, go_backwards=True),
                       merge_mode="sum")
    bi.build((None, T, F))
    w = randomize(bi)
    want = gru_ref(x, w[:3])[0] + simple_rnn_ref(x, w[3:], go_backwards=True)[0][:, ::-1]
    check(bi(x), [want])
    with pytest.raises(ValueError, match="go_backwards"):
        Bidirectional(LSTM(2), backward_layer=LSTM(2))
    with pytest.raises(ValueError, match="merge_mode"):
        Bidirectional(LSTM(2), merge_mode="max")


# ----------------------------------------------------------------------------- cells

def test_cells_single_step_and_rnn_wrapper():
    x = rand(B, T, F)
    for cell_cls, layer_cls, ref, n in ((SimpleRNNCell, SimpleRNN, simple_rnn_ref, 1),
                                        (LSTMCell, LSTM, lstm_ref, 2),
                                        (GRUCell, GRU, gru_ref, 1)):
        cell = cell_cls(U)
        cell.build((None, F))
        w = randomize(cell)
        states = [rand(B, U) for _ in range(n)]
        out, new = cell(x[:, 0], states)
        seq, ref_states = ref(x[:, :1], w, h0=states)
        check([out] + list(new), [seq[:, 0]] + ref_states)
        rnn = RNN(cell_cls(U), return_sequences=True, go_backwards=True)
        rnn.build((None, T, F))
        rnn.set_weights(w)
        check(rnn(x), [ref(x, w, go_backwards=True)[0]])
        assert [v.path for v in rnn.weights] == [f"{rnn.name}.kernel",
                                                 f"{rnn.name}.recurrent_kernel",
                                                 f"{rnn.name}.bias"]


class MinimalRNNCell(Layer):
    """The custom cell of Keras' RNN documentation: runs through the generic loop."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, self.units),
                                                name="recurrent_kernel")

    def call(self, inputs, states):
        from graphc import ops
        prev = states[0]
        out = ops.add(ops.matmul(inputs, self.kernel), ops.matmul(prev, self.recurrent_kernel))
        return out, [out]


class PerStep(Layer):
    """A sequence layer that is not an RNN (``tanh(x @ w)`` per step, time order kept
    whatever ``go_backwards`` says): Bidirectional flips its backward copy's output."""

    def __init__(self, units, go_backwards=False, **kwargs):
        super().__init__(**kwargs)
        self.units, self.go_backwards = units, go_backwards
        self.return_sequences, self.return_state, self.stateful = True, False, False

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), name="w")

    def call(self, x):
        from graphc import ops
        return ops.tanh(ops.matmul(x, self.w))

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "go_backwards": self.go_backwards}


def test_bidirectional_flips_a_non_rnn_backward_layer():
    x = rand(B, T, F)
    layer = Bidirectional(PerStep(U), merge_mode="concat")
    layer.build((None, T, F))
    fw, bw = (np.tanh(np.float64(x) @ w) for w in randomize(layer))
    check(layer(x), [np.concatenate([fw, bw[:, ::-1]], -1)])


def test_rnn_with_custom_cell_uses_generic_loop():
    x = rand(B, T, F)
    layer = RNN(MinimalRNNCell(U), return_sequences=True, return_state=True)
    layer.build((None, T, F))
    k, rk = randomize(layer)
    h = np.zeros((B, U))
    outs = []
    for t in range(T):
        h = x[:, t] @ np.float64(k) + h @ np.float64(rk)
        outs.append(h)
    check(layer(x), [np.stack(outs, 1), h])
    assert layer(Input((T, F)))[0].shape == (None, T, U)


# ----------------------------------------------------------------------------- weights

def test_weight_shapes_order_names_and_unit_forget_bias():
    specs = [(SimpleRNN(U), [(F, U), (U, U), (U,)]),
             (LSTM(U), [(F, 4 * U), (U, 4 * U), (4 * U,)]),
             (GRU(U), [(F, 3 * U), (U, 3 * U), (2, 3 * U)]),
             (GRU(U, reset_after=False), [(F, 3 * U), (U, 3 * U), (3 * U,)]),
             (SimpleRNN(U, use_bias=False), [(F, U), (U, U)])]
    for layer, shapes in specs:
        layer.build((None, T, F))
        assert [w.shape for w in layer.get_weights()] == shapes
        names = ["kernel", "recurrent_kernel", "bias"][:len(shapes)]
        assert [v.name for v in layer.weights] == names
        assert [v.path for v in layer.weights] == [f"{layer.name}.{n}" for n in names]
        assert layer.count_params() == sum(int(np.prod(s)) for s in shapes)
    lstm = LSTM(U)
    lstm.build((None, T, F))
    bias = lstm.get_weights()[2]
    np.testing.assert_array_equal(bias, np.r_[np.zeros(U), np.ones(U), np.zeros(2 * U)])
    rk = lstm.get_weights()[1]          # orthogonal recurrent init, per gate block columns
    np.testing.assert_allclose(rk @ rk.T, np.eye(U), atol=1e-5)
    no_ufb = LSTM(U, unit_forget_bias=False)
    no_ufb.build((None, T, F))
    np.testing.assert_array_equal(no_ufb.get_weights()[2], 0)
    bi = Bidirectional(LSTM(U, name="enc"), name="bi")
    bi.build((None, T, F))
    assert [v.path for v in bi.weights] == [
        f"bi.forward_enc.{n}" for n in ("kernel", "recurrent_kernel", "bias")] + [
        f"bi.backward_enc.{n}" for n in ("kernel", "recurrent_kernel", "bias")]
    assert bi.forward_layer.name == "forward_enc" and bi.backward_layer.go_backwards
    # Bidirectional(weights=...) sets the forward half then the backward half
    w = [rand(*a.shape) for a in bi.get_weights()]
    bi2 = Bidirectional(LSTM(U), weights=w)
    bi2(Input((T, F)))
    for a, b in zip(bi2.get_weights(), w):
        np.testing.assert_array_equal(a, b)


def test_stacked_lstms_distinct_param_names_and_no_reslicing():
    from graphc.models import Sequential
    from graphc.passes.pipeline import build_stage
    model = Sequential([Input((T, F)), LSTM(U, return_sequences=True), LSTM(U), Dense(1)])
    g = build_stage(model, "traced", 2)
    names = [p.name for p in g.params]
    assert len(names) == len(set(names)) == 8
    # the first LSTM cuts the model input into steps (flat: no gradient flows into it);
    # the second takes the first's step values as they are; each step slices 4 gate blocks
    assert g.op_counts()["slice"] == T + 2 * 4 * T


def test_configs_round_trip():
    for layer in (LSTM(U, return_sequences=True, dropout=0.2, unit_forget_bias=False,
                       recurrent_activation="hard_sigmoid"),
                  GRU(U, reset_after=False, go_backwards=True, recurrent_dropout=0.1, seed=3),
                  SimpleRNN(U, activation="relu", return_state=True),
                  RNN(LSTMCell(U), return_sequences=True),
                  Bidirectional(GRU(U, return_sequences=True), merge_mode="ave")):
        d = serialize(layer)
        clone = deserialize(d)
        assert type(clone) is type(layer)
        assert clone.get_config() == layer.get_config()
    cfg = LSTM(U).get_config()
    assert "cell" not in cfg and cfg["units"] == U and cfg["unit_forget_bias"] is True
    assert GRU(U).get_config()["reset_after"] is True


def test_unsupported_options_raise_clear_errors():
    with pytest.raises(ValueError, match="stateful=True is not supported"):
        LSTM(U, stateful=True)
    with pytest.raises(ShapeError, match="rank 3"):
        LSTM(U)(Input((F,)))
    layer = LSTM(U)
    with pytest.raises(NotImplementedError, match="masking"):
        layer(rand(B, T, F), mask=np.ones((B, T), bool))


# ----------------------------------------------------------------------------- dropout

def test_dropout_masks_fixed_across_time_and_pure_in_seed_and_step():
    steps, feats = 6, 40
    # kernel = I, recurrent = 0, linear: output_t = x_t * input_mask
    layer = SimpleRNN(feats, activation=None, dropout=0.5, return_sequences=True)
    layer.build((None, steps, feats))
    layer.set_weights([np.eye(feats), np.zeros((feats, feats)), np.zeros(feats)])
    x = np.ones((8, steps, feats), np.float32)
    (y,), g = trace_run(layer, x, training=True)
    assert set(np.unique(y)) <= {0.0, 2.0} and 0.3 < (y == 0).mean() < 0.7
    assert (y == y[:, :1]).all()                        # one mask for the whole sequence
    assert g.op_counts()["random_uniform"] == 1
    (y2,), _ = trace_run(layer, x, training=True)
    np.testing.assert_array_equal(y, y2)                # same (seed, step): same mask
    (y3,), _ = trace_run(layer, x, training=True, step=1)
    assert (y3 != y).any()
    (y4,), _ = trace_run(layer, x, training=False)
    np.testing.assert_array_equal(y4, x)
    # recurrent: kernel = 0, recurrent = I, h0 = 1: h_t = m^t with one fixed mask m
    rec = SimpleRNN(feats, activation=None, recurrent_dropout=0.5, return_sequences=True)
    rec.build((None, steps, feats))
    rec.set_weights([np.zeros((feats, feats)), np.eye(feats), np.zeros(feats)])
    (h,), _ = trace_run(rec, x, training=True, initial_state=[np.ones((8, feats))])
    m = h[:, 0]
    assert set(np.unique(m)) <= {0.0, 2.0}
    for t in range(steps):
        np.testing.assert_allclose(h[:, t], m ** (t + 1))


@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_gated_dropout_is_deterministic_and_only_in_training(cls):
    x = rand(4, T, F)
    layer = cls(U, dropout=0.3, recurrent_dropout=0.3, return_sequences=True)
    layer.build((None, T, F))
    w = randomize(layer)
    (a,), g = trace_run(layer, x, training=True)
    (b,), _ = trace_run(layer, x, training=True)
    np.testing.assert_array_equal(a, b)
    # Keras' implementation=1: one input mask per gate, one batched recurrent mask draw
    assert g.op_counts()["random_uniform"] == layer.cell._gates + 1
    (c,), g2 = trace_run(layer, x, training=False)
    assert "random_uniform" not in g2.op_counts()
    ref = lstm_ref(x, w)[0] if cls is LSTM else gru_ref(x, w)[0]
    check([c], [ref])
    assert not np.allclose(a, c)


# ----------------------------------------------------------------------------- gradients

def grad_check(layer, x, n_out_states=0, wrt_x=True, **kwargs):
    """d(sum(outputs * R))/d(weights, x) from graphc's autodiff vs central differences of
    the forward graph, all in float64."""
    from graphc.passes.autodiff import gradients
    from graphc import ops
    g = Graph("gc")
    s = g.add_input("seed", TensorType((), DType.i64))
    k = g.add_input("step", TensorType((), DType.i64))
    xv = g.add_input("x", TensorType.of(x))
    with TraceContext(g, training=False, seed=s, step=k) as ctx:
        outs = flatten(layer(xv, **kwargs))
        loss = None
        for o in outs:
            r = RNG.standard_normal(o.shape)
            term = ops.sum(ops.multiply(o, r))
            loss = term if loss is None else ops.add(loss, term)
        weights = layer.weights
        wrt = [ctx.value_of(v) for v in weights] + [xv]
        grads = gradients(g, loss, wrt, builder=ctx.builder)
    g.set_outputs([loss] + grads)
    by_param = {val: var for var, val in ctx.var_values.items()}

    def run(xa):
        return interpret(g, [np.array(0, np.int64), np.array(0, np.int64), xa],
                         [by_param[p].value for p in g.params])

    res = run(x)
    eps = 1e-6
    targets = [(v.value, gr) for v, gr in zip(weights, res[1:-1])]
    if wrt_x:
        targets.append((x, res[-1]))
    for arr, analytic in targets:
        flat = arr.reshape(-1)
        numeric = np.zeros(flat.size)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            up = run(x)[0]
            flat[i] = old - eps
            down = run(x)[0]
            flat[i] = old
            numeric[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(analytic.reshape(-1), numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("make", [
    lambda: SimpleRNN(2, return_sequences=True, dtype="float64"),
    lambda: LSTM(2, go_backwards=True, return_state=True, dtype="float64"),
    lambda: GRU(2, return_sequences=True, dtype="float64"),
    lambda: GRU(2, reset_after=False, go_backwards=True, dtype="float64"),
    lambda: Bidirectional(LSTM(2, return_sequences=True, dtype="float64"), dtype="float64"),
], ids=["simple_rnn", "lstm", "gru", "gru_reset_before", "bidirectional"])
def test_gradients_match_finite_differences(make):
    x = RNG.standard_normal((2, 4, 3))
    layer = make()
    layer.build((None, 4, 3))
    randomize(layer, scale=0.8)
    grad_check(layer, x)


class Stack(Layer):
    """Layers applied in sequence (float64), to differentiate through their seams."""

    def __init__(self, *layers):
        super().__init__(dtype="float64")
        self.parts = list(layers)

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.parts:
            layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))

    def call(self, x):
        for layer in self.parts:
            x = layer(x)
        return x


@pytest.mark.parametrize("make", [
    # a return_sequences RNN feeding another (its step values are taken as they are)
    lambda: Stack(LSTM(2, return_sequences=True, dtype="float64"),
                  GRU(2, go_backwards=True, dtype="float64")),
    # a computed sequence (cut into steps by a tree of slices)
    lambda: Stack(Dense(3, dtype="float64"), LSTM(2, return_sequences=True, dtype="float64")),
    # the generic per-step loop of a custom cell, on a computed sequence
    lambda: Stack(Dense(3, dtype="float64"), RNN(MinimalRNNCell(2, dtype="float64"),
                                                 go_backwards=True, dtype="float64")),
    # a generic RNN as backward layer (emits its sequence in time order itself)
    lambda: Stack(Dense(3, dtype="float64"),
                  Bidirectional(SimpleRNN(2, return_sequences=True, dtype="float64"),
                                backward_layer=RNN(MinimalRNNCell(2, dtype="float64"),
                                                   return_sequences=True, go_backwards=True,
                                                   dtype="float64"),
                                dtype="float64")),
    # a backward layer that is not an RNN: its output is flipped by slices and a concat
    lambda: Stack(Dense(3, dtype="float64"),
                  Bidirectional(PerStep(2, dtype="float64"), merge_mode="mul",
                                dtype="float64")),
], ids=["rnn_on_rnn", "rnn_on_dense", "custom_cell", "bidirectional_generic_rnn",
        "bidirectional_non_rnn"])
def test_gradients_through_layer_seams(make):
    stack = make()
    stack.build((None, 4, 3))
    randomize(stack, scale=0.8)
    grad_check(stack, RNG.standard_normal((2, 4, 3)))


def test_gradients_with_initial_state():
    lstm = LSTM(2, return_sequences=True, dtype="float64")
    lstm.build((None, 4, 3))
    randomize(lstm, scale=0.8)
    h0 = [RNG.standard_normal((2, 2)), RNG.standard_normal((2, 2))]
    grad_check(lstm, RNG.standard_normal((2, 4, 3)), initial_state=h0)


# ----------------------------------------------------------------------------- graphs

def test_ir_grows_linearly_and_input_projection_is_per_step():
    from graphc.models import Sequential
    from graphc.passes.pipeline import build_stage
    sizes = {}
    for steps in (10, 20, 40):
        model = Sequential([Input((steps, F)), LSTM(U), Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        sizes[steps] = (len(build_stage(model, "traced", 2).nodes),
                        len(build_stage(model, "train", 2).nodes))
    for i in range(2):
        per_step = (sizes[40][i] - sizes[20][i]) / 20
        assert per_step == (sizes[20][i] - sizes[10][i]) / 10
    assert (sizes[40][0] - sizes[20][0]) / 20 <= 16      # forward nodes per LSTM step
    assert (sizes[40][1] - sizes[20][1]) / 20 <= 50      # train-graph nodes per step


def test_split_steps_is_a_tree_of_slices():
    g = Graph("s")
    x = g.add_input("x", TensorType((2, 7 * 3), DType.f32))
    with TraceContext(g):
        parts = split_steps(x, 7, 3)
    g.set_outputs(parts)
    xa = rand(2, 21)
    for t, p in enumerate(interpret(g, [xa], [])):
        np.testing.assert_array_equal(p, xa[:, 3 * t:3 * t + 3])
    assert g.op_counts() == {"slice": 2 * 7 - 2}
    # balanced: each slice keeps at most half (rounded up) of its source's steps, so a
    # step is at most ceil(log2(7)) = 3 slices deep
    for n in g.nodes:
        assert n.outputs[0].shape[1] // 3 <= -(-(n.inputs[0].shape[1] // 3) // 2)


def test_functional_encoder_decoder_with_states():
    from graphc.models import Model
    enc_in, dec_in = Input((T, F)), Input((T - 1, F))
    _, h, c = LSTM(U, return_state=True, name="enc")(enc_in)
    dec = LSTM(U, return_sequences=True, name="dec")(dec_in, initial_state=[h, c])
    model = Model([enc_in, dec_in], Dense(2, name="head")(dec))
    assert model.output_shape == (None, T - 1, 2)
    xe, xd = rand(B, T, F), rand(B, T - 1, F)
    enc_w = model.get_layer("enc").get_weights()
    dec_w = model.get_layer("dec").get_weights()
    kd, bd = model.get_layer("head").get_weights()
    _, (h_ref, c_ref) = lstm_ref(xe, enc_w)
    seq, _ = lstm_ref(xd, dec_w, h0=[h_ref, c_ref])
    np.testing.assert_allclose(model.predict([xe, xd], verbose=0), seq @ kd + bd, atol=1e-5)


def test_unknown_time_dimension_in_symbolic_shapes():
    out = LSTM(U, return_sequences=True)(Input((None, F)))
    assert out.shape == (None, None, U)
    seq, h = GRU(U, return_state=True)(Input((None, F)))
    assert seq.shape == (None, U) and h.shape == (None, U)


# ----------------------------------------------------------------------------- training

def test_lstm_learns_sign_of_sequence_sum():
    from graphc.models import Sequential
    from graphc.utils import set_random_seed
    set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 8, 1)).astype(np.float32)
    y = (x.sum(axis=(1, 2)) > 0).astype(np.float32)[:, None]
    from graphc.optimizers import Adam
    model = Sequential([Input((8, 1)), LSTM(8), Dense(1, activation="sigmoid")])
    model.compile(optimizer=Adam(0.02), loss="binary_crossentropy", metrics=["accuracy"],
                  target="reference")
    hist = model.fit(x, y, batch_size=32, epochs=8, verbose=0)
    losses = hist.history["loss"]
    assert losses[-1] < 0.6 * losses[0], losses
    assert hist.history["accuracy"][-1] > 0.85
