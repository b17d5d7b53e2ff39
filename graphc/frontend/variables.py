"""``Variable``: a named, persistent numpy buffer (a weight, an optimizer slot, a moving
statistic). The model owns it; executables read and update it in place, so
``model.get_weights()`` always returns the current values without a copy back."""
from __future__ import annotations

import numpy as np

from graphc.errors import ShapeError
from graphc.ir.dtypes import DType, TensorType

# Bumped whenever some Variable's newest value moves off its host buffer (a device lease
# begins): a cached caller that skips reading ``Variable.value`` per call (the batch-1
# predict path) is valid only while this number is the one it saw.
_lease_generation = 0


def lease_generation() -> int:
    """How many device leases have begun in this process (see ``_lease_generation``)."""
    return _lease_generation


class Variable:
    """A persistent tensor. ``path`` (``"dense.kernel"``) names it in IR and in files."""

    def __init__(self, value, name: str, path: str | None = None, trainable: bool = True,
                 dtype=None):
        arr = np.array(value, dtype=DType.of(dtype).np if dtype is not None else None)
        if dtype is None and arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        self._value = arr.copy(order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
        self.name = name
        self.path = path or name
        self._trainable = bool(trainable)
        self._device_store = None   # a device store holding the current value (cuda target)
        self.constraint = None      # callable applied after each update (Keras constraints)
        self.regularizer = None     # callable adding to the loss (Keras regularizers)

    @property
    def value(self) -> np.ndarray:
        """The host buffer. When a device-resident step (cuda target) holds the newest value,
        reading it copies that value back first and ends the device lease."""
        if self._device_store is not None:
            self._device_store.pull(self)
        return self._value

    @property
    def _device(self):
        """The device store holding this variable's newest value, or None (host current)."""
        return self._device_store

    @_device.setter
    def _device(self, store):
        global _lease_generation
        if store is not None:
            _lease_generation += 1
        self._device_store = store

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, flag: bool):
        self._trainable = bool(flag)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._value.shape

    @property
    def dtype(self) -> DType:
        return DType.of(self._value.dtype)

    @property
    def type(self) -> TensorType:
        return TensorType(self.shape, self.dtype)

    def numpy(self) -> np.ndarray:
        return self.value.copy()

    def assign(self, value):
        """Overwrite in place (buffers handed to executables stay valid)."""
        arr = np.asarray(value)
        if arr.shape != self.shape:
            raise ShapeError(f"Variable {self.path}: expected shape {self.shape}, "
                             f"got {arr.shape}")
        if self._device is not None:
            self._device.pull(self)     # end the lease: the host value is authoritative
        self._value[...] = arr

    def _graph_value(self):
        """The graph value standing for this variable in the active trace (lets IR
        operator sugar such as ``x @ self.kernel`` read the weight, not a frozen copy)."""
        from graphc.frontend.tracing import current_trace
        ctx = current_trace()
        if ctx is None:
            raise RuntimeError(f"Variable {self.path} used in a graph outside of a trace")
        return ctx.value_of(self)

    def __array__(self, dtype=None, copy=None):
        value = self.value
        return value if dtype is None else value.astype(dtype)

    def __repr__(self):
        return f"<Variable {self.path} shape={self.shape} dtype={self.dtype}>"
