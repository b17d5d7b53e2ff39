"""Optimizer state (iterations, learning rate, slots) in Keras' order, and matching saved
state back onto a graphc optimizer.

graphc lists an optimizer's slots per trained variable (``v0.m, v0.v, v1.m, ...``). Keras
3 lists them as ``iteration, learning_rate`` (no rate variable under a schedule), then
slot *groups*: within a group the slots interleave per variable, groups follow one another.
Adam: ``(momentum, velocity)`` then ``(velocity_hat,)`` (amsgrad); RMSprop: ``velocity``,
``momentum``, ``average_gradient`` each a group of its own; every other optimizer one group.
Keras 2 files (``optimizer_weights`` of an ``.h5``) have no rate variable and name each
slot (``Adam/m/dense/kernel:0``; before TF 2.11 ``Adam/dense/kernel/m:0``): those are
matched by name. Saved state that fits nowhere is skipped with a warning, as Keras does —
the model still loads, with a fresh optimizer.
"""
from __future__ import annotations

import warnings

import numpy as np

#: Slot names used by Keras 2/3 files -> graphc slot names.
SLOT_ALIASES = {
    "m": "momentum", "momentum": "momentum",
    "v": "velocity", "velocity": "velocity", "rms": "velocity",
    "vhat": "velocity_hat", "velocity_hat": "velocity_hat",
    "mg": "average_gradient", "average_gradient": "average_gradient",
    "accumulator": "accumulator",
    "accum_grad": "accumulated_grad", "accumulated_grad": "accumulated_grad",
    "accum_var": "accumulated_delta_var", "accumulated_delta_var": "accumulated_delta_var",
}
_ITERATION_NAMES = ("iter", "iteration", "iterations")
_LR_NAMES = ("learning_rate", "lr")


def slot_groups(opt) -> list[tuple[str, ...]]:
    """Keras' grouping of ``opt.slot_names`` (see the module docstring). An optimizer
    class may declare ``_keras_slot_groups`` to say it itself."""
    custom = getattr(opt, "_keras_slot_groups", None)
    if custom is not None:
        return [tuple(g) for g in custom]
    names = tuple(getattr(opt, "slot_names", ()))
    cls_names = {c.__name__ for c in type(opt).__mro__}
    if "RMSprop" in cls_names:
        return [(n,) for n in names]
    if "Adam" in cls_names and "velocity_hat" in names:
        return [tuple(n for n in names if n != "velocity_hat"), ("velocity_hat",)]
    return [names] if names else []


def head_variables(opt) -> list:
    """The non-slot state: iterations, and the learning-rate variable when the rate is not
    a schedule."""
    head = [opt.iterations]
    lr = getattr(opt, "learning_rate_variable", None)
    if lr is not None:
        head.append(lr)
    return head


def keras_variables(opt) -> list:
    """``opt``'s state variables in Keras 3's order."""
    out = head_variables(opt)
    trained = list(opt.trainable_variables)
    for group in slot_groups(opt):
        for var in trained:
            for name in group:
                out.append(opt.slot(var, name))
    return out


def build_for(model, opt) -> None:
    """Create the slots the first training step would create (Keras builds the optimizer
    in ``compile_from_config`` for the same reason: so saved slots have a home)."""
    snap = getattr(model, "_training_weights", None)
    weights = snap() if snap is not None else model.trainable_weights
    seen, unique = set(), []
    for v in weights:
        if id(v) not in seen:
            seen.add(id(v))
            unique.append(v)
    opt.build(unique)


def _warn(opt, source: str, why: str) -> None:
    warnings.warn(f"Skipping the optimizer state saved in {source}: {why}. The model's "
                  f"optimizer ({type(opt).__name__} '{opt.name}') starts fresh (weights "
                  f"are loaded).", UserWarning, stacklevel=4)


def _check_shapes(pairs, opt, source) -> bool:
    for var, arr in pairs:
        if tuple(np.shape(arr)) != tuple(var.shape):
            _warn(opt, source, f"variable {var.path} has shape {tuple(var.shape)} in the "
                               f"model, {tuple(np.shape(arr))} in the file")
            return False
    return True


def _split_name(name: str) -> list[str]:
    name = name[:-2] if name.endswith(":0") else name
    return [p for p in name.split("/") if p]


def _match_by_name(opt, values, names):
    """Keras 2 slot names -> graphc slots; None if any name does not parse or match."""
    trained = list(opt.trainable_variables)
    by_path = {v.path.replace(".", "/"): v for v in trained}
    pairs = []
    covered = set()
    head_names = 0
    for arr, name in zip(values, names):
        parts = _split_name(name)
        if not parts:
            return None
        if parts[-1] in _ITERATION_NAMES:
            pairs.append((opt.iterations, arr))
            head_names += 1
            continue
        if parts[-1] in _LR_NAMES:
            lr = getattr(opt, "learning_rate_variable", None)
            if lr is not None:
                pairs.append((lr, arr))
            head_names += 1
            continue
        if len(parts) >= 3 and parts[1] in SLOT_ALIASES:          # Opt/slot/var/path
            slot, var_path = SLOT_ALIASES[parts[1]], "/".join(parts[2:])
        elif len(parts) >= 3 and parts[-1] in SLOT_ALIASES:       # Opt/var/path/slot
            slot, var_path = SLOT_ALIASES[parts[-1]], "/".join(parts[1:-1])
        else:
            return None
        var = by_path.get(var_path)
        if var is None:   # saved under an outer scope (``model/dense/kernel``)
            hits = [v for p, v in by_path.items() if var_path.endswith("/" + p)]
            if len(hits) != 1:
                return None
            var = hits[0]
        if slot not in getattr(opt, "slot_names", ()):
            return None
        pairs.append((opt.slot(var, slot), arr))
        covered.add((id(var), slot))
    want = {(id(v), s) for v in trained for s in opt.slot_names}
    if covered != want or not head_names:
        return None
    return pairs


def plan(opt, values: list, names: list[str] | None, source: str):
    """``[(variable, array)]`` restoring ``opt`` from saved ``values`` (Keras order, or
    named Keras 2 weights), or None (after a warning) when they do not fit. ``opt`` must
    be built on the model's trained weights first (``build_for``)."""
    expected = keras_variables(opt)
    head = head_variables(opt)
    if names is not None and len(names) == len(values):
        pairs = _match_by_name(opt, values, names)
        if pairs is not None:
            return pairs if _check_shapes(pairs, opt, source) else None
    n = len(values)
    if n == len(expected):
        pairs = list(zip(expected, values))
    elif len(head) == 2 and n == len(expected) - 1 and (
            names is None or not any(_split_name(x)[-1:] == ["learning_rate"] for x in names)):
        # Keras 2 keeps no learning-rate variable: iterations, then the slots.
        pairs = [(expected[0], values[0])] + list(zip(expected[2:], values[1:]))
    elif 0 < n <= len(head) and n < len(expected):
        # Saved before the optimizer was ever built: only the counter (and rate).
        pairs = list(zip(head, values))
    else:
        _warn(opt, source, f"the file has {n} optimizer variables, the optimizer has "
                           f"{len(expected)}")
        return None
    return pairs if _check_shapes(pairs, opt, source) else None
