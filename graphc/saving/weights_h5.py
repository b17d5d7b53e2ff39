"""Keras 3 weights layout (``x.weights.h5``, and ``model.weights.h5`` inside ``.keras``).

Keras addresses each object by where it sits in the model, not by its name: the model
walk gives paths such as ``layers/dense/vars/0``, ``layers/dense_1/vars/1``,
``layers/sequential/layers/conv2d/vars/0`` and ``optimizer/vars/3``:

* the root object's variables are in ``vars`` (empty for models);
* a ``Sequential``/``Functional`` model's ``layers`` (Functional: its ``InputLayer``s too;
  Sequential: without it) form a container: each is named by its class in snake_case plus
  a per-container counter (``dense``, ``dense_1``, ``input_layer``); nested containers
  are ``container``, ``container_1``...;
* then every other attribute holding a layer, list or dict of layers, under the attribute
  name, in sorted order with private names last; a compiled model adds its ``optimizer``;
* an object reached twice (a shared layer) is saved once, where it was first reached.

Each ``vars`` group holds datasets ``"0"``, ``"1"``, ... (the layer's own trainable
variables in creation order, then its non-trainable ones) and an attribute ``name`` (the
layer's name; absent in files from before late 2024, so reading never needs it).

Loading walks the model the same way, checks every group (presence, variable count, each
shape) and only then assigns, so a file for another architecture changes nothing. Where a
container's layers carry exactly the model's names in the file but at other places, they
are paired by name (see ``_file_paths``). A layer whose variables Keras keeps in sublayers
under other attribute names can say so with a ``_keras_saving_children()`` method yielding
``(attribute, child)`` pairs.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from graphc.frontend.layers.base import Layer, to_snake_case
from graphc.frontend.layers.serialization import _class_name
from graphc.saving import optimizer_state
from graphc.saving.common import attr_str, read_dataset
from graphc.saving.errors import FileFormatError, WeightsMismatchError


@dataclass
class Entry:
    """One object of the walk: where its ``vars`` group lives and what it holds."""
    path: str                      # "" (root), "layers/dense", "optimizer", ...
    obj: object                    # a Layer, or an optimizer
    variables: list = field(default_factory=list)
    is_optimizer: bool = False

    @property
    def vars_path(self) -> str:
        return f"{self.path}/vars" if self.path else "vars"

    @property
    def name(self) -> str:
        return getattr(self.obj, "name", "") or ""

    def describe(self) -> str:
        if self.is_optimizer:
            return f"optimizer {type(self.obj).__name__} '{self.name}' (at '{self.path}')"
        where = f"at '{self.path}'" if self.path else "the model itself"
        return f"layer '{self.name}' ({type(self.obj).__name__}, {where})"


def _own_variables(layer) -> list:
    return list(getattr(layer, "_trainable_variables", [])) + \
        list(getattr(layer, "_non_trainable_variables", []))


def _is_op_layer(layer) -> bool:
    # Keras 3 records ``x + y`` on KerasTensors as an op, not a layer: it is not in
    # ``model.layers`` and has no place in the file.
    from graphc.frontend.layers.core import TFOpLambda
    return isinstance(layer, TFOpLambda)


def _model_layers(model) -> list:
    return [l for l in model.layers if not _is_op_layer(l)]


def _name_key(name: str) -> str:
    return f"~{name}" if name.startswith("_") else name   # private attributes last (Keras)


def _children(obj, include_optimizer: bool):
    """(attribute, child) pairs in Keras' visiting order."""
    from graphc.frontend.models import Model
    hook = getattr(obj, "_keras_saving_children", None)
    if hook is not None:
        yield from hook()
        return
    attrs: dict[str, object] = {}
    is_graph_model = isinstance(obj, Model) and getattr(obj, "_graph", None) is not None
    if is_graph_model:
        yield "layers", _model_layers(obj)
    tracked = obj.__dict__.get("_tracked") or {}
    for name, value in tracked.items():
        if is_graph_model and name == "layers":
            continue
        attrs[name] = value
    if include_optimizer and isinstance(obj, Model) and getattr(obj, "optimizer", None) \
            is not None and getattr(obj, "compiled", False):
        attrs["optimizer"] = obj.optimizer
    for name in sorted(attrs, key=_name_key):
        yield name, attrs[name]


