"""The op registry: every op defined once — attributes, shape/dtype rule, numpy semantics,
gradient (VJP) rule, whether it is a backend primitive or how it decomposes into primitives,
and a sampler of valid random inputs that the registry-walking tests use.

An op module calls ``def_op(...)``; ``graphc.ir.ops`` imports all op modules.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from graphc.errors import ShapeError, UnknownNameError
from graphc.ir.dtypes import DType, TensorType


class _Required:
    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()
#: ``vjp=NOT_DIFFERENTIABLE`` declares (on purpose) that an op has no gradient:
#: comparisons, argmax, random bits, integer ops. Autodiff treats its inputs as constants.
NOT_DIFFERENTIABLE = "not differentiable"

InferFn = Callable[[list[TensorType], dict], "TensorType | list[TensorType]"]


@dataclass
class OpDef:
    """Everything graphc knows about one op. See module docstring."""

    name: str
    infer: InferFn
    ref: Callable[..., Any]
    vjp: Callable | str | None = None
    arity: int | None = None                      # None: variadic
    attrs: dict[str, Any] = field(default_factory=dict)
    primitive: bool = True
    decompose: Callable | None = None             # (builder, inputs, attrs) -> Value | tuple
    sample: Callable | None = None                # (rng, float dtype) -> (arrays, attrs)
    doc: str = ""

    def normalize_attrs(self, attrs: dict[str, Any]) -> dict[str, Any]:
        from graphc.ir.graph import _freeze_attr
        unknown = set(attrs) - set(self.attrs)
        if unknown:
            raise ShapeError(f"{self.name}: unknown attribute(s) {sorted(unknown)}; "
                             f"expected some of {sorted(self.attrs)}")
        out = {}
        for k, default in self.attrs.items():
            if k in attrs:
                out[k] = _freeze_attr(attrs[k])
            elif default is REQUIRED:
                raise ShapeError(f"{self.name}: missing required attribute '{k}'")
            else:
                out[k] = _freeze_attr(default)
        return out

    def infer_types(self, in_types: Sequence[TensorType], attrs: dict) -> list[TensorType]:
        if self.arity is not None and len(in_types) != self.arity:
            raise ShapeError(f"{self.name}: expected {self.arity} input(s), got {len(in_types)}")
        res = self.infer(list(in_types), attrs)
        return [res] if isinstance(res, TensorType) else list(res)

    def run_ref(self, arrays: Sequence[np.ndarray], attrs: dict) -> list[np.ndarray]:
        res = self.ref(*arrays, **attrs)
        return list(res) if isinstance(res, tuple) else [res]

    @property
    def differentiable(self) -> bool:
        return self.vjp is not NOT_DIFFERENTIABLE


_REGISTRY: dict[str, OpDef] = {}


def def_op(name: str, *, infer: InferFn, ref, vjp=None, arity=None, attrs=None,
           primitive=True, decompose=None, sample=None, doc="") -> OpDef:
    """Register an op; raises if ``name`` is taken (one op, one place)."""
    if name in _REGISTRY:
        raise ValueError(f"op {name!r} is registered twice")
    op = OpDef(name, infer, ref, vjp, arity, dict(attrs or {}), primitive, decompose,
               sample, doc)
    _REGISTRY[name] = op
    return op


def get_op(name: str) -> OpDef:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(f"unknown op {name!r}") from None


def has_op(name: str) -> bool:
    _ensure_loaded()
    return name in _REGISTRY


def all_ops() -> dict[str, OpDef]:
    _ensure_loaded()
    return dict(_REGISTRY)


def _ensure_loaded():
    import graphc.ir.ops  # noqa: F401  (registers every op on first import)


# --------------------------------------------------------------------------------------
# Helpers shared by shape rules and VJPs
# --------------------------------------------------------------------------------------

def broadcast_shapes(op: str, *shapes: Sequence[int]) -> tuple[int, ...]:
    """Numpy broadcasting of shapes, with an error naming ``op`` on mismatch."""
    try:
        return tuple(np.broadcast_shapes(*[tuple(s) for s in shapes]))
    except ValueError:
        raise ShapeError(f"{op}: shapes {' and '.join(str(tuple(s)) for s in shapes)} "
                         f"cannot be broadcast together") from None


def same_dtype(op: str, types: Sequence[TensorType]) -> DType:
    dts = {t.dtype for t in types}
    if len(dts) != 1:
        from graphc.errors import DTypeError
        raise DTypeError(f"{op}: inputs must share one dtype, got "
                         f"{', '.join(str(t.dtype) for t in types)}")
    return dts.pop()


def unbroadcast(b, g, shape: Sequence[int]):
    """Sum gradient ``g`` down to ``shape`` (the inverse of numpy broadcasting)."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = len(g.shape) - len(shape)
    axes = list(range(lead))
    for i, d in enumerate(shape):
        if d == 1 and g.shape[lead + i] != 1:
            axes.append(lead + i)
    if axes:
        g = b.emit("reduce_sum", [g], axes=tuple(axes), keepdims=False)
    if g.shape != shape:
        g = b.emit("reshape", [g], shape=shape)
    return g


def normalize_axes(op: str, axes, rank: int) -> tuple[int, ...]:
    if axes is None:
        return tuple(range(rank))
    if isinstance(axes, int):
        axes = (axes,)
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise ShapeError(f"{op}: axis {a} out of range for rank {rank}")
        out.append(a % rank)
    return tuple(sorted(set(out)))
