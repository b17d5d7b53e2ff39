"""Legacy HDF5: full models (``model.save("x.h5")``, Keras 2 and Keras 3) and Keras 2
``save_weights("x.h5")`` files.

Full model file — root attributes ``keras_version``, ``backend``, ``model_config`` (JSON
``{class_name, config}``) and ``training_config`` (the compile arguments with
``optimizer_config``); group ``model_weights``; group ``optimizer_weights``.

Weights layout (``model_weights``, or the file root for Keras 2 ``save_weights``) —
attribute ``layer_names`` (``model.layers``: a Functional model's InputLayers included);
one group per layer name with attribute ``weight_names``, each the path of a dataset
inside that group (Keras 2: ``dense/kernel:0``; Keras 3: ``seq/d1/kernel``); a layer's
weights are its trainable then non-trainable weights; plus ``top_level_model_weights``.
String lists longer than 64 KiB are split into ``layer_names0``, ``layer_names1``, ...

Loading matches layers **by position** among those that have weights (Keras' rule) — or by
name when the file lists exactly the model's layer names (a model rebuilt from the file's
config: then position and name agree, unless Keras ordered a functional model's layers
differently, where the name is right) — or by layer name with ``by_name=True``. Every
count and shape is checked before anything is assigned.
"""
from __future__ import annotations

import warnings

import numpy as np

from graphc.saving import optimizer_state
from graphc.saving.common import (KERAS_COMPAT_VERSION, attr_str, graphc_version,
                                  load_attribute_list, parse_json, read_dataset,
                                  save_attribute_list)
from graphc.saving.errors import FileFormatError, WeightsMismatchError
from graphc.saving.weights_h5 import _model_layers

BACKEND_NAME = "graphc"


def legacy_weights(layer) -> list:
    """Keras' ``_legacy_weights``: trainable weights, then non-trainable ones (a frozen
    layer's are all non-trainable, in creation order)."""
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def _weight_name(layer, var) -> str:
    # Keras 3 writes the variable's path (``seq/d1/kernel``): the layer's name, then the
    # sublayer path for a nested model. graphc paths are ``d1.kernel``.
    path = var.path.replace(".", "/")
    if path.startswith(layer.name + "/"):
        return path
    return f"{layer.name}/{path}"


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------

def write_weights(group, model) -> None:
    """The Keras 2/3 legacy weights layout into ``group`` (file root or
    ``model_weights``)."""
    layers = _model_layers(model)
    save_attribute_list(group, "layer_names", [l.name for l in layers])
    group.attrs["backend"] = BACKEND_NAME
    group.attrs["keras_version"] = KERAS_COMPAT_VERSION
    for layer in sorted(layers, key=lambda l: l.name):
        g = group.create_group(layer.name)
        _write_subset(g, [(_weight_name(layer, v), v) for v in legacy_weights(layer)])
    own = list(getattr(model, "_trainable_variables", [])) + \
        list(getattr(model, "_non_trainable_variables", []))
    g = group.create_group("top_level_model_weights")
    _write_subset(g, [(f"{model.name}/{v.name}", v) for v in own])


def _write_subset(group, named_vars) -> None:
    names, used = [], set()
    for name, var in named_vars:
        base, k = name, 1
        while name in used:            # two variables with one path: keep both
            name = f"{base}_{k}"
            k += 1
        used.add(name)
        names.append(name)
        value = np.asarray(var.value)
        group.create_dataset(name, data=value)
    save_attribute_list(group, "weight_names", names)


def write_optimizer(h5, opt) -> None:
    variables = optimizer_state.keras_variables(opt)
    g = h5.create_group("optimizer_weights")
    names = []
    for v in variables:
        # Keras 3: ``adam/iteration``, ``adam/dense_kernel_momentum``.
        names.append(f"{opt.name}/{v.name}")
        g.create_dataset(names[-1], data=np.asarray(v.value))
    save_attribute_list(g, "weight_names", names)


def legacy_model_config(serialized: dict) -> dict:
    """Keras' legacy (``.h5``) form of a serialized model: ``{class_name, config}`` for
    the model and every layer entry, without ``module``/``registered_name``/
    ``build_config`` (Keras 3 writes ``.h5`` configs this way)."""
    def layer_entry(d):
        out = {"class_name": d["class_name"], "config": strip_config(d.get("config"))}
        if d["class_name"] == "InputLayer" and isinstance(out["config"], dict) \
                and "batch_shape" in out["config"]:
            # Keras 2 knows only ``batch_input_shape``; Keras 3 reads both.
            cfg = dict(out["config"])
            cfg["batch_input_shape"] = cfg.pop("batch_shape")
            out["config"] = cfg
        for k in ("name", "inbound_nodes"):
            if k in d:
                out[k] = d[k]
        return out

    def strip_config(cfg):
        if isinstance(cfg, dict) and isinstance(cfg.get("layers"), list):
            cfg = dict(cfg)
            cfg["layers"] = [layer_entry(l) for l in cfg["layers"]]
        return cfg

    return layer_entry(serialized)


