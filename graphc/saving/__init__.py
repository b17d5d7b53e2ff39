"""``graphc.saving``: save and load models and weights in Keras' file formats.

Which format (``save_model``/``model.save``), by the file name:

* ``.keras`` — the Keras 3 zip archive (``keras_zip``): ``metadata.json``, ``config.json``
  and ``model.weights.h5``. Any name that is neither ``.keras`` nor ``.h5``/``.hdf5`` (a
  Keras 2 ``model.save("my_model")`` or a ModelCheckpoint pattern) gets the same archive —
  Keras 3 would refuse such names; ``load_model`` reads the file by content anyway.
* ``.h5``/``.hdf5`` — the legacy full-model HDF5 (``legacy_h5``), as Keras 2 and Keras 3
  write it. ``save_format="h5"``/``"keras"`` overrides the name.

``save_weights``/``model.save_weights``, by the file name:

* ``*.weights.h5`` — the Keras 3 layout (``weights_h5``: ``layers/dense/vars/0``, ...,
  with the optimizer state under ``optimizer/vars``), what Keras 3 writes;
* any other ``*.h5``/``*.hdf5`` — the Keras 2 ``save_weights`` layout (``layer_names``,
  ``weight_names`` at the file root), what Keras 2 wrote and what Keras 2/3 read;
* ``*.keras`` — refused (that name promises a whole model: use ``model.save``);
* anything else — the Keras 3 layout, as for ``*.weights.h5``.

``load_weights``/``load_model`` ignore the name and look at the content: a zip is a
``.keras`` archive; in an HDF5 file, ``model_config`` marks a full model, ``layer_names``
(at the root or under ``model_weights``) the legacy layout, ``layers``/``vars`` groups the
Keras 3 layout. Loading checks every layer and weight shape before it assigns anything,
so a file for another model changes nothing; a compiled model also gets its optimizer
state back (iterations, learning rate, slots), so training resumes where it stopped.

Saves go to a temporary file in the target's directory that then atomically replaces the
target: an interrupted save leaves the previous file intact.
"""
from __future__ import annotations

import contextlib
import os

from graphc.saving.errors import (ExistingFileError, FileFormatError,  # noqa: F401
                                  MissingFileError, SavingError, UnknownObjectError,
                                  WeightsMismatchError)

__all__ = ["save_model", "load_model", "save_weights", "load_weights",
           "register_keras_serializable", "get_custom_objects", "custom_object_scope",
           "CustomObjectScope", "get_registered_name", "get_registered_object",
           "SavingError", "FileFormatError", "WeightsMismatchError", "UnknownObjectError",
           "ExistingFileError", "MissingFileError"]

# Keras 2 ``model.save`` arguments that mean nothing without TensorFlow SavedModel.
_IGNORED_SAVE_KWARGS = ("signatures", "options", "save_traces", "zipped")


def _name(filepath) -> str:
    return os.fspath(filepath) if not hasattr(filepath, "write") else ""


def _describe(filepath) -> str:
    if hasattr(filepath, "read") or hasattr(filepath, "write"):
        return repr(getattr(filepath, "name", "<file object>"))
    return repr(os.fspath(filepath))


def _model_format(filepath, save_format) -> str:
    if save_format is not None:
        fmt = str(save_format).lower()
        if fmt in ("keras", "keras_v3"):
            return "keras"
        if fmt in ("h5", "hdf5"):
            return "h5"
        if fmt in ("tf", "savedmodel"):
            raise SavingError("save_format='tf' (TensorFlow SavedModel) is not supported by "
                              "graphc: save as '.keras' (recommended) or '.h5'")
        raise SavingError(f"Unknown save_format {save_format!r}: use 'keras' or 'h5'")
    name = _name(filepath).lower()
    if name.endswith((".h5", ".hdf5")):
        return "h5"
    return "keras"


