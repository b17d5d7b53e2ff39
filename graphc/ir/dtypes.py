"""Element types of IR tensors and the tensor type (shape + dtype) every value carries."""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class DType(enum.Enum):
    """Element type; ``.value`` is the short name used in IR text (``f32``)."""

    f32 = "f32"
    f64 = "f64"
    i32 = "i32"
    i64 = "i64"
    u32 = "u32"
    bool = "bool"

    @property
    def np(self) -> np.dtype:
        return np.dtype(_TO_NUMPY[self])

    @property
    def is_float(self) -> bool:
        return self in (DType.f32, DType.f64)

    @property
    def is_int(self) -> bool:
        return self in (DType.i32, DType.i64, DType.u32)

    @property
    def itemsize(self) -> int:
        return self.np.itemsize

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"DType.{self.value}"

    @staticmethod
    def of(x) -> "DType":
        """The DType of a numpy dtype, array, DType or name (``"float32"``, ``"f32"``)."""
        if isinstance(x, DType):
            return x
        if isinstance(x, str) and x in DType.__members__:
            return DType[x]
        if isinstance(x, type) and issubclass(x, np.generic):
            dt = np.dtype(x)  # a scalar type such as np.float32 (its .dtype is a descriptor)
        else:
            dt = np.dtype(getattr(x, "dtype", x))
        try:
            return _FROM_NUMPY[dt]
        except KeyError:
            raise TypeError(f"graphc has no dtype for numpy dtype {dt}") from None


_TO_NUMPY = {DType.f32: "float32", DType.f64: "float64", DType.i32: "int32",
             DType.i64: "int64", DType.u32: "uint32", DType.bool: "bool"}
_FROM_NUMPY = {np.dtype(v): k for k, v in _TO_NUMPY.items()}

f32, f64, i32, i64, u32 = DType.f32, DType.f64, DType.i32, DType.i64, DType.u32
boolean = DType.bool


@dataclass(frozen=True)
class TensorType:
    """A static shape and an element type; printed as ``f32[32,784]`` (scalar: ``f32[]``)."""

    shape: tuple[int, ...]
    dtype: DType

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def with_shape(self, shape) -> "TensorType":
        return TensorType(tuple(shape), self.dtype)

    def with_dtype(self, dtype) -> "TensorType":
        return TensorType(self.shape, DType.of(dtype))

    def __str__(self) -> str:
        return f"{self.dtype.value}[{','.join(str(d) for d in self.shape)}]"

    @staticmethod
    def of(array) -> "TensorType":
        a = np.asarray(array)
        return TensorType(a.shape, DType.of(a.dtype))
