"""Keras 3 optimizers (``graphc.optimizers``) as graph builders.

An optimizer owns its state as ``Variable``s (so it persists across steps and executables)
and, inside the train-step trace, emits the update of every trained variable and slot with
``graphc.ops``. The contract with the train-step builder:

* ``build(trainable_variables)`` creates the slots, path ``f"{var.path}.{slot}"``, in
  variable order (each variable's slots in the class's ``slot_names`` order). The iteration
  counter (int64, ``optimizer.iterations``) and, for a constant rate, the learning-rate
  variable (float32, ``optimizer.learning_rate``) exist from construction. ``variables``
  lists iterations, learning_rate, then the slots. Building again with known variables is a
  no-op; new variables (a base unfrozen after a first fit) get slots appended.
* ``apply_graph(grads_and_vars)`` runs inside an active ``TraceContext``: it clips, decays,
  computes the Keras 3 update for step ``t = iterations + 1`` and records every new value in
  ``ctx.state_updates`` — trained variables, slots and the iteration counter. Variable
  constraints are not applied here: the train-step builder applies ``var.constraint`` to
  the recorded value afterwards (once — Keras does it right after the update too).
* ``learning_rate`` is settable between steps: a float is written into the learning-rate
  variable, which the compiled step reads, so callbacks need no recompilation. A schedule is
  evaluated in-graph from the iteration count.
"""
from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np

from graphc import errors
from graphc.frontend import ops
from graphc.frontend import schedules as schedules_mod
from graphc.frontend.activations import lookup, split_config
from graphc.frontend.schedules import LearningRateSchedule
from graphc.frontend.tracing import current_trace
from graphc.frontend.variables import Variable


class _ScalarVariable(Variable):
    """A scalar state variable that also reads as a Python number, so callback code like
    ``float(model.optimizer.learning_rate)`` or ``int(opt.iterations)`` works."""

    def __init__(self, value, name, path=None, trainable=False, dtype=None):
        super().__init__(value, name, path, trainable, dtype)
        # Variable stores through np.ascontiguousarray, which makes a 0-d array 1-d; the
        # counter and the rate are scalars (f32[] / i64[] in the IR), so undo that.
        if np.ndim(value) == 0 and self._value.shape != ():
            self._value = self._value.reshape(())

    def __float__(self):
        return float(self.value)

    def __int__(self):
        return int(self.value)

    def __format__(self, spec):
        return format(self.value.item(), spec)


# Keras 2 configs (.h5 files) carry keys that Keras 3 dropped; accepted and ignored.
_LEGACY_KEYS = ("decay", "jit_compile", "is_legacy_optimizer")