def save_model(model, filepath, overwrite: bool = True, include_optimizer: bool = True,
               save_format=None, **kwargs) -> None:
    """Save architecture, weights, compile config and optimizer state (see the module
    docstring for the format rules)."""
    from graphc.saving import keras_zip, legacy_h5, model_config
    from graphc.saving.common import atomic_write
    unknown = set(kwargs) - set(_IGNORED_SAVE_KWARGS)
    if unknown:
        raise TypeError(f"save_model() got unexpected keyword arguments {sorted(unknown)}")
    fmt = _model_format(filepath, save_format)
    if hasattr(filepath, "write"):
        if fmt != "keras":
            raise SavingError("Saving to a file object supports only the .keras format")
        keras_zip.save_model(model, filepath, include_optimizer)
        return
    with atomic_write(filepath, overwrite) as tmp:
        if fmt == "keras":
            keras_zip.save_model(model, tmp, include_optimizer)
        else:
            legacy_h5.save_model(model, tmp, include_optimizer,
                                 model_config.compile_config_for_saving(model))


def load_model(filepath, custom_objects=None, compile: bool = True,  # noqa: A002
               safe_mode: bool = True, **kwargs):
    """A model saved by ``save_model`` (graphc, Keras 3 or Keras 2: ``.keras`` or
    ``.h5``), compiled from its saved config when ``compile`` and it has one."""
    from graphc.saving import keras_zip, legacy_h5, model_config, weights_h5
    from graphc.saving.common import open_h5, reading, sniff
    kwargs.pop("options", None)          # Keras 2 (tf.saved_model options)
    if kwargs:
        raise TypeError(f"load_model() got unexpected keyword arguments {sorted(kwargs)}")
    custom = {**_GLOBAL_CUSTOM_OBJECTS, **_scope_objects(), **dict(custom_objects or {})}
    source = _describe(filepath)
    kind = sniff(filepath)
    if kind == "zip":
        return keras_zip.load_model(filepath, source, custom, compile)
    with open_h5(filepath) as h5, reading(source):
        if "model_config" not in h5.attrs and (weights_h5.is_keras3_layout(h5)
                                               or legacy_h5.is_legacy_weights(h5)):
            raise FileFormatError(
                f"{source} holds only weights (written by save_weights), not a model. "
                f"Build the model in code, then call model.load_weights({source}).")
        config = legacy_h5.read_model_config(h5, source)
        training = legacy_h5.read_training_config(h5, source) if compile else None
        model = model_config.rebuild_model(config, custom, source)
        if training:
            model_config.compile_model(
                model, legacy_h5.compile_config_from_training_config(training), custom,
                source)
        group = h5["model_weights"] if "model_weights" in h5 else h5
        if not legacy_h5.is_legacy_weights(group):
            raise FileFormatError(f"{source} has a model config but no weights "
                                  f"('model_weights' with 'layer_names'): the file is "
                                  f"incomplete")
        assignments = legacy_h5.plan_weights(group, model, source)
        if training:
            assignments += legacy_h5.plan_optimizer(h5, model, source)
    weights_h5.assign(assignments)
    return model


def _weights_format(filepath) -> str:
    name = _name(filepath).lower()
    if name.endswith(".weights.h5"):
        return "keras3"
    if name.endswith(".keras"):
        raise SavingError(
            f"save_weights({_describe(filepath)}): a '.keras' file holds a whole model; use "
            f"model.save({_describe(filepath)}) for that, or name the weights file "
            f"'*.weights.h5'")
    if name.endswith((".h5", ".hdf5")):
        return "legacy"
    return "keras3"


def save_weights(model, filepath, overwrite: bool = True, **kwargs) -> None:
    """Save the weights (see the module docstring for the layout rules)."""
    import h5py

    from graphc.saving import legacy_h5, weights_h5
    from graphc.saving.common import atomic_write
    kwargs.pop("save_format", None)       # Keras 2: the name decides here
    kwargs.pop("options", None)
    if kwargs.get("max_shard_size", None) is None:
        kwargs.pop("max_shard_size", None)
    if kwargs:
        raise TypeError(f"save_weights() got unexpected keyword arguments {sorted(kwargs)}")
    fmt = _weights_format(filepath)
    with atomic_write(filepath, overwrite) as tmp:
        with h5py.File(tmp, "w") as h5:
            if fmt == "keras3":
                weights_h5.write(h5, model, include_optimizer=True)
            else:
                legacy_h5.write_weights(h5, model)


