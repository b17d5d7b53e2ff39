"""Global seeding: one numpy Generator behind initializers, shuffling and dropout seeds,
reset by ``graphc.utils.set_random_seed`` so whole runs are reproducible."""
from __future__ import annotations

import random

import numpy as np

_rng = np.random.default_rng()


def set_random_seed(seed: int) -> None:
    """Seed graphc (weights init, shuffling, dropout), Python's ``random`` and numpy's."""
    global _rng
    _rng = np.random.default_rng(seed)
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))


def global_rng() -> np.random.Generator:
    return _rng


def next_seed() -> int:
    """A fresh 63-bit seed drawn from the global generator."""
    return int(_rng.integers(0, 2 ** 63 - 1))