class Optimizer:
    """Base class. Subclasses set ``slot_names`` and implement ``_update``."""

    #: Slot names per trained variable, in the order they are created and listed.
    slot_names: tuple[str, ...] = ()

    def __init__(self, learning_rate=0.001, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        if "lr" in kwargs:  # Keras 2 spelling, still common in tutorials
            learning_rate = kwargs.pop("lr")
        for k in _LEGACY_KEYS:
            if k in kwargs:
                v = kwargs.pop(k)
                if k == "decay" and v:
                    warnings.warn("Argument `decay` is no longer supported (Keras 3) and is "
                                  "ignored; use a learning-rate schedule instead.",
                                  stacklevel=3)
        if kwargs:
            raise ValueError(f"{type(self).__name__}: argument(s) not recognized: {kwargs}")
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. "
                f"Received: clipnorm={clipnorm}, clipvalue={clipvalue}, "
                f"global_clipnorm={global_clipnorm}")
        if use_ema:
            raise NotImplementedError(f"{type(self).__name__}: use_ema is not supported yet")
        if gradient_accumulation_steps:
            raise NotImplementedError(
                f"{type(self).__name__}: gradient_accumulation_steps is not supported yet")
        self.name = name or type(self).__name__.lower()
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.use_ema = use_ema
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = gradient_accumulation_steps

        self.iterations = _ScalarVariable(np.int64(0), name="iteration",
                                          path="optimizer.iterations", trainable=False)
        self.learning_rate_variable: Variable | None = None
        self._schedule: LearningRateSchedule | None = None
        self._trainable: list[Variable] = []
        self._slots: dict[Variable, dict[str, Variable]] = {}
        self.learning_rate = learning_rate
        self.built = False

    # -- learning rate ------------------------------------------------------------------
    @property
    def learning_rate(self):
        """The lr variable for a constant rate; for a schedule, its current value."""
        if self._schedule is not None:
            return np.float32(self._schedule(np.int64(self.iterations.value)))
        return self.learning_rate_variable

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, Mapping):
            value = schedules_mod.deserialize(value)
        if isinstance(value, LearningRateSchedule):
            # Switching a compiled model between constant and schedule changes its graph:
            # the runtime must retrace (the lr variable stays listed so saved layouts hold).
            self._schedule = value
            return
        if callable(value):
            raise TypeError(f"{type(self).__name__}: a callable learning rate is not "
                            f"supported; use a LearningRateSchedule")
        if self._schedule is not None:
            raise TypeError(
                "This optimizer was created with a `LearningRateSchedule` object as its "
                "`learning_rate` constructor argument, hence its learning rate is not "
                "settable. Instantiate the optimizer with a float `learning_rate` to set it.")
        lr = float(np.asarray(value))
        if self.learning_rate_variable is None:
            self.learning_rate_variable = _ScalarVariable(
                np.float32(lr), name="learning_rate", path="optimizer.learning_rate",
                trainable=False)
        else:
            self.learning_rate_variable.assign(np.float32(lr))

    lr = learning_rate  # Keras 2 alias (``K.set_value(model.optimizer.lr, ...)``)

    @property
    def schedule(self) -> LearningRateSchedule | None:
        return self._schedule

    # -- state ----------------------------------------------------------------------------
    def build(self, var_list: Sequence[Variable]) -> None:
        """Create slots for ``var_list``; variables already known keep their slots."""
        for var in var_list:
            if var in self._slots:
                continue
            self._trainable.append(var)
            self._slots[var] = {name: self._make_slot(var, name) for name in self.slot_names}
        self.built = True

    def _slot_init(self, var: Variable, name: str) -> np.ndarray:
        return np.zeros(var.shape, dtype=var.dtype.np)

    def _make_slot(self, var: Variable, name: str) -> Variable:
        return Variable(self._slot_init(var, name),
                        name=f"{var.path.replace('.', '_').replace('/', '_')}_{name}",
                        path=f"{var.path}.{name}", trainable=False, dtype=var.dtype)

    def slot(self, var: Variable, name: str) -> Variable:
        return self._slots[var][name]

    @property
    def trainable_variables(self) -> list[Variable]:
        return list(self._trainable)

    @property
    def variables(self) -> list[Variable]:
        out = [self.iterations]
        if self.learning_rate_variable is not None:
            out.append(self.learning_rate_variable)
        for var in self._trainable:
            out.extend(self._slots[var][n] for n in self.slot_names)
        return out

    def get_weights(self) -> list[np.ndarray]:
        return [v.numpy() for v in self.variables]

    def set_weights(self, weights) -> None:
        vs = self.variables
        if len(weights) != len(vs):
            raise errors.ShapeError(f"{self.name}.set_weights: expected {len(vs)} arrays, "
                                    f"got {len(weights)}")
        for v, w in zip(vs, weights):
            v.assign(w)

    def scale_loss(self, loss):
        return loss if self.loss_scale_factor is None else ops.multiply(loss,
                                                                       self.loss_scale_factor)

    # -- the update, in-graph -------------------------------------------------------------
    def apply_graph(self, grads_and_vars) -> None:
        """Emit one optimizer step into the active trace (see module docstring)."""
        ctx = current_trace()
        if ctx is None:
            raise RuntimeError(f"{self.name}.apply_graph must run inside a TraceContext")
        pairs = [(g, v) for g, v in grads_and_vars if g is not None]
        if not pairs:
            raise ValueError("No gradients provided for any variable.")
        self.build([v for _, v in pairs])
        grads = [ops.cast(g, v.dtype) for g, v in pairs]
        variables = [v for _, v in pairs]
        if self.loss_scale_factor is not None:
            grads = [ops.divide(g, float(self.loss_scale_factor)) for g in grads]
        grads = self._clip(grads)

        it = self.iterations
        t_next = ops.add(it, 1)
        lr32 = (self._schedule(it) if self._schedule is not None
                else ops.cast(self.learning_rate_variable, "float32"))
        for grad, var in zip(grads, variables):
            lr = ops.cast(lr32, var.dtype)
            value = ctx.value_of(var)
            if self.weight_decay:
                # Keras: decoupled decay applied to the variable before the update step.
                value = ops.subtract(value, ops.multiply(ops.multiply(value, lr),
                                                         float(self.weight_decay)))
            step = ops.cast(t_next, var.dtype)
            slots = {n: ctx.value_of(s) for n, s in self._slots[var].items()}
            new_value, new_slots = self._update(grad, value, lr, slots, step)
            ctx.state_updates[var] = new_value
            for n, s in self._slots[var].items():
                if n in new_slots:
                    ctx.state_updates[s] = new_slots[n]
        ctx.state_updates[it] = t_next

    def _clip(self, grads):
        if self.clipnorm and self.clipnorm > 0:
            c = float(self.clipnorm)
            # g * c / max(||g||, c): a no-op below the threshold, rescales above it.
            return [ops.divide(ops.multiply(g, c), ops.maximum(ops.sqrt(ops.sum(ops.square(g))), c))
                    for g in grads]
        if self.global_clipnorm and self.global_clipnorm > 0:
            c = float(self.global_clipnorm)
            sq = None
            for g in grads:
                s = ops.cast(ops.sum(ops.square(g)), "float32")
                sq = s if sq is None else ops.add(sq, s)
            scale = ops.divide(c, ops.maximum(ops.sqrt(sq), c))
            return [ops.multiply(g, ops.cast(scale, ops.dtype_of(g))) for g in grads]
        if self.clipvalue and self.clipvalue > 0:
            v = float(self.clipvalue)
            return [ops.clip(g, -v, v) for g in grads]
        return grads

    def _update(self, grad, var, lr, slots: dict, step):
        """``(new_var, {slot: new_value})`` for one variable; ``step`` = iterations + 1."""
        raise NotImplementedError

    # -- config -----------------------------------------------------------------------------
    def get_config(self) -> dict:
        if self._schedule is not None:
            lr = schedules_mod.serialize(self._schedule)
        else:
            lr = float(self.learning_rate_variable.value)
        return {"name": self.name, "learning_rate": lr, "weight_decay": self.weight_decay,
                "clipnorm": self.clipnorm, "global_clipnorm": self.global_clipnorm,
                "clipvalue": self.clipvalue, "use_ema": self.use_ema,
                "ema_momentum": self.ema_momentum,
                "ema_overwrite_frequency": self.ema_overwrite_frequency,
                "loss_scale_factor": self.loss_scale_factor,
                "gradient_accumulation_steps": self.gradient_accumulation_steps}

    @classmethod
    def from_config(cls, config: Mapping, custom_objects: Mapping | None = None):
        config = dict(config)
        if isinstance(config.get("learning_rate"), Mapping):
            config["learning_rate"] = schedules_mod.deserialize(config["learning_rate"],
                                                                custom_objects)
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}>"


