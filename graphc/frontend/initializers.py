"""Keras weight initializers (``graphc.initializers``). They run once, at build time, in numpy:
``init(shape, dtype='float32') -> np.ndarray``. Randomness comes from
``graphc.frontend.seeding.global_rng()`` (so ``set_random_seed`` reproduces a run) unless the
initializer was given its own ``seed``, in which case every call returns the same values (as
Keras 3 does for a seeded initializer).
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from graphc import errors
from graphc.frontend.activations import lookup, serialize_object, split_config
from graphc.frontend.seeding import global_rng
from graphc.ir.dtypes import DType


def _np_dtype(dtype) -> np.dtype:
    return DType.of(dtype if dtype is not None else "float32").np


def compute_fans(shape, input_axes=None, output_axes=None) -> tuple[int, int]:
    """Keras fans: vectors use their length; a conv kernel ``(*spatial, in, out)``
    multiplies the channel counts by the receptive field (product of spatial dims).
    Keras 3.15 lets ``input_axes``/``output_axes`` name the axes of each fan instead."""
    shape = tuple(int(d) for d in shape)
    if input_axes is not None and output_axes is not None:
        return (int(np.prod([shape[a] for a in input_axes])),
                int(np.prod([shape[a] for a in output_axes])))
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer:
    """Base class: ``__call__(shape, dtype)``, ``get_config``/``from_config``."""

    def __call__(self, shape, dtype="float32") -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: Mapping):
        return cls(**dict(config))

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


class RandomInitializer(Initializer):
    def __init__(self, seed: int | None = None):
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise ValueError(f"{type(self).__name__}: seed must be an int or None, "
                             f"got {seed!r}")
        self.seed = None if seed is None else int(seed)

    def _rng(self) -> np.random.Generator:
        # A fixed seed gives the same draw on every call: Keras 3 semantics for seeded
        # initializers (and what makes `GlorotUniform(seed=1)` reproducible).
        return global_rng() if self.seed is None else np.random.default_rng(self.seed)

    def get_config(self):
        return {"seed": self.seed}


class Zeros(Initializer):
    def __call__(self, shape, dtype="float32"):
        return np.zeros(tuple(shape), dtype=_np_dtype(dtype))


class Ones(Initializer):
    def __call__(self, shape, dtype="float32"):
        return np.ones(tuple(shape), dtype=_np_dtype(dtype))


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = value

    def __call__(self, shape, dtype="float32"):
        return np.broadcast_to(np.asarray(self.value, dtype=_np_dtype(dtype)),
                               tuple(shape)).copy()

    def get_config(self):
        v = self.value
        return {"value": v.tolist() if isinstance(v, np.ndarray) else v}


def _truncated_normal(rng, mean, stddev, shape):
    """Normal draws re-drawn until within two standard deviations (TF/Keras semantics)."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out * stddev + mean


class RandomNormal(RandomInitializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = mean, stddev

    def __call__(self, shape, dtype="float32"):
        return self._rng().normal(self.mean, self.stddev, tuple(shape)).astype(_np_dtype(dtype))

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, **super().get_config()}


class RandomUniform(RandomInitializer):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval, self.maxval = minval, maxval

    def __call__(self, shape, dtype="float32"):
        dt = _np_dtype(dtype)
        rng = self._rng()
        if dt.kind in "iu":
            return rng.integers(self.minval, self.maxval, tuple(shape)).astype(dt)
        return rng.uniform(self.minval, self.maxval, tuple(shape)).astype(dt)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, **super().get_config()}


class TruncatedNormal(RandomInitializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = mean, stddev

    def __call__(self, shape, dtype="float32"):
        return _truncated_normal(self._rng(), self.mean, self.stddev,
                                 tuple(shape)).astype(_np_dtype(dtype))

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, **super().get_config()}


class VarianceScaling(RandomInitializer):
    """``scale / n`` variance with ``n`` = fan_in, fan_out or their mean; drawn from a
    truncated normal (stddev corrected for the truncation), a normal, or a uniform."""

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None,
                 input_axes=None, output_axes=None):
        super().__init__(seed)
        self.input_axes = None if input_axes is None else tuple(input_axes)
        self.output_axes = None if output_axes is None else tuple(output_axes)
        if scale <= 0.0:
            raise ValueError(f"VarianceScaling: scale must be positive, got {scale}")
        if distribution == "normal":  # Keras 2 spelling
            distribution = "truncated_normal"
        if mode not in self._MODES:
            raise ValueError(f"VarianceScaling: mode must be one of {self._MODES}, got {mode!r}")
        if distribution not in self._DISTS:
            raise ValueError(f"VarianceScaling: distribution must be one of {self._DISTS}, "
                             f"got {distribution!r}")
        self.scale, self.mode, self.distribution = scale, mode, distribution

    def __call__(self, shape, dtype="float32"):
        shape = tuple(shape)
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        scale = self.scale / max(1.0, n)
        rng = self._rng()
        if self.distribution == "truncated_normal":
            # 0.879... is the stddev of a unit normal truncated to [-2, 2].
            out = _truncated_normal(rng, 0.0, math.sqrt(scale) / 0.87962566103423978, shape)
        elif self.distribution == "untruncated_normal":
            out = rng.normal(0.0, math.sqrt(scale), shape)
        else:
            limit = math.sqrt(3.0 * scale)
            out = rng.uniform(-limit, limit, shape)
        return out.astype(_np_dtype(dtype))

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                **super().get_config(), **self._axes_config()}

    def _axes_config(self):
        if self.input_axes is None and self.output_axes is None:
            return {}
        return {"input_axes": list(self.input_axes) if self.input_axes else None,
                "output_axes": list(self.output_axes) if self.output_axes else None}