def load_weights(model, filepath, skip_mismatch: bool = False, by_name: bool = False,
                 **kwargs) -> None:
    """Load weights into ``model`` from any of the layouts, detected from the content.
    Layers are matched by position (legacy layout) or by place in the model (Keras 3
    layout); ``by_name=True`` matches by layer name instead. A mismatch raises
    ``WeightsMismatchError`` and changes nothing, unless ``skip_mismatch=True`` (then the
    layers that do not fit are skipped with a warning)."""
    from graphc.saving import keras_zip, legacy_h5, weights_h5
    from graphc.saving.common import open_h5, reading, sniff
    kwargs.pop("options", None)
    if kwargs:
        raise TypeError(f"load_weights() got unexpected keyword arguments {sorted(kwargs)}")
    source = _describe(filepath)
    if not getattr(model, "built", True):
        raise SavingError(
            f"Cannot load weights into {getattr(model, '_desc', 'the model')}: it is not "
            f"built yet, so it has no weights to fill. Give its first layer an input shape "
            f"(or start it with graphc.Input), or call model.build(input_shape) first.")
    kind = sniff(filepath)
    if kind == "zip":
        assignments = keras_zip.plan_weights(filepath, source, model,
                                             skip_mismatch=skip_mismatch, by_name=by_name)
    else:
        with open_h5(filepath) as h5, reading(source):
            if "model_weights" in h5 and legacy_h5.is_legacy_weights(h5["model_weights"]):
                assignments = legacy_h5.plan_weights(h5["model_weights"], model, source,
                                                     by_name=by_name,
                                                     skip_mismatch=skip_mismatch)
            elif legacy_h5.is_legacy_weights(h5):
                assignments = legacy_h5.plan_weights(h5, model, source, by_name=by_name,
                                                     skip_mismatch=skip_mismatch)
            elif weights_h5.is_keras3_layout(h5):
                assignments = weights_h5.plan(h5, model, source, skip_mismatch=skip_mismatch,
                                              by_name=by_name)
            else:
                raise FileFormatError(
                    f"{source} is an HDF5 file but holds no Keras weights (neither the "
                    f"Keras 3 'layers/.../vars' layout nor the legacy 'layer_names' one)")
    weights_h5.assign(assignments)


# --------------------------------------------------------------------------------------
# Custom objects (keras.saving.register_keras_serializable and friends)
# --------------------------------------------------------------------------------------

_GLOBAL_CUSTOM_OBJECTS: dict[str, object] = {}
_GLOBAL_CUSTOM_NAMES: dict[int, str] = {}
_SCOPES: list[dict] = []


def _scope_objects() -> dict:
    out: dict = {}
    for scope in _SCOPES:
        out.update(scope)
    return out


def register_keras_serializable(package: str = "Custom", name: str | None = None):
    """Decorator: make a class or function loadable by name without ``custom_objects``
    (registered as ``"package>name"`` and as ``"name"``)."""
    def decorator(obj):
        n = name or getattr(obj, "__name__", None)
        if n is None:
            raise ValueError("register_keras_serializable: the object has no __name__; "
                             "pass name=...")
        key = f"{package}>{n}"
        _GLOBAL_CUSTOM_OBJECTS[key] = obj
        _GLOBAL_CUSTOM_OBJECTS.setdefault(n, obj)
        _GLOBAL_CUSTOM_NAMES[id(obj)] = key
        return obj
    return decorator


def get_custom_objects() -> dict:
    """The global registry (a live dict, as in Keras: assigning to it registers)."""
    return _GLOBAL_CUSTOM_OBJECTS


def get_registered_name(obj) -> str:
    return _GLOBAL_CUSTOM_NAMES.get(id(obj), getattr(obj, "__name__", type(obj).__name__))


def get_registered_object(name, custom_objects=None, module_objects=None):
    for table in (custom_objects or {}, _scope_objects(), _GLOBAL_CUSTOM_OBJECTS,
                  module_objects or {}):
        if name in table:
            return table[name]
    return None


class CustomObjectScope(contextlib.ContextDecorator):
    """``with custom_object_scope({"MyLoss": my_loss}): load_model(...)``."""

    def __init__(self, *dicts):
        self._objects: dict = {}
        for d in dicts:
            self._objects.update(d or {})

    def __enter__(self):
        _SCOPES.append(self._objects)
        return self

    def __exit__(self, *exc):
        _SCOPES.remove(self._objects)
        return False


custom_object_scope = CustomObjectScope