def save_model(model, path, include_optimizer: bool, compile_config) -> None:
    """Write a full-model ``.h5`` file at ``path`` (a temporary path: the caller
    replaces the target atomically)."""
    from graphc.frontend.layers.serialization import serialize
    from graphc.saving.common import to_json
    model_config = to_json(legacy_model_config(serialize(model)))
    training_config = None
    if include_optimizer and compile_config is not None:
        tc = {k: v for k, v in compile_config.items() if k != "optimizer"}
        opt = compile_config.get("optimizer")
        if isinstance(opt, dict):
            tc["optimizer_config"] = {"class_name": opt.get("class_name"),
                                      "config": opt.get("config")}
        else:
            tc["optimizer_config"] = opt
        training_config = to_json(tc)
    import h5py
    big = len(model_config) > 60000 or (training_config and len(training_config) > 60000)
    # Attributes over 64 KiB need HDF5's dense attribute storage (a newer file format).
    with h5py.File(path, "w", libver=("v110", "latest") if big else "earliest") as f:
        f.attrs["keras_version"] = KERAS_COMPAT_VERSION
        f.attrs["graphc_version"] = graphc_version()
        f.attrs["backend"] = BACKEND_NAME
        f.attrs["model_config"] = model_config
        if training_config is not None:
            f.attrs["training_config"] = training_config
        write_weights(f.create_group("model_weights"), model)
        opt = getattr(model, "optimizer", None)
        if include_optimizer and opt is not None and getattr(model, "compiled", False):
            if model.built:
                optimizer_state.build_for(model, opt)
            write_optimizer(f, opt)


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------

def is_legacy_weights(group) -> bool:
    return "layer_names" in group.attrs or "layer_names0" in group.attrs


def _read_layer(group, name: str, source: str):
    if name not in group:
        raise FileFormatError(f"{source}: layer '{name}' is listed in layer_names but has "
                              f"no group: the file is corrupted")
    g = group[name]
    names = load_attribute_list(g, "weight_names")
    values = []
    for wn in names:
        if wn not in g:
            raise FileFormatError(f"{source}: weight '{wn}' of layer '{name}' is listed "
                                  f"but missing: the file is corrupted")
        values.append(g[wn])
    return names, values


def _shapes(names, arrays) -> str:
    return ", ".join(f"{n} {tuple(a.shape)}" for n, a in zip(names, arrays)) or "none"


