"""graphc: a static-graph deep-learning compiler with a Keras-style API.

Write Keras code with ``import graphc`` instead of ``import keras``; graphc traces the model
into a graph IR, derives the training step as one graph, optimizes it and runs it on a target
(``reference`` numpy interpreter; ``cpu`` and ``cuda`` as their backends land).
"""
from __future__ import annotations

__version__ = "0.1.0"

import importlib

_SUBMODULES = ("activations", "callbacks", "config", "constraints", "datasets", "errors",
               "initializers", "layers", "losses", "metrics", "models", "ops", "optimizers",
               "preprocessing", "regularizers", "utils", "saving", "ir", "passes", "runtime",
               "frontend")


def compile(model, target: str | None = None):  # noqa: A001 (mirrors the documented API)
    """Compile ``model`` for ``target`` ('reference', 'cpu', 'cuda'; default from
    ``graphc.config``) and return an executable with fit/evaluate/predict."""
    from graphc.runtime import compile_model
    return compile_model(model, target)


def __getattr__(name):
    # Lazy faces keep ``import graphc`` cheap and free of import cycles.
    if name in _SUBMODULES:
        return importlib.import_module(f"graphc.{name}")
    if name in ("Sequential", "Model", "load_model"):
        return getattr(importlib.import_module("graphc.models"), name)
    if name in ("Input", "Layer"):
        return getattr(importlib.import_module("graphc.layers"), name)
    raise AttributeError(f"module 'graphc' has no attribute {name!r}")
