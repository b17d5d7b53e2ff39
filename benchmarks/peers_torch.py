"""PyTorch peers for bench_workloads.py: eager and ``torch.compile``, same models as graphc's.

Each builder returns a runner with the interface of peers_common: ``train_step(x, y)`` and
``predict(x)`` give zero-argument callables (a CPU step is synchronous, so returning is
finishing); ``fit`` is the Keras-like loop of peers_common. The compiled runner compiles the
whole step function (zero_grad, forward, loss, backward, optimizer step) and the forward used
for prediction; compilation happens on the first call, so a failure shows up there (the
benchmark catches it and goes on). torch uses every core through ``set_num_threads``.
"""
from __future__ import annotations

import os

import numpy as np
from peers_common import keras_like_fit

try:
    import torch
    from torch import nn
    torch.set_num_threads(os.cpu_count() or 1)
except Exception:  # noqa: BLE001 (any import failure just means "no torch peer")
    torch = None


def available():
    return torch is not None


class Runner:
    """One model, its optimizer and loss, stepped eagerly or through torch.compile."""

    def __init__(self, net, opt, loss_fn, predict_fn, compiled, metric_fn=None,
                 class_labels=False, layout=None):
        self.net, self.opt, self.loss_fn = net, opt, loss_fn
        self.metric_fn, self.class_labels = metric_fn, class_labels
        # graphc's images are NHWC; ``layout`` permutes them to the net's (done once per
        # array, outside the timed calls).
        self._input = ((lambda x: np.ascontiguousarray(x.transpose(layout))) if layout
                       else np.asarray)
        forward = (lambda x: predict_fn(net(x)))
        self._step = torch.compile(self._eager_step) if compiled else self._eager_step
        self._forward = torch.compile(forward) if compiled else forward

    def _eager_step(self, x, y):
        self.opt.zero_grad(set_to_none=True)
        logits = self.net(x)
        loss = self.loss_fn(logits, y)
        loss.backward()
        self.opt.step()
        if self.metric_fn is None:
            return loss.detach()
        return loss.detach(), self.metric_fn(logits.detach(), y)

    def _tensors(self, x, y):
        # CrossEntropyLoss takes class indices: the one-hot targets graphc gets, as argmax.
        return (torch.from_numpy(self._input(x)),
                torch.from_numpy(y.argmax(1) if self.class_labels else y))

    def step(self, x, y):
        return self._step(*self._tensors(x, y))

    def train_step(self, x, y):
        tx, ty = self._tensors(x, y)
        return lambda: self._step(tx, ty)

    def predict(self, x):
        tx = torch.from_numpy(self._input(x))

        def run():
            with torch.inference_mode():
                return self._forward(tx)
        return run

    def _fetch(self, outs):
        """(loss, metric) tensors of many steps -> two numpy arrays."""
        return tuple(torch.stack(v).numpy() for v in zip(*outs))

    def fit(self, xs, ys, epochs, batch_size):
        return keras_like_fit(self, xs, ys, epochs, batch_size)

# ----------------------------------------------------------------------------- workloads


def _adam(net):
    return torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)    # Keras' epsilon


def _mlp(dims):
    layers = []
    for din, dout in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(din, dout), nn.ReLU()]
    return nn.Sequential(*layers[:-1])                                # logits out


def w1(compiled):
    """MLP 784-512-256-10, Adam, softmax + categorical cross-entropy (fused in the loss)."""
    net = _mlp([784, 512, 256, 10])
    return Runner(net, _adam(net), nn.CrossEntropyLoss(), lambda z: z.softmax(-1), compiled,
                  class_labels=True)


def w2(compiled):
    """LeNet-5 (NCHW, torch's native layout), SGD momentum 0.9."""
    net = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        _mlp([16 * 5 * 5, 120, 84, 10]))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    return Runner(net, opt, nn.CrossEntropyLoss(), lambda z: z.softmax(-1), compiled,
                  class_labels=True, layout=(0, 3, 1, 2))


class _LSTMHead(nn.Module if torch is not None else object):
    """LSTM(64) over the sequence, its last hidden state -> Dense(1) logit."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(16, 64, batch_first=True)
        self.head = nn.Linear(64, 1)

    def forward(self, x):
        return self.head(self.lstm(x)[0][:, -1])


def w3(compiled):
    """LSTM(64) over 32 steps of 16 features -> Dense(1, sigmoid), Adam, BCE."""
    net = _LSTMHead()
    return Runner(net, _adam(net), nn.BCEWithLogitsLoss(), torch.sigmoid, compiled)


def _accuracy(logits, y):
    return ((logits > 0) == (y > 0.5)).float().mean()


def w4(compiled):
    """The seed MLP 10-64-32-1 (relu, relu, sigmoid), Adam, BCE and accuracy."""
    net = _mlp([10, 64, 32, 1])
    return Runner(net, _adam(net), nn.BCEWithLogitsLoss(), torch.sigmoid, compiled,
                  metric_fn=_accuracy)


def peers(workload):
    """{peer name: builder} for a workload: eager and torch.compile."""
    if torch is None:
        return {}
    build = {"W1": w1, "W2": w2, "W3": w3, "W4": w4}[workload]
    return {"torch": lambda: build(False), "torch.compile": lambda: build(True)}