def plan_weights(group, model, source: str, by_name: bool = False,
                 skip_mismatch: bool = False) -> list:
    """Validate the legacy layout in ``group`` against ``model``; return the
    ``[(variable, array)]`` assignments."""
    file_layers = []
    for name in load_attribute_list(group, "layer_names"):
        names, values = _read_layer(group, name, source)
        if values:
            file_layers.append((name, names, values))
    model_layers = [l for l in _model_layers(model) if l.weights]
    assignments, problems = [], []

    def check(layer, fname, names, values, label):
        ws = legacy_weights(layer)
        if len(ws) != len(values):
            problems.append(f"{label}: the model's layer '{layer.name}' "
                            f"({type(layer).__name__}) has {len(ws)} weight(s) "
                            f"({_shapes([w.name for w in ws], ws)}), the file's layer "
                            f"'{fname}' has {len(values)} ({_shapes(names, values)})")
            return
        pairs = []
        for w, n, v in zip(ws, names, values):
            if tuple(v.shape) != tuple(w.shape):
                problems.append(f"{label}: layer '{layer.name}' ({type(layer).__name__}), "
                                f"weight '{w.name}': the model expects shape "
                                f"{tuple(w.shape)}, the file's '{n}' has shape "
                                f"{tuple(v.shape)}")
                return
            pairs.append((w, v))
        assignments.extend((w, read_dataset(v)) for w, v in pairs)

    if by_name:
        index = {}
        for l in model.layers:
            index.setdefault(l.name, l)
        hits = 0
        for fname, names, values in file_layers:
            layer = index.get(fname)
            if layer is None:
                continue
            hits += 1
            check(layer, fname, names, values, f"layer '{fname}'")
        if not hits and model_layers and file_layers:
            warnings.warn(f"load_weights(by_name=True): no layer of model '{model.name}' "
                          f"has a name found in {source} (its layers: "
                          f"{', '.join(f[0] for f in file_layers[:8])}). Nothing was loaded.",
                          UserWarning, stacklevel=3)
    elif sorted(l.name for l in model_layers) == sorted(f[0] for f in file_layers):
        # The same layer names (e.g. a model rebuilt from this file's own config): pair by
        # name, which is what position means when both sides list layers in one order,
        # and stays right where a Keras 2 functional model listed them in another.
        by_layer_name = {f[0]: f for f in file_layers}
        for layer in model_layers:
            fname, names, values = by_layer_name[layer.name]
            check(layer, fname, names, values, f"layer '{fname}'")
    else:
        if len(file_layers) != len(model_layers):
            raise_or_warn = (
                f"{source}: layer count mismatch: the model '{model.name}' has "
                f"{len(model_layers)} layer(s) with weights "
                f"({', '.join(l.name for l in model_layers) or 'none'}), the file has "
                f"{len(file_layers)} ({', '.join(f[0] for f in file_layers) or 'none'}). "
                f"Weights are matched by position; pass by_name=True to match layers by "
                f"name instead.")
            if not skip_mismatch:
                raise WeightsMismatchError(raise_or_warn + " No weights were changed.")
            warnings.warn(raise_or_warn + " skip_mismatch=True: layers are matched as far "
                          "as they fit.", UserWarning, stacklevel=3)
        for k, (layer, (fname, names, values)) in enumerate(zip(model_layers, file_layers)):
            check(layer, fname, names, values, f"layer #{k}")

    if "top_level_model_weights" in group:
        names, values = _read_layer(group, "top_level_model_weights", source)
        own = list(getattr(model, "_trainable_variables", [])) + \
            list(getattr(model, "_non_trainable_variables", []))
        if values or own:
            if len(values) != len(own) or any(tuple(v.shape) != tuple(w.shape)
                                              for w, v in zip(own, values)):
                problems.append(f"the model's own weights ({_shapes([w.name for w in own], own)}) "
                                f"do not match the file's top_level_model_weights "
                                f"({_shapes(names, values)})")
            else:
                assignments.extend((w, read_dataset(v)) for w, v in zip(own, values))

    if problems:
        msg = f"{source} does not fit model '{model.name}':\n  " + "\n  ".join(problems)
        if not skip_mismatch:
            raise WeightsMismatchError(msg + "\nNo weights were changed.")
        warnings.warn(msg + "\nskip_mismatch=True: those layers keep their current weights.",
                      UserWarning, stacklevel=3)
    return assignments


def plan_optimizer(h5, model, source: str) -> list:
    opt = getattr(model, "optimizer", None)
    if opt is None or "optimizer_weights" not in h5:
        return []
    g = h5["optimizer_weights"]
    names = load_attribute_list(g, "weight_names")
    values = []
    for n in names:
        if n not in g:
            raise FileFormatError(f"{source}: optimizer weight '{n}' is listed but "
                                  f"missing: the file is corrupted")
        values.append(read_dataset(g[n]))
    optimizer_state.build_for(model, opt)
    return optimizer_state.plan(opt, values, names, source) or []


def read_model_config(h5, source: str) -> dict:
    raw = attr_str(h5, "model_config")
    if raw is None:
        raise FileFormatError(
            f"{source} holds no model config: it is a weights-only file (written by "
            f"save_weights). Build the model in code and call model.load_weights(path).")
    cfg = parse_json(raw, f"{source}: attribute model_config")
    if not isinstance(cfg, dict) or "class_name" not in cfg:
        raise FileFormatError(f"{source}: model_config is not a serialized model")
    return cfg


def read_training_config(h5, source: str) -> dict | None:
    raw = attr_str(h5, "training_config")
    if raw is None:
        return None
    tc = parse_json(raw, f"{source}: attribute training_config")
    return tc if isinstance(tc, dict) else None


def compile_config_from_training_config(tc: dict) -> dict:
    """Keras' ``compile_args_from_training_config``: the legacy ``training_config`` as
    the Keras 3 compile config."""
    out = {k: tc.get(k) for k in ("loss", "metrics", "weighted_metrics", "loss_weights")}
    for k in ("run_eagerly", "steps_per_execution", "jit_compile"):
        if k in tc:
            out[k] = tc[k]
    out["optimizer"] = tc.get("optimizer_config")
    return out