def walk(model, include_optimizer: bool = True) -> list[Entry]:
    """Every object with a ``vars`` group, in Keras' order (see the module docstring)."""
    from graphc.frontend.optimizers import Optimizer
    entries: list[Entry] = []
    visited: set[int] = set()
    join = _join

    def visit(obj, path):
        if id(obj) in visited:
            return
        visited.add(id(obj))
        if isinstance(obj, Optimizer):
            entries.append(Entry(path, obj, optimizer_state.keras_variables(obj),
                                 is_optimizer=True))
            return
        entries.append(Entry(path, obj, _own_variables(obj)))
        for attr, child in _children(obj, include_optimizer):
            p = join(path, attr)
            if isinstance(child, (Layer, Optimizer)):
                visit(child, p)
            elif isinstance(child, (list, tuple, dict)):
                visit_container(child, p, set())

    def visit_container(container, path, seen_containers):
        if id(container) in seen_containers:
            return
        seen_containers.add(id(container))
        used: dict[str, int] = {}
        items = list(container.values()) if isinstance(container, dict) else list(container)
        for item in items:
            if isinstance(item, (Layer, Optimizer)):
                base = to_snake_case(_class_name(item) if isinstance(item, Layer)
                                     else type(item).__name__)
            elif isinstance(item, (list, tuple, dict)):
                base = "container"
            else:
                continue
            if base in used:
                used[base] += 1
                name = f"{base}_{used[base]}"
            else:
                used[base] = 0
                name = base
            if isinstance(item, (list, tuple, dict)):
                visit_container(item, join(path, name), seen_containers)
            else:
                visit(item, join(path, name))

    visit(model, "")
    return entries


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------

def write(h5, model, include_optimizer: bool = True) -> None:
    """Write ``model``'s weights (and its optimizer's state) into an open h5py File."""
    if include_optimizer:
        opt = getattr(model, "optimizer", None)
        if opt is not None and getattr(model, "compiled", False) and model.built:
            # Slots exist only after the first step; Keras saves them once built. Building
            # here writes zeros, which is what the first step would start from.
            optimizer_state.build_for(model, opt)
    for entry in walk(model, include_optimizer):
        group = h5.require_group(entry.vars_path)
        if entry.name:
            group.attrs["name"] = entry.name
        for i, var in enumerate(entry.variables):
            value = np.asarray(var.value)
            group.create_dataset(str(i), data=value)


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------

def is_keras3_layout(h5) -> bool:
    return any(k in h5 for k in ("layers", "vars", "optimizer",
                                 "_layer_checkpoint_dependencies"))


def _join(a: str, b: str) -> str:
    return f"{a}/{b}" if a else b


def _vars_path(path: str) -> str:
    return _join(path, "vars")


def _file_paths(h5, entries: list[Entry]) -> dict[str, str]:
    """Where each walked object's group sits in the file: its Keras path, except in a
    container whose layers the file names (``name`` attributes) exactly as the model
    does but in another order — then by name. For a model rebuilt from the file's own
    config the names always agree, so an ordering difference between graphc's and Keras'
    ``model.layers`` cannot pair a layer with another layer's weights."""
    out = {"": ""}
    by_container: dict[str, list[Entry]] = {}
    for e in entries:
        if e.path and not e.is_optimizer:
            by_container.setdefault(e.path.rpartition("/")[0], []).append(e)
    names_cache: dict[str, dict | None] = {}

    def mapped(path):
        p = path
        while True:
            p = p.rpartition("/")[0]
            if p in out:
                return _join(out[p], path[len(p):].lstrip("/"))

    def file_names(fparent):
        if fparent not in names_cache:
            found: dict | None = {}
            group = h5.get(fparent) if fparent else h5
            if group is None or not hasattr(group, "keys"):
                found = None
            else:
                for child in group.keys():
                    sub = group[child]
                    if not hasattr(sub, "keys") or "vars" not in sub:
                        continue
                    n = attr_str(sub["vars"], "name")
                    if not n or n in found:
                        found = None
                        break
                    found[n] = child
            names_cache[fparent] = found
        return names_cache[fparent]

    for e in entries:
        if not e.path:
            continue
        if e.is_optimizer:
            out[e.path] = mapped(e.path)
            continue
        parent, _, leaf = e.path.rpartition("/")
        fparent = mapped(e.path).rpartition("/")[0]
        names = file_names(fparent)
        siblings = sorted(x.name for x in by_container[parent])
        if names is not None and siblings == sorted(names) and e.name in names:
            out[e.path] = _join(fparent, names[e.name])
        else:
            out[e.path] = _join(fparent, leaf)
    return out


def _vars_group(h5, fpath: str):
    vp = _vars_path(fpath)
    if vp in h5:
        return h5[vp]
    # Keras 2.13 wrote ``_layer_checkpoint_dependencies`` where Keras 3 writes ``layers``.
    alt = vp.replace("layers", "_layer_checkpoint_dependencies")
    if "_layer_checkpoint_dependencies" in h5 and alt in h5:
        return h5[alt]
    return None


def _datasets(group) -> list:
    keys = list(group.keys())
    try:
        keys.sort(key=int)
    except ValueError:
        raise FileFormatError(f"Group '{group.name}' holds entries {keys}; Keras weights "
                              f"are numbered '0', '1', ...") from None
    return [group[k] for k in keys]


def _shape_list(variables) -> str:
    return ", ".join(f"{v.name} {tuple(v.shape)}" for v in variables) or "none"


