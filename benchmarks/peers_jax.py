"""JAX peers for bench_workloads.py: the issue-3 workloads as a competent JAX user writes them.

Pure functions over parameter pytrees; the whole train step (forward, loss, gradient,
optimizer update) is one ``jax.jit`` with the parameters and optimizer state donated, so XLA
updates them in place. optax is not assumed: Adam and SGD with momentum are written out with
Keras' conventions (Adam epsilon 1e-7 outside the square root, momentum ``v = m*v - lr*g``).
The models match graphc's (shapes, activations, losses); initial values need not.

XLA's CPU backend runs each op's intra-op work on a thread pool sized to the machine's cores,
so no thread setting is needed for it to use both cores here.

Each builder returns a runner: ``train_step(x, y)`` / ``predict(x)`` give zero-argument
callables that run once and block on the result (``block_until_ready``); ``fit`` is the
Keras-like Python loop of peers_common over the jitted step.
"""
from __future__ import annotations

import numpy as np
from peers_common import keras_like_fit

try:
    import jax
    import jax.numpy as jnp
    from jax import lax
except Exception:  # noqa: BLE001 (any import failure just means "no JAX peer")
    jax = None


def available():
    return jax is not None

# ----------------------------------------------------------------------------- pieces


def _dense(key, din, dout):
    lim = np.sqrt(6.0 / (din + dout))            # Glorot uniform, zero bias
    return {"w": jax.random.uniform(key, (din, dout), jnp.float32, -lim, lim),
            "b": jnp.zeros((dout,), jnp.float32)}


def _mlp_init(key, dims):
    keys = jax.random.split(key, len(dims) - 1)
    return [_dense(k, a, b) for k, a, b in zip(keys, dims[:-1], dims[1:])]


def _mlp_logits(layers, x):
    """relu hidden layers, the last layer's pre-activation (softmax/sigmoid go in the loss)."""
    for layer in layers[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def _cce(logits, y):
    """Categorical cross-entropy of softmax(logits) against one-hot ``y``."""
    return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(logits), axis=-1))


def _bce(logits, y):
    """Binary cross-entropy of sigmoid(logits), in the stable log-sigmoid form."""
    return -jnp.mean(y * jax.nn.log_sigmoid(logits) + (1 - y) * jax.nn.log_sigmoid(-logits))


class Adam:
    """Keras-default Adam (lr 1e-3, betas 0.9/0.999, epsilon 1e-7)."""

    def __init__(self, lr=1e-3, b1=0.9, b2=0.999, eps=1e-7):
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps

    def init(self, params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return {"m": zeros, "v": jax.tree.map(jnp.zeros_like, params),
                "t": jnp.zeros((), jnp.float32)}

    def update(self, params, grads, state):
        b1, b2 = self.b1, self.b2
        t = state["t"] + 1
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state["m"], grads)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state["v"], grads)
        lr_t = self.lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        params = jax.tree.map(lambda p, m, v: p - lr_t * m / (jnp.sqrt(v) + self.eps),
                              params, m, v)
        return params, {"m": m, "v": v, "t": t}


class SGDMomentum:
    """Keras SGD with momentum: ``v = momentum*v - lr*g; p += v``."""

    def __init__(self, lr=0.01, momentum=0.9):
        self.lr, self.momentum = lr, momentum

    def init(self, params):
        return jax.tree.map(jnp.zeros_like, params)

    def update(self, params, grads, velocity):
        velocity = jax.tree.map(lambda v, g: self.momentum * v - self.lr * g, velocity, grads)
        return jax.tree.map(jnp.add, params, velocity), velocity


def make_train_step(logits_fn, loss_fn, opt, metric_fn=None):
    """The whole step under one jit: (params, opt_state, x, y) -> (params, opt_state, outs).

    Params and optimizer state are donated: the caller rebinds them to the returned ones.
    ``outs`` is the loss, or (loss, metric) when ``metric_fn(logits, y)`` is given."""
    def loss_and_logits(params, x, y):
        logits = logits_fn(params, x)
        return loss_fn(logits, y), logits

    def step(params, opt_state, x, y):
        (loss, logits), grads = jax.value_and_grad(loss_and_logits, has_aux=True)(params, x, y)
        params, opt_state = opt.update(params, grads, opt_state)
        outs = loss if metric_fn is None else (loss, metric_fn(logits, y))
        return params, opt_state, outs
    return jax.jit(step, donate_argnums=(0, 1))


class Runner:
    """Holds params and optimizer state between calls of the jitted step."""

    def __init__(self, params, logits_fn, loss_fn, opt, predict_fn, metric_fn=None):
        self.opt = opt
        self.load(params)
        self._step = make_train_step(logits_fn, loss_fn, opt, metric_fn)
        self._predict = jax.jit(lambda params, x: predict_fn(logits_fn(params, x)))

    def load(self, params):
        """Start from ``params`` (a pytree of the model's shapes), optimizer state fresh."""
        self.params, self.opt_state = params, self.opt.init(params)

    def step(self, x, y):
        self.params, self.opt_state, outs = self._step(self.params, self.opt_state, x, y)
        return outs

    def train_step(self, x, y):
        x, y = jnp.asarray(x), jnp.asarray(y)    # data already on the device, as a user would
        return lambda: jax.block_until_ready(self.step(x, y))

    def predict(self, x):
        x = jnp.asarray(x)
        return lambda: self._predict(self.params, x).block_until_ready()

    def _fetch(self, outs):
        """(loss, metric) device scalars of many steps -> two numpy arrays, one transfer."""
        return tuple(np.asarray(v) for v in zip(*jax.device_get(outs)))

    def fit(self, xs, ys, epochs, batch_size):
        return keras_like_fit(self, xs, ys, epochs, batch_size)

