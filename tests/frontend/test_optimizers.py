"""Optimizers: each one's traced update, run for 3 steps by the reference interpreter, vs a
float64 numpy re-implementation of the Keras 3 formula; the state contract (variables, paths,
order, state_updates, settable learning rate without retracing); schedules; clipping; weight
decay; constraints; get/config forms."""
import numpy as np
import pytest

import graphc.constraints as K
import graphc.optimizers as O
from graphc.errors import UnknownNameError
from graphc.frontend.tracing import TraceContext
from graphc.frontend.variables import Variable
from graphc.ir.dtypes import TensorType
from graphc.ir.graph import Graph
from graphc.ir.interpreter import interpret
from graphc.optimizers.schedules import (ExponentialDecay, InverseTimeDecay,
                                         PiecewiseConstantDecay, PolynomialDecay)


class Stepper:
    """Traces one optimizer step once (gradients are graph inputs) and runs it repeatedly
    with the interpreter, writing ``state_updates`` back into the Variables — what the
    runtime does with its buffers."""

    def __init__(self, opt, variables):
        opt.build(variables)
        self.g = Graph("step")
        grads = [self.g.add_input(f"grad{i}", v.type) for i, v in enumerate(variables)]
        with TraceContext(self.g) as ctx:
            opt.apply_graph(list(zip(grads, variables)))
        self.ctx = ctx
        self.updates = list(ctx.state_updates.items())
        self.g.set_outputs([u for _, u in self.updates])
        self.variables = variables

    def __call__(self, grads):
        params = {val.name: var.value for var, val in self.ctx.var_values.items()}
        ins = [np.asarray(g, dtype=v.dtype.np) for g, v in zip(grads, self.variables)]
        outs = interpret(self.g, ins, params)
        for (var, _), out in zip(self.updates, outs):
            var.assign(out)


rng = np.random.default_rng(3)
W0 = [rng.normal(size=(3, 2)), rng.normal(size=(4,))]
GRADS = [[rng.normal(size=w.shape) for w in W0] for _ in range(3)]


def make_vars(dtype="float64"):
    return [Variable(W0[0], "kernel", "dense.kernel", dtype=dtype),
            Variable(W0[1], "bias", "dense.bias", dtype=dtype)]


def run(opt, dtype="float64", grads=GRADS):
    vs = make_vars(dtype)
    step = Stepper(opt, vs)
    for gs in grads:
        step(gs)
    return [v.numpy() for v in vs], opt


# ------------------------------------------------------------- float64 numpy references

def ref_sgd(lr, momentum=0.0, nesterov=False):
    out = []
    for i, w in enumerate(W0):
        w, m = w.copy(), np.zeros_like(w)
        for gs in GRADS:
            g = gs[i]
            if momentum:
                m = momentum * m - lr * g
                w = w + (momentum * m - lr * g if nesterov else m)
            else:
                w = w - lr * g
        out.append(w)
    return out


def ref_rmsprop(lr, rho=0.9, momentum=0.0, eps=1e-7, centered=False):
    out = []
    for i, w in enumerate(W0):
        w, v, m, a = w.copy(), 0 * w, 0 * w, 0 * w
        for gs in GRADS:
            g = gs[i]
            v = rho * v + (1 - rho) * g * g
            if centered:
                a = rho * a + (1 - rho) * g
                denom = v - a * a + eps
            else:
                denom = v + eps
            inc = lr * g / np.sqrt(denom)
            if momentum:
                m = momentum * m + inc
                w = w - m
            else:
                w = w - inc
        out.append(w)
    return out


def ref_adagrad(lr, init=0.1, eps=1e-7):
    out = []
    for i, w in enumerate(W0):
        w, acc = w.copy(), np.full_like(w, init)
        for gs in GRADS:
            acc = acc + gs[i] ** 2
            w = w - lr * gs[i] / np.sqrt(acc + eps)
        out.append(w)
    return out