def plan(h5, model, source: str, skip_mismatch: bool = False, by_name: bool = False,
         load_optimizer: bool = True):
    """Validate the Keras 3 layout in ``h5`` against ``model`` and return the
    ``[(variable, array)]`` assignments (model weights first, optimizer state last)."""
    from graphc.frontend.models import Model
    entries = walk(model, include_optimizer=False)
    assignments: list = []
    problems: list[str] = []
    matched = 0

    by_name_groups = {}
    if by_name:
        def collect(name, obj):
            if name.endswith("/vars") or name == "vars":
                n = attr_str(obj, "name")
                if n:
                    by_name_groups.setdefault(n, obj)
        h5.visititems(lambda n, o: collect(n, o) if hasattr(o, "keys") else None)

    fpaths = {} if by_name else _file_paths(h5, entries)
    for entry in entries:
        if by_name:
            group = by_name_groups.get(entry.name) if entry.variables else None
            if group is None:
                continue
        else:
            group = _vars_group(h5, fpaths[entry.path])
        if group is None:
            if entry.variables:
                problems.append(f"{entry.describe()} has {len(entry.variables)} weight(s) "
                                f"({_shape_list(entry.variables)}) but the file has no "
                                f"group '{_vars_path(fpaths[entry.path])}'")
            continue
        matched += 1
        stored = _datasets(group)
        saved_name = attr_str(group, "name")
        label = entry.describe() + (f" (saved as '{saved_name}')"
                                    if saved_name and saved_name != entry.name else "")
        if len(stored) != len(entry.variables):
            problems.append(f"{label} expects {len(entry.variables)} weight(s) "
                            f"({_shape_list(entry.variables)}), the file has {len(stored)} "
                            f"({', '.join(str(tuple(d.shape)) for d in stored) or 'none'})")
            continue
        layer_pairs, bad = [], None
        for var, ds in zip(entry.variables, stored):
            if tuple(ds.shape) != tuple(var.shape):
                bad = (f"{label}: weight '{var.name}' has shape {tuple(var.shape)} in the "
                       f"model but {tuple(ds.shape)} in the file")
                break
            layer_pairs.append((var, ds))
        if bad:
            problems.append(bad)
            continue
        assignments.extend((v, read_dataset(ds)) for v, ds in layer_pairs)

    if not by_name:
        # Weights the model has no place for mean another architecture (Keras would skip
        # them silently and leave layers at their initial values; we refuse instead).
        walked = {_vars_path(p) for p in fpaths.values()}
        extra = []

        def find_extra(name, obj):
            if (name == "vars" or name.endswith("/vars")) and hasattr(obj, "keys") \
                    and len(obj.keys()) and not name.startswith("optimizer") \
                    and "/optimizer/vars" not in f"/{name}" and name not in walked:
                alt = name.replace("_layer_checkpoint_dependencies", "layers")
                if alt not in walked:
                    extra.append(name)
        h5.visititems(find_extra)
        if extra:
            problems.append(f"the file has weights for {len(extra)} object(s) the model does "
                            f"not have: {', '.join(extra[:8])}{' ...' if len(extra) > 8 else ''}")

    if by_name and not matched and any(e.variables for e in entries):
        warnings.warn(f"load_weights(by_name=True): no layer of model '{model.name}' has a "
                      f"name found in {source} (Keras 3 files record names in the 'name' "
                      f"attribute of each vars group; files from before late 2024 lack "
                      f"it). Nothing was loaded.", UserWarning, stacklevel=3)

    if problems:
        msg = (f"{source} does not fit model '{model.name}' ({len(problems)} problem(s)):\n  "
               + "\n  ".join(problems))
        if not skip_mismatch:
            raise WeightsMismatchError(msg + "\nNo weights were changed.")
        warnings.warn(msg + "\nskip_mismatch=True: those layers keep their current weights.",
                      UserWarning, stacklevel=3)

    if load_optimizer and isinstance(model, Model):
        assignments.extend(plan_optimizers(h5, model, source, entries, fpaths))
    return assignments


def plan_optimizers(h5, model, source: str, entries=None, fpaths=None) -> list:
    """State for every compiled model's optimizer in the walk (the root's at
    ``optimizer/vars``; a compiled nested model's at ``layers/.../optimizer/vars``)."""
    from graphc.frontend.models import Model
    if entries is None:
        entries = walk(model, include_optimizer=False)
    if not fpaths:
        fpaths = _file_paths(h5, entries)
    out = []
    seen: set[int] = set()
    for entry in entries:
        obj = entry.obj
        if not isinstance(obj, Model) or not getattr(obj, "compiled", False):
            continue
        opt = getattr(obj, "optimizer", None)
        if opt is None or id(opt) in seen:
            continue
        seen.add(id(opt))
        path = _vars_path(_join(fpaths.get(entry.path, entry.path), "optimizer"))
        if path not in h5:
            continue
        optimizer_state.build_for(obj, opt)
        values = [read_dataset(d) for d in _datasets(h5[path])]
        pairs = optimizer_state.plan(opt, values, None, source)
        if pairs:
            out.extend(pairs)
    return out


def assign(assignments) -> None:
    """Apply validated assignments (after ``plan`` checked every one of them)."""
    for var, value in assignments:
        var.assign(np.asarray(value).astype(var.value.dtype, copy=False))
