"""What the peer frameworks' runners share: the Keras-like ``fit`` loop of workload W4.

A runner (peers_jax.Runner, peers_torch.Runner) offers ``step(x, y)`` -> (loss, metric) as
framework values, ``train_step(x, y)`` / ``predict(x)`` -> zero-argument callables that run once
and wait for the result, and ``fit`` below through its ``_fetch`` (framework values -> numpy).
"""
from __future__ import annotations

import numpy as np


def keras_like_fit(runner, xs, ys, epochs, batch_size, seed=0):
    """Keras ``fit`` the way a user writes it by hand: reshuffle each epoch on the host, a
    Python loop over batches calling the (compiled) step with numpy slices (the last batch is
    partial: 1000 samples at 32 leave 8), epoch means of loss and metric fetched once per
    epoch. Returns the history, one (loss, metric) per epoch."""
    rng = np.random.default_rng(seed)
    n, history = len(xs), []
    for _ in range(epochs):
        perm = rng.permutation(n)
        xe, ye = xs[perm], ys[perm]
        outs, sizes = [], []
        for i in range(0, n, batch_size):
            outs.append(runner.step(xe[i:i + batch_size], ye[i:i + batch_size]))
            sizes.append(min(batch_size, n - i))
        losses, metrics = runner._fetch(outs)
        history.append((float(np.average(losses, weights=sizes)),
                        float(np.average(metrics, weights=sizes))))
    return history