class SGD(Optimizer):
    """``m = momentum*m - lr*g; var += m`` (Nesterov: ``var += momentum*m - lr*g``);
    plain ``var -= lr*g`` without momentum."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, name="SGD", **kwargs):
        momentum = float(momentum)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError("`momentum` must be a float between [0, 1].")
        self.momentum = momentum
        self.nesterov = bool(nesterov)
        self.slot_names = ("momentum",) if momentum != 0 else ()
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)

    def _update(self, g, var, lr, slots, step):
        if not self.slot_names:
            return ops.subtract(var, ops.multiply(g, lr)), {}
        m = ops.subtract(ops.multiply(slots["momentum"], self.momentum), ops.multiply(g, lr))
        if self.nesterov:
            new = ops.add(var, ops.subtract(ops.multiply(m, self.momentum), ops.multiply(g, lr)))
        else:
            new = ops.add(var, m)
        return new, {"momentum": m}

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class RMSprop(Optimizer):
    """``v = rho v + (1-rho) g²``; centered: ``a = rho a + (1-rho) g`` and the denominator
    ``sqrt(v - a² + eps)``; ``inc = lr g / sqrt(v + eps)``; with momentum
    ``m = momentum m + inc; var -= m``, else ``var -= inc``."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 name="rmsprop", **kwargs):
        self.rho, self.momentum, self.epsilon, self.centered = rho, momentum, epsilon, centered
        self.slot_names = (("velocity",) + (("momentum",) if momentum > 0 else ())
                           + (("average_gradient",) if centered else ()))
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)

    def _update(self, g, var, lr, slots, step):
        rho = float(self.rho)
        out = {}
        v = ops.add(ops.multiply(slots["velocity"], rho), ops.multiply(ops.square(g), 1.0 - rho))
        out["velocity"] = v
        if self.centered:
            a = ops.add(ops.multiply(slots["average_gradient"], rho), ops.multiply(g, 1.0 - rho))
            out["average_gradient"] = a
            denom = ops.add(ops.subtract(v, ops.square(a)), float(self.epsilon))
        else:
            denom = ops.add(v, float(self.epsilon))
        inc = ops.divide(ops.multiply(g, lr), ops.sqrt(denom))
        if self.momentum > 0:
            m = ops.add(ops.multiply(slots["momentum"], float(self.momentum)), inc)
            out["momentum"] = m
            return ops.subtract(var, m), out
        return ops.subtract(var, inc), out

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


