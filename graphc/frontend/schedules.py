"""Learning-rate schedules (``graphc.optimizers.schedules``): Keras 3 formulas written with
``graphc.ops``, so the train-step graph evaluates them from the optimizer's iteration count
(no recompilation as the rate decays) and they also run eagerly on a plain step number.

A schedule is called with the number of updates already applied (Keras passes
``optimizer.iterations`` before the increment), so the first update uses ``schedule(0)``.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from graphc import errors
from graphc.frontend import ops
from graphc.frontend.activations import is_symbolic, lookup, split_config


def _step(step, dtype="float32"):
    if not is_symbolic(step):
        step = np.asarray(step)
    return ops.cast(step, dtype)


class LearningRateSchedule:
    """Base class: ``__call__(step) -> learning rate`` (a scalar tensor)."""

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: Mapping):
        return cls(**dict(config))

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (integer division
    of the exponent when ``staircase``)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        if decay_steps <= 0:
            raise ValueError(f"ExponentialDecay: decay_steps must be > 0, got {decay_steps}")
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = name

    def __call__(self, step):
        p = ops.divide(_step(step), float(self.decay_steps))
        if self.staircase:
            p = ops.floor(p)
        return ops.multiply(ops.power(ops.cast(np.asarray(self.decay_rate), "float32"), p),
                            float(self.initial_learning_rate))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class InverseTimeDecay(LearningRateSchedule):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)``."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="InverseTimeDecay"):
        if decay_steps <= 0:
            raise ValueError(f"InverseTimeDecay: decay_steps must be > 0, got {decay_steps}")
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = name

    def __call__(self, step):
        p = ops.divide(_step(step), float(self.decay_steps))
        if self.staircase:
            p = ops.floor(p)
        denom = ops.add(ops.multiply(p, float(self.decay_rate)), 1.0)
        return ops.divide(ops.cast(np.asarray(self.initial_learning_rate), "float32"), denom)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i-1] < step <= boundaries[i]``, ``values[-1]`` after the last boundary."""

    def __init__(self, boundaries: Sequence, values: Sequence, name="PiecewiseConstant"):
        if len(boundaries) != len(values) - 1:
            raise ValueError(
                "PiecewiseConstantDecay: the length of boundaries should be 1 less than the "
                f"length of values; got {len(boundaries)} boundaries and {len(values)} values")
        self.boundaries = list(boundaries)
        self.values = list(values)
        self.name = name

    def __call__(self, step):
        ints = all(isinstance(b, (int, np.integer)) for b in self.boundaries)
        # Integer boundaries compare against the integer step: exact at any step count.
        s = _step(step, "int64" if ints else "float32")
        out = ops.cast(np.asarray(self.values[-1]), "float32")
        for b, v in reversed(list(zip(self.boundaries, self.values[:-1]))):
            out = ops.where(ops.less_equal(s, b), np.float32(v), out)
        return out

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """``(initial - end) * (1 - min(step, decay_steps) / decay_steps) ** power + end``;
    with ``cycle`` the horizon restarts at each multiple of ``decay_steps``."""

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0,
                 cycle=False, name="PolynomialDecay"):
        if decay_steps <= 0:
            raise ValueError(f"PolynomialDecay: decay_steps must be > 0, got {decay_steps}")
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.end_learning_rate = end_learning_rate
        self.power = power
        self.cycle = cycle
        self.name = name

    def __call__(self, step):
        s = _step(step)
        steps = ops.cast(np.asarray(float(self.decay_steps)), "float32")
        if self.cycle:
            ceil = ops.negative(ops.floor(ops.negative(ops.divide(s, steps))))
            mult = ops.where(ops.equal(s, 0.0), ops.add(ops.multiply(s, 0.0), 1.0), ceil)
            steps = ops.multiply(steps, mult)
        else:
            s = ops.minimum(s, float(self.decay_steps))
        frac = ops.subtract(1.0, ops.divide(s, steps))
        span = float(self.initial_learning_rate - self.end_learning_rate)
        return ops.add(ops.multiply(ops.power(frac, float(self.power)), span),
                       float(self.end_learning_rate))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "end_learning_rate": self.end_learning_rate,
                "power": self.power, "cycle": self.cycle, "name": self.name}


ALL_SCHEDULES = {c.__name__: c for c in (ExponentialDecay, InverseTimeDecay,
                                         PiecewiseConstantDecay, PolynomialDecay)}


def serialize(schedule: LearningRateSchedule) -> dict:
    return {"module": "keras.optimizers.schedules", "class_name": type(schedule).__name__,
            "config": schedule.get_config(), "registered_name": None}


def deserialize(config: Mapping, custom_objects: Mapping | None = None) -> LearningRateSchedule:
    name, cfg = split_config("learning rate schedule", config)
    cls = (custom_objects or {}).get(name) or lookup("learning rate schedule", name,
                                                      ALL_SCHEDULES)
    return cls.from_config(dict(cfg or {}))


def get(identifier):
    if isinstance(identifier, LearningRateSchedule) or identifier is None:
        return identifier
    if isinstance(identifier, Mapping):
        return deserialize(identifier)
    raise errors.UnknownNameError(
        f"Could not interpret learning rate schedule {identifier!r}: expected a "
        f"LearningRateSchedule or a config dict ({', '.join(ALL_SCHEDULES)})")
