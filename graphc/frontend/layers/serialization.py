"""Layer (and model) configs in Keras' serialized form, for ``graphc.saving``.

``serialize(layer)`` gives the Keras 3 dict ``{"module", "class_name", "config",
"registered_name", "build_config"}``; ``deserialize(d)`` rebuilds the layer from it (and from
the Keras 2 form ``{"class_name", "config"}`` found in old ``.h5`` files), building it from
``build_config`` so that weights can be loaded right after.
"""
from __future__ import annotations

from typing import Mapping

from graphc.errors import UnknownNameError


def _class_name(layer) -> str:
    return getattr(layer, "_keras_class_name", None) or type(layer).__name__


def serialize(layer) -> dict:
    from graphc.frontend.layers.core import TFOpLambda
    from graphc.frontend.models import Functional, Model
    cls = type(layer)
    registered = None
    if isinstance(layer, TFOpLambda):
        module = "keras.src.ops.numpy"
    elif cls is Functional:
        # Keras 3 resolves this class only by its module and registered name.
        module, registered = "keras.src.models.functional", "Functional"
    elif isinstance(layer, Model):
        module = "keras"
    else:
        module = "keras.layers"
    builtin = cls.__module__.startswith("graphc.")
    out = {"module": module if builtin else cls.__module__,
           "class_name": _class_name(layer),
           "config": layer.get_config(),
           "registered_name": registered if builtin else f"Custom>{cls.__name__}"}
    bc = layer.get_build_config() if layer.built else None
    if bc is not None:
        out["build_config"] = bc
    return out


def get_layer_class(name: str, custom_objects: Mapping | None = None) -> type:
    """A layer/model class by its Keras class name (custom_objects first)."""
    from graphc.frontend import layers as _layers  # noqa: F401 (registers every class)
    from graphc.frontend import models as _models
    from graphc.frontend.layers.base import Layer
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    if name.startswith("Custom>"):
        name = name[len("Custom>"):]
    if name in ("Model", "Functional"):
        return _models.Functional
    cls = Layer._CLASS_REGISTRY.get(name)
    if cls is None:
        cls = getattr(_layers, name, None)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise UnknownNameError(f"Unknown layer class {name!r}: not a graphc layer; pass it "
                               f"in custom_objects={{{name!r}: cls}}")
    return cls


_OP_CLASSES = {"Add": "add", "Subtract": "subtract", "Multiply": "multiply",
               "Divide": "divide", "TrueDivide": "divide", "Negative": "negative"}


def deserialize(config: Mapping, custom_objects: Mapping | None = None):
    """Rebuild a layer or model from ``serialize``'s dict (Keras 2 or 3 form)."""
    from graphc.frontend.layers.core import TFOpLambda
    if not isinstance(config, Mapping) or "class_name" not in config:
        raise ValueError(f"Not a serialized layer: {config!r}")
    name = config.get("registered_name") or config["class_name"]
    inner = dict(config.get("config") or {})
    module = config.get("module") or ""
    if module.startswith("keras.src.ops") or name == "TFOpLambda":
        if "op" not in inner:
            op = _OP_CLASSES.get(config["class_name"])
            if op is None:
                raise UnknownNameError(f"Unsupported Keras op {config['class_name']!r} in a "
                                       f"functional model config")
            inner["op"] = op
        inner.pop("trainable", None)
        inner.pop("dtype", None)
        layer = TFOpLambda(**inner)
    else:
        cls = get_layer_class(name, custom_objects)
        import inspect
        if "custom_objects" in inspect.signature(cls.from_config).parameters:
            layer = cls.from_config(inner, custom_objects=custom_objects)
        else:
            layer = cls.from_config(inner)
    bc = config.get("build_config")
    if bc and not layer.built:
        layer.build_from_config(bc)
    return layer