def ref_adadelta(lr, rho=0.95, eps=1e-7):
    out = []
    for i, w in enumerate(W0):
        w, eg, ed = w.copy(), 0 * w, 0 * w
        for gs in GRADS:
            g = gs[i]
            eg = rho * eg + (1 - rho) * g * g
            d = -np.sqrt(ed + eps) * g / np.sqrt(eg + eps)
            ed = rho * ed + (1 - rho) * d * d
            w = w + lr * d
        out.append(w)
    return out


def ref_adam(lr, b1=0.9, b2=0.999, eps=1e-7, amsgrad=False):
    out = []
    for i, w in enumerate(W0):
        w, m, v, vh = w.copy(), 0 * w, 0 * w, 0 * w
        for t, gs in enumerate(GRADS, start=1):
            g = gs[i]
            alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            m = m + (g - m) * (1 - b1)
            v = v + (g * g - v) * (1 - b2)
            if amsgrad:
                vh = np.maximum(vh, v)
            w = w - alpha * m / (np.sqrt(vh if amsgrad else v) + eps)
        out.append(w)
    return out


# Learning rates exactly representable in float32 (the lr variable is float32).
CASES = [
    (lambda: O.SGD(0.125), lambda: ref_sgd(0.125)),
    (lambda: O.SGD(0.125, momentum=0.9), lambda: ref_sgd(0.125, 0.9)),
    (lambda: O.SGD(0.125, momentum=0.5, nesterov=True), lambda: ref_sgd(0.125, 0.5, True)),
    (lambda: O.RMSprop(0.0625), lambda: ref_rmsprop(0.0625)),
    (lambda: O.RMSprop(0.0625, momentum=0.5), lambda: ref_rmsprop(0.0625, momentum=0.5)),
    (lambda: O.RMSprop(0.0625, rho=0.8, centered=True),
     lambda: ref_rmsprop(0.0625, rho=0.8, centered=True)),
    (lambda: O.Adagrad(0.25), lambda: ref_adagrad(0.25)),
    (lambda: O.Adagrad(0.25, initial_accumulator_value=0.5), lambda: ref_adagrad(0.25, 0.5)),
    (lambda: O.Adadelta(1.0), lambda: ref_adadelta(1.0)),
    (lambda: O.Adadelta(0.5, rho=0.9), lambda: ref_adadelta(0.5, rho=0.9)),
    (lambda: O.Adam(0.125), lambda: ref_adam(0.125)),
    (lambda: O.Adam(0.125, beta_1=0.8, beta_2=0.99, amsgrad=True),
     lambda: ref_adam(0.125, 0.8, 0.99, amsgrad=True)),
]


@pytest.mark.parametrize("make,ref", CASES)
def test_three_steps_match_keras_formula(make, ref):
    got, opt = run(make())
    for g, w in zip(got, ref()):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)
    assert int(opt.iterations) == 3


@pytest.mark.parametrize("name,ref", [("sgd", lambda: ref_sgd(0.01)),
                                      ("rmsprop", lambda: ref_rmsprop(0.001)),
                                      ("adagrad", lambda: ref_adagrad(0.001)),
                                      ("adadelta", lambda: ref_adadelta(0.001)),
                                      ("adam", lambda: ref_adam(0.001))])
def test_float32_defaults(name, ref):
    got, _ = run(O.get(name), dtype="float32")
    for g, w in zip(got, ref()):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6)


def test_keras_defaults_and_config_keys():
    sgd, rms, ada, adad, adam = (O.SGD(), O.RMSprop(), O.Adagrad(), O.Adadelta(), O.Adam())
    assert float(sgd.learning_rate) == pytest.approx(0.01) and sgd.momentum == 0.0
    assert not sgd.nesterov
    assert (rms.rho, rms.momentum, rms.epsilon, rms.centered) == (0.9, 0.0, 1e-7, False)
    assert (ada.initial_accumulator_value, ada.epsilon) == (0.1, 1e-7)
    assert (adad.rho, adad.epsilon) == (0.95, 1e-7)
    assert (adam.beta_1, adam.beta_2, adam.epsilon, adam.amsgrad) == (0.9, 0.999, 1e-7, False)
    for o in (rms, ada, adad, adam):
        assert float(o.learning_rate) == pytest.approx(0.001)
    cfg = adam.get_config()
    for k in ("name", "learning_rate", "weight_decay", "clipnorm", "global_clipnorm",
              "clipvalue", "use_ema", "ema_momentum", "ema_overwrite_frequency",
              "loss_scale_factor", "gradient_accumulation_steps", "beta_1", "beta_2",
              "epsilon", "amsgrad"):
        assert k in cfg
    again = O.Adam.from_config(cfg)
    assert again.get_config() == cfg