# ----------------------------------------------------------------------------- workloads


def w1():
    """MLP 784-512-256-10 (relu, relu, softmax), Adam, categorical cross-entropy."""
    return Runner(_mlp_init(jax.random.key(0), [784, 512, 256, 10]), _mlp_logits, _cce,
                  Adam(), jax.nn.softmax)


def _max_pool(x):
    """2x2/2 max pool, NHWC, as flax's ``max_pool`` does it."""
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def _lenet_logits(p, x):
    dn = ("NHWC", "HWIO", "NHWC")
    x = lax.conv_general_dilated(x, p["c1"]["w"], (1, 1), "SAME", dimension_numbers=dn)
    x = _max_pool(jax.nn.relu(x + p["c1"]["b"]))
    x = lax.conv_general_dilated(x, p["c2"]["w"], (1, 1), "VALID", dimension_numbers=dn)
    x = _max_pool(jax.nn.relu(x + p["c2"]["b"]))
    return _mlp_logits(p["fc"], x.reshape(x.shape[0], -1))


def w2():
    """LeNet-5 in NHWC (conv 6@5x5 same, pool, conv 16@5x5 valid, pool, 120, 84, 10), SGD
    momentum 0.9, categorical cross-entropy. NHWC (flax's layout): NCHW, and a pool written
    as reshape + max, measured the same within the noise on XLA CPU here."""
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)

    def conv(key, kh, kw, cin, cout):
        lim = np.sqrt(6.0 / ((cin + cout) * kh * kw))
        return {"w": jax.random.uniform(key, (kh, kw, cin, cout), jnp.float32, -lim, lim),
                "b": jnp.zeros((cout,), jnp.float32)}
    params = {"c1": conv(k1, 5, 5, 1, 6), "c2": conv(k2, 5, 5, 6, 16),
              "fc": _mlp_init(k3, [16 * 5 * 5, 120, 84, 10])}
    return Runner(params, _lenet_logits, _cce, SGDMomentum(0.01, 0.9), jax.nn.softmax)


def _lstm_logits(p, x, unroll):
    """LSTM (Keras gate order i, f, c, o; sigmoid/tanh) over x (B, T, F) -> Dense(1) logit.

    The input projection of every time step is one matmul before the loop; only h @ U is
    sequential. ``unroll``: False is ``lax.scan``; True unrolls the Python loop under jit."""
    batch, units = x.shape[0], p["u"].shape[0]
    xw = jnp.swapaxes(x @ p["w"] + p["b"], 0, 1)          # (T, B, 4H)

    def cell(carry, xw_t):
        h, c = carry
        i, f, g, o = jnp.split(xw_t + h @ p["u"], 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), None
    carry = (jnp.zeros((batch, units), x.dtype),) * 2
    if unroll:
        for t in range(xw.shape[0]):
            carry, _ = cell(carry, xw[t])
    else:
        carry, _ = lax.scan(cell, carry, xw)
    return carry[0] @ p["head"]["w"] + p["head"]["b"]


def w3(unroll=False):
    """LSTM(64) over 32 steps of 16 features -> Dense(1, sigmoid), Adam, binary cross-entropy."""
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    units, feats = 64, 16
    params = {"w": jax.random.uniform(k1, (feats, 4 * units), jnp.float32, -0.1, 0.1),
              "u": jax.random.uniform(k2, (units, 4 * units), jnp.float32, -0.1, 0.1),
              "b": jnp.zeros((4 * units,), jnp.float32).at[units:2 * units].set(1.0),
              "head": _dense(k3, units, 1)}
    return Runner(params, lambda p, x: _lstm_logits(p, x, unroll), _bce, Adam(),
                  jax.nn.sigmoid)


def _accuracy(logits, y):
    return jnp.mean(((logits > 0) == (y > 0.5)).astype(jnp.float32))


def w4():
    """The seed MLP 10-64-32-1 (relu, relu, sigmoid), Adam, BCE with an accuracy metric."""
    return Runner(_mlp_init(jax.random.key(0), [10, 64, 32, 1]), _mlp_logits, _bce, Adam(),
                  jax.nn.sigmoid, metric_fn=_accuracy)


def peers(workload):
    """{peer name: builder} for a workload; both W3 loop forms, the faster counts as best."""
    if jax is None:
        return {}
    return {"W1": {"jax": w1}, "W2": {"jax": w2},
            "W3": {"jax scan": w3, "jax unrolled": lambda: w3(unroll=True)},
            "W4": {"jax": w4}}.get(workload, {})