class _FixedVarianceScaling(VarianceScaling):
    _ARGS: tuple = ()

    def __init__(self, seed=None, input_axes=None, output_axes=None):
        super().__init__(*self._ARGS, seed=seed, input_axes=input_axes,
                         output_axes=output_axes)

    def get_config(self):
        return {"seed": self.seed, **self._axes_config()}


class GlorotUniform(_FixedVarianceScaling):
    _ARGS = (1.0, "fan_avg", "uniform")


class GlorotNormal(_FixedVarianceScaling):
    _ARGS = (1.0, "fan_avg", "truncated_normal")


class HeNormal(_FixedVarianceScaling):
    _ARGS = (2.0, "fan_in", "truncated_normal")


class HeUniform(_FixedVarianceScaling):
    _ARGS = (2.0, "fan_in", "uniform")


class LecunNormal(_FixedVarianceScaling):
    _ARGS = (1.0, "fan_in", "truncated_normal")


class LecunUniform(_FixedVarianceScaling):
    _ARGS = (1.0, "fan_in", "uniform")


class Orthogonal(RandomInitializer):
    """QR of a normal matrix, flattened to ``(prod(shape[:-1]), shape[-1])``; the sign fix
    on R's diagonal makes the draw uniform over orthogonal matrices."""

    def __init__(self, gain=1.0, seed=None):
        super().__init__(seed)
        self.gain = gain

    def __call__(self, shape, dtype="float32"):
        shape = tuple(shape)
        if len(shape) < 2:
            raise errors.ShapeError(f"Orthogonal initializer needs a shape of rank >= 2, "
                                    f"got {shape}")
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        flat = (max(rows, cols), min(rows, cols))
        a = self._rng().standard_normal(flat)
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q.reshape(shape)).astype(_np_dtype(dtype))

    def get_config(self):
        return {"gain": self.gain, **super().get_config()}


class Identity(Initializer):
    def __init__(self, gain=1.0):
        self.gain = gain

    def __call__(self, shape, dtype="float32"):
        shape = tuple(shape)
        if len(shape) != 2:
            raise errors.ShapeError(f"Identity initializer needs a 2D shape, got {shape}")
        return (self.gain * np.eye(*shape)).astype(_np_dtype(dtype))

    def get_config(self):
        return {"gain": self.gain}


# Keras 3 class names (``OrthogonalInitializer``/``IdentityInitializer`` are the Keras 3
# spellings of the classes above).
OrthogonalInitializer = Orthogonal
IdentityInitializer = Identity

ALL_INITIALIZERS: dict[str, type] = {}
for _cls, _names in [
    (Zeros, ["Zeros", "zeros", "zero"]), (Ones, ["Ones", "ones", "one"]),
    (Constant, ["Constant", "constant"]),
    (RandomNormal, ["RandomNormal", "random_normal", "normal"]),
    (RandomUniform, ["RandomUniform", "random_uniform", "uniform"]),
    (TruncatedNormal, ["TruncatedNormal", "truncated_normal"]),
    (VarianceScaling, ["VarianceScaling", "variance_scaling"]),
    (GlorotUniform, ["GlorotUniform", "glorot_uniform"]),
    (GlorotNormal, ["GlorotNormal", "glorot_normal"]),
    (HeNormal, ["HeNormal", "he_normal"]), (HeUniform, ["HeUniform", "he_uniform"]),
    (LecunNormal, ["LecunNormal", "lecun_normal"]),
    (LecunUniform, ["LecunUniform", "lecun_uniform"]),
    (Orthogonal, ["Orthogonal", "OrthogonalInitializer", "orthogonal",
                  "orthogonal_initializer"]),
    (Identity, ["Identity", "IdentityInitializer", "identity", "identity_initializer"]),
]:
    for _n in _names:
        ALL_INITIALIZERS[_n] = _cls

# Lower-case factory names as Keras exports them (``initializers.glorot_uniform(seed=1)``).
zeros, ones, constant = Zeros, Ones, Constant
random_normal, random_uniform, truncated_normal = RandomNormal, RandomUniform, TruncatedNormal
variance_scaling = VarianceScaling
glorot_uniform, glorot_normal = GlorotUniform, GlorotNormal
he_normal, he_uniform, lecun_normal, lecun_uniform = HeNormal, HeUniform, LecunNormal, LecunUniform
orthogonal, identity = Orthogonal, Identity


def serialize(initializer) -> dict | None:
    """Keras 3 form: ``{"module", "class_name", "config", "registered_name"}``."""
    return serialize_object(get(initializer), "keras.initializers")


def deserialize(config: Mapping, custom_objects: Mapping | None = None):
    name, cfg = split_config("initializer", config)
    if custom_objects and name in custom_objects:
        cls = custom_objects[name]
    else:
        cls = lookup("initializer", name, ALL_INITIALIZERS)
    cfg = dict(cfg or {})
    # Keras 2 configs carry keys Keras 3 dropped (e.g. ``dtype``): ignore them.
    cfg.pop("dtype", None)
    return cls.from_config(cfg) if hasattr(cls, "from_config") else cls(**cfg)


def get(identifier):
    """A name, an ``Initializer`` (or class), a callable ``(shape, dtype)``, a config dict,
    or None (→ None), as Keras ``initializers.get``."""
    if identifier is None or isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        return lookup("initializer", identifier, ALL_INITIALIZERS)()
    if isinstance(identifier, Mapping):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if callable(identifier):
        return identifier
    raise errors.UnknownNameError(
        f"Could not interpret initializer identifier {identifier!r}: expected a name "
        f"({', '.join(sorted(ALL_INITIALIZERS, key=str.lower))}), an Initializer, a "
        f"callable or a config dict")