def test_state_contract():
    vs = make_vars()
    opt = O.Adam(0.125)
    assert [v.path for v in opt.variables] == ["optimizer.iterations", "optimizer.learning_rate"]
    assert opt.iterations.dtype.np == np.int64 and opt.learning_rate_variable.dtype.np == np.float32
    opt.build(vs)
    paths = [v.path for v in opt.variables]
    assert paths == ["optimizer.iterations", "optimizer.learning_rate",
                     "dense.kernel.momentum", "dense.kernel.velocity",
                     "dense.bias.momentum", "dense.bias.velocity"]
    assert all(not v.trainable for v in opt.variables)
    first = opt.variables
    opt.build(vs)  # no-op
    assert opt.variables == first and all(a is b for a, b in zip(opt.variables, first))
    step = Stepper(opt, vs)
    # every trained variable, slot and the counter is updated; the rate is only read
    assert set(step.ctx.state_updates) == (set(vs) | set(first)) - {opt.learning_rate_variable}
    assert opt.learning_rate_variable in step.ctx.var_values
    extra = Variable(np.zeros(2), "k2", "dense_1.kernel", dtype="float64")
    opt.build(vs + [extra])  # a newly trainable variable gets its slots appended
    assert [v.path for v in opt.variables][6:] == ["dense_1.kernel.momentum",
                                                   "dense_1.kernel.velocity"]
    assert [v.path for v in O.SGD().variables] == ["optimizer.iterations",
                                                   "optimizer.learning_rate"]
    sgd = O.SGD(momentum=0.9)
    sgd.build(vs)
    assert [v.path for v in sgd.variables][2:] == ["dense.kernel.momentum", "dense.bias.momentum"]
    rms = O.RMSprop(momentum=0.5, centered=True)
    rms.build(vs[:1])
    assert [v.path for v in rms.variables][2:] == ["dense.kernel.velocity",
                                                   "dense.kernel.momentum",
                                                   "dense.kernel.average_gradient"]
    ad = O.Adadelta()
    ad.build(vs[:1])
    assert [v.path for v in ad.variables][2:] == ["dense.kernel.accumulated_grad",
                                                  "dense.kernel.accumulated_delta_var"]
    ag = O.Adagrad()
    ag.build(vs[:1])
    np.testing.assert_array_equal(ag.variables[2].value, np.full((3, 2), 0.1))


def test_learning_rate_is_settable_between_steps_without_retracing():
    vs = make_vars()
    opt = O.SGD(0.5)
    step = Stepper(opt, vs)
    w = vs[0].numpy()
    step(GRADS[0])
    np.testing.assert_allclose(vs[0].value, w - 0.5 * GRADS[0][0])
    opt.learning_rate = 0.25  # e.g. a LearningRateScheduler callback
    assert float(opt.learning_rate) == 0.25 and float(opt.lr) == 0.25
    w = vs[0].numpy()
    step(GRADS[1])
    np.testing.assert_allclose(vs[0].value, w - 0.25 * GRADS[1][0])
    assert int(opt.iterations) == 2
    assert O.SGD(lr=0.3).get_config()["learning_rate"] == pytest.approx(0.3)  # Keras 2 kwarg