class Adagrad(Optimizer):
    """``acc += g²; var -= lr g / sqrt(acc + eps)``; accumulators start at
    ``initial_accumulator_value``."""

    slot_names = ("accumulator",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 name="adagrad", **kwargs):
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)

    def _slot_init(self, var, name):
        return np.full(var.shape, self.initial_accumulator_value, dtype=var.dtype.np)

    def _update(self, g, var, lr, slots, step):
        acc = ops.add(slots["accumulator"], ops.square(g))
        new = ops.subtract(var, ops.divide(ops.multiply(g, lr),
                                           ops.sqrt(ops.add(acc, float(self.epsilon)))))
        return new, {"accumulator": acc}

    def get_config(self):
        return {**super().get_config(),
                "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


class Adadelta(Optimizer):
    """``Eg = rho Eg + (1-rho) g²; d = -sqrt(Ed + eps) g / sqrt(Eg + eps);
    Ed = rho Ed + (1-rho) d²; var += lr d``."""

    slot_names = ("accumulated_grad", "accumulated_delta_var")

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, name="adadelta", **kwargs):
        self.rho, self.epsilon = rho, epsilon
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)

    def _update(self, g, var, lr, slots, step):
        rho, eps = float(self.rho), float(self.epsilon)
        eg = ops.add(ops.multiply(slots["accumulated_grad"], rho),
                     ops.multiply(ops.square(g), 1.0 - rho))
        delta = ops.negative(ops.divide(
            ops.multiply(ops.sqrt(ops.add(slots["accumulated_delta_var"], eps)), g),
            ops.sqrt(ops.add(eg, eps))))
        ed = ops.add(ops.multiply(slots["accumulated_delta_var"], rho),
                     ops.multiply(ops.square(delta), 1.0 - rho))
        return (ops.add(var, ops.multiply(delta, lr)),
                {"accumulated_grad": eg, "accumulated_delta_var": ed})

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


class Adam(Optimizer):
    """``m += (g - m)(1-b1); v += (g² - v)(1-b2); alpha = lr sqrt(1-b2^t)/(1-b1^t);
    var -= alpha m / (sqrt(v) + eps)`` (amsgrad: ``v̂ = max(v̂, v)`` in the denominator)."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, name="adam", **kwargs):
        self.beta_1, self.beta_2, self.epsilon, self.amsgrad = beta_1, beta_2, epsilon, amsgrad
        self.slot_names = ("momentum", "velocity") + (("velocity_hat",) if amsgrad else ())
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)

    def _update(self, g, var, lr, slots, step):
        b1, b2 = float(self.beta_1), float(self.beta_2)
        b1p = ops.power(np.asarray(b1, dtype=ops.dtype_of(var).np), step)
        b2p = ops.power(np.asarray(b2, dtype=ops.dtype_of(var).np), step)
        alpha = ops.divide(ops.multiply(lr, ops.sqrt(ops.subtract(1.0, b2p))),
                           ops.subtract(1.0, b1p))
        m = ops.add(slots["momentum"], ops.multiply(ops.subtract(g, slots["momentum"]), 1.0 - b1))
        v = ops.add(slots["velocity"],
                    ops.multiply(ops.subtract(ops.square(g), slots["velocity"]), 1.0 - b2))
        out = {"momentum": m, "velocity": v}
        if self.amsgrad:
            v = ops.maximum(slots["velocity_hat"], v)
            out["velocity_hat"] = v
        new = ops.subtract(var, ops.divide(ops.multiply(m, alpha),
                                           ops.add(ops.sqrt(v), float(self.epsilon))))
        return new, out

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras default ``weight_decay=0.004``)."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, name="adamw", **kwargs):
        if weight_decay is None:
            raise ValueError("AdamW: weight_decay cannot be None")
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, amsgrad=amsgrad, name=name,
                         weight_decay=weight_decay, **kwargs)


ALL_OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSprop, "adagrad": Adagrad, "adadelta": Adadelta,
                  "adam": Adam, "adamw": AdamW}


def serialize(optimizer: Optimizer) -> dict:
    return {"module": "keras.optimizers", "class_name": type(optimizer).__name__,
            "config": optimizer.get_config(), "registered_name": None}


def deserialize(config: Mapping, custom_objects: Mapping | None = None) -> Optimizer:
    name, cfg = split_config("optimizer", config)
    cls = (custom_objects or {}).get(name) or lookup("optimizer", name.lower(), ALL_OPTIMIZERS)
    return cls.from_config(dict(cfg or {}), custom_objects)


def get(identifier) -> Optimizer:
    """An optimizer for a name (case-insensitive, Keras: ``'adam'``, ``'RMSprop'``), an
    instance, a class or a config dict."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        return lookup("optimizer", identifier.lower(), ALL_OPTIMIZERS)()
    if isinstance(identifier, Mapping):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    raise errors.UnknownNameError(
        f"Could not interpret optimizer identifier {identifier!r}: expected a name "
        f"({', '.join(ALL_OPTIMIZERS)}), an Optimizer or a config dict")