def test_schedules_eager():
    s = ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    st = ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    for step in (0, 5, 10, 25):
        assert float(s(step)) == pytest.approx(0.1 * 0.5 ** (step / 10), rel=1e-6)
        assert float(st(step)) == pytest.approx(0.1 * 0.5 ** (step // 10), rel=1e-6)
    pw = PiecewiseConstantDecay([2, 4], [1.0, 0.5, 0.1])
    assert [float(pw(i)) for i in range(7)] == pytest.approx([1, 1, 1, 0.5, 0.5, 0.1, 0.1])
    it = InverseTimeDecay(1.0, 2, 0.5)
    for step in (0, 3, 8):
        assert float(it(step)) == pytest.approx(1 / (1 + 0.5 * step / 2), rel=1e-6)
    assert float(InverseTimeDecay(1.0, 2, 0.5, staircase=True)(3)) == pytest.approx(1 / 1.5)
    pd = PolynomialDecay(1.0, 10, end_learning_rate=0.0, power=2.0)
    for step in (0, 4, 10, 15):
        assert float(pd(step)) == pytest.approx((1 - min(step, 10) / 10) ** 2, abs=1e-7)
    pc = PolynomialDecay(1.0, 10, end_learning_rate=0.0, power=1.0, cycle=True)
    for step in (0, 5, 15):
        horizon = 10 * max(1, int(np.ceil(step / 10)))
        assert float(pc(step)) == pytest.approx(1 - step / horizon, abs=1e-7)
    for sched in (s, pw, it, pd):
        again = O.schedules.deserialize(O.schedules.serialize(sched))
        assert type(again) is type(sched) and again.get_config() == sched.get_config()


@pytest.mark.parametrize("sched,lr_of", [
    (ExponentialDecay(0.5, 2, 0.5), lambda k: 0.5 * 0.5 ** (k / 2)),
    (ExponentialDecay(0.5, 2, 0.5, staircase=True), lambda k: 0.5 * 0.5 ** (k // 2)),
    (PiecewiseConstantDecay([0, 1], [0.5, 0.25, 0.125]), lambda k: [0.5, 0.25, 0.125][min(k, 2)]),
    (InverseTimeDecay(0.5, 1, 1.0), lambda k: 0.5 / (1 + k)),
])
def test_schedule_evaluated_in_graph_from_iterations(sched, lr_of):
    got, opt = run(O.SGD(learning_rate=sched))
    assert opt.learning_rate_variable is None
    assert [v.path for v in opt.variables][:1] == ["optimizer.iterations"]
    for i, w in enumerate(W0):
        want = w.copy()
        for k, gs in enumerate(GRADS):  # update k uses schedule(k): iterations before it
            want = want - lr_of(k) * gs[i]
        np.testing.assert_allclose(got[i], want, rtol=1e-6)
    assert float(opt.learning_rate) == pytest.approx(lr_of(3), rel=1e-6)  # current value
    with pytest.raises(TypeError):
        opt.learning_rate = 0.1
    cfg = opt.get_config()
    assert isinstance(cfg["learning_rate"], dict)
    assert type(O.SGD.from_config(cfg).schedule) is type(sched)


def test_clipping():
    big = [[np.full((3, 2), 3.0), np.full((4,), 0.01)]]  # norms 7.35 and 0.02
    got, _ = run(O.SGD(1.0, clipnorm=1.0), grads=big)
    g0 = big[0][0] / np.linalg.norm(big[0][0])
    np.testing.assert_allclose(got[0], W0[0] - g0, rtol=1e-6)
    np.testing.assert_allclose(got[1], W0[1] - big[0][1], rtol=1e-9)  # below: untouched
    got, _ = run(O.SGD(1.0, clipvalue=0.5), grads=big)
    np.testing.assert_allclose(got[0], W0[0] - 0.5)
    np.testing.assert_allclose(got[1], W0[1] - 0.01)
    got, _ = run(O.SGD(1.0, global_clipnorm=2.0), grads=big)
    gn = np.sqrt(sum((g ** 2).sum() for g in big[0]))
    for i in range(2):
        np.testing.assert_allclose(got[i], W0[i] - big[0][i] * 2.0 / gn, rtol=1e-6)
    with pytest.raises(ValueError):
        O.SGD(clipnorm=1.0, clipvalue=1.0)


def test_weight_decay():
    got, _ = run(O.SGD(0.5, weight_decay=0.25))
    for i, w in enumerate(W0):
        want = w.copy()
        for gs in GRADS:
            want = want - want * 0.25 * 0.5
            want = want - 0.5 * gs[i]
        np.testing.assert_allclose(got[i], want, rtol=1e-9)


def test_constraints_are_left_to_the_train_step_builder():
    """apply_graph records the raw update; the builder applies var.constraint once to it
    (a second application would change MinMaxNorm(rate<1) results)."""
    vs = make_vars()
    vs[0].constraint = K.NonNeg()
    step = Stepper(O.SGD(0.5), vs)
    step(GRADS[0])
    np.testing.assert_allclose(vs[0].value, W0[0] - 0.5 * GRADS[0][0])
    # the builder's composition, traced: constraint(state_updates[var])
    g = Graph("c")
    x = g.add_input("w", TensorType.of(vs[0].value))
    with TraceContext(g):
        out = K.MaxNorm(max_value=0.5, axis=0)(x)
    g.set_outputs([out])
    w = vs[0].numpy()
    n = np.sqrt((w ** 2).sum(0, keepdims=True))
    np.testing.assert_allclose(interpret(g, [w])[0], w * np.minimum(n, 0.5) / (n + 1e-7),
                               rtol=1e-9)


def test_constraints_vs_numpy():
    w = rng.normal(size=(4, 3)) * 3
    n0 = np.sqrt((w ** 2).sum(0, keepdims=True))
    np.testing.assert_allclose(K.get("max_norm")(w), w * np.clip(n0, 0, 2) / (n0 + 1e-7))
    n1 = np.sqrt((w ** 2).sum(1, keepdims=True))
    np.testing.assert_allclose(K.MaxNorm(1.0, axis=1)(w), w * np.clip(n1, 0, 1) / (n1 + 1e-7))
    np.testing.assert_allclose(K.get("unit_norm")(w), w / (n0 + 1e-7))
    np.testing.assert_allclose(K.get("non_neg")(w), np.where(w >= 0, w, 0))
    mm = K.MinMaxNorm(min_value=0.5, max_value=1.5, rate=0.5)(w)
    np.testing.assert_allclose(mm, w * (0.5 * np.clip(n0, 0.5, 1.5) + 0.5 * n0) / (n0 + 1e-7))
    assert isinstance(K.get({"class_name": "MaxNorm", "config": {"max_value": 3, "axis": 0}}),
                      K.MaxNorm)
    with pytest.raises(UnknownNameError) as e:
        K.get("maxnorm2")
    assert "max_norm" in str(e.value)


def test_get_forms():
    for name, cls in [("sgd", O.SGD), ("SGD", O.SGD), ("rmsprop", O.RMSprop),
                      ("RMSprop", O.RMSprop), ("adagrad", O.Adagrad), ("adadelta", O.Adadelta),
                      ("adam", O.Adam), ("Adam", O.Adam), ("adamw", O.AdamW)]:
        assert type(O.get(name)) is cls
    inst = O.Adam(0.01)
    assert O.get(inst) is inst
    k3 = O.serialize(O.RMSprop(0.01, rho=0.8, centered=True))
    r = O.get(k3)
    assert isinstance(r, O.RMSprop) and r.rho == 0.8 and r.centered
    assert float(r.learning_rate) == pytest.approx(0.01)
    k2 = {"class_name": "Adam", "config": {"name": "Adam", "learning_rate": 0.002,
                                           "decay": 0.0, "beta_1": 0.8, "beta_2": 0.99,
                                           "epsilon": 1e-07, "amsgrad": False}}
    a = O.get(k2)
    assert isinstance(a, O.Adam) and a.beta_1 == 0.8
    assert float(a.learning_rate) == pytest.approx(0.002)
    with pytest.raises(UnknownNameError) as e:
        O.get("adamm")
    for n in ("sgd", "rmsprop", "adagrad", "adadelta", "adam"):
        assert n in str(e.value)
