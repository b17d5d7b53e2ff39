"""The kernel form both backends render: plain data that knows nothing of LLVM or CUDA.

A ``Program`` is the optimized step graph cut into kernels, in execution order, over a table
of buffers. A ``LoopKernel`` is a loop nest over an iteration space (the shape it stores),
optionally with a reduction over extra inner axes, whose stored values are expression trees
over buffer loads. A ``TemplateKernel`` is a contraction/window op (matmul, conv2d and its
gradients, pooling) that a backend implements with a hand-scheduled template.

Index expressions (``Ix``) are integer trees over loop variables; value expressions
(``Expr``) are trees of primitive elementwise ops over loads and literals. Loop variable
``k`` is the k-th axis of the kernel's iteration space; reduction axes follow them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphc.ir.dtypes import DType

# ----------------------------------------------------------------------------- indices


class Ix:
    """An integer index expression (immutable, hashable)."""

    def __add__(self, other):
        return ix_add(self, other)

    def __mul__(self, c: int):
        return ix_mul(self, c)


@dataclass(frozen=True)
class Var(Ix):
    axis: int

    def __str__(self):
        return f"i{self.axis}"


@dataclass(frozen=True)
class Lit(Ix):
    value: int

    def __str__(self):
        return str(self.value)


@dataclass(frozen=True)
class IxAdd(Ix):
    a: Ix
    b: Ix

    def __str__(self):
        return f"({self.a} + {self.b})"


@dataclass(frozen=True)
class IxMul(Ix):
    a: Ix
    c: int

    def __str__(self):
        return f"{self.a}*{self.c}"


@dataclass(frozen=True)
class IxDiv(Ix):
    """Floor division of a non-negative index by a positive constant."""
    a: Ix
    c: int

    def __str__(self):
        return f"({self.a} / {self.c})"


@dataclass(frozen=True)
class IxMod(Ix):
    a: Ix
    c: int

    def __str__(self):
        return f"({self.a} % {self.c})"


def _as_ix(x) -> Ix:
    return x if isinstance(x, Ix) else Lit(int(x))


def _scaled_quotient(e: Ix):
    """(x, c) when ``e`` is ``(x / c) * c``."""
    if isinstance(e, IxMul) and isinstance(e.a, IxDiv) and e.a.c == e.c:
        return e.a.a, e.c
    return None


def _scaled_digit(e: Ix):
    """(x, c, n) when ``e`` is ``((x / c) % n) * c`` (``x % n`` for c = 1)."""
    if isinstance(e, IxMod):
        return e.a, 1, e.c
    if isinstance(e, IxMul) and isinstance(e.a, IxMod) and isinstance(e.a.a, IxDiv) and \
            e.a.a.c == e.c:
        return e.a.a.a, e.c, e.a.c
    return None


def _recombine(a: Ix, b: Ix):
    """``(x / (c*n)) * (c*n) + ((x / c) % n) * c`` is ``(x / c) * c`` (and ``x`` for c = 1):
    flatten(unflatten(x)) — a reshape between contiguous layouts — folds back to ``x``
    term by term instead of costing a division per dimension per element."""
    q, d = _scaled_quotient(a), _scaled_digit(b)
    if q is None or d is None:
        return None
    (x, p), (y, c, n) = q, d
    if x != y or c * n != p:
        return None
    return ix_mul(ix_div(x, c), c)


def ix_add(a, b) -> Ix:
    a, b = _as_ix(a), _as_ix(b)
    if isinstance(a, Lit) and isinstance(b, Lit):
        return Lit(a.value + b.value)
    if isinstance(a, Lit) and a.value == 0:
        return b
    if isinstance(b, Lit) and b.value == 0:
        return a
    folded = _recombine(a, b)
    if folded is not None:
        return folded
    return IxAdd(a, b)


def ix_mul(a, c: int) -> Ix:
    a = _as_ix(a)
    if c == 0:
        return Lit(0)
    if c == 1:
        return a
    if isinstance(a, Lit):
        return Lit(a.value * c)
    return IxMul(a, int(c))


def ix_div(a, c: int) -> Ix:
    a = _as_ix(a)
    if c == 1:
        return a
    if isinstance(a, Lit):
        return Lit(a.value // c)
    return IxDiv(a, int(c))


def ix_mod(a, c: int) -> Ix:
    a = _as_ix(a)
    if c == 1:
        return Lit(0)
    if isinstance(a, Lit):
        return Lit(a.value % c)
    return IxMod(a, int(c))


def row_major_strides(shape) -> tuple[int, ...]:
    strides, acc = [], 1
    for d in reversed(tuple(shape)):
        strides.append(acc)
        acc *= d
    return tuple(reversed(strides))


def flatten(index: list[Ix], shape) -> Ix:
    """The row-major flat offset of a multi-dimensional index into ``shape``."""
    out: Ix = Lit(0)
    for ix, st, d in zip(index, row_major_strides(shape), shape):
        if d != 1:
            out = ix_add(out, ix_mul(ix, st))
    return out


def unflatten(flat: Ix, shape) -> list[Ix]:
    """The multi-dimensional index of a row-major flat offset into ``shape``."""
    out = []
    for st, d in zip(row_major_strides(shape), shape):
        out.append(Lit(0) if d == 1 else ix_mod(ix_div(flat, st), d))
    if out:
        out[0] = Lit(0) if shape[0] == 1 else ix_div(flat, row_major_strides(shape)[0])
    return out

# ----------------------------------------------------------------------------- values


class Expr:
    """A scalar value computed per iteration point; every node carries its ``dtype``."""
    dtype: DType

    def children(self) -> tuple:
        """The expressions this node reads (``walk_exprs`` follows them)."""
        return ()


@dataclass(eq=False)
class Load(Expr):
    """``buffers[buffer][index]`` (index = flat element offset)."""
    buffer: int
    index: Ix
    dtype: DType


@dataclass(eq=False)
class Const(Expr):
    value: Any
    dtype: DType


@dataclass(eq=False)
class Op(Expr):
    """A primitive elementwise op (registry name) applied to argument expressions.
    Attributes as in the registry (``cast`` has ``dtype``)."""
    op: str
    args: tuple
    dtype: DType
    attrs: dict = field(default_factory=dict)

    def children(self) -> tuple:
        return tuple(self.args)


@dataclass(eq=False)
class Guard(Expr):
    """``then`` where every ``lo <= index < hi`` in ``conds`` holds, else ``otherwise``.
    Loads inside ``then`` may only be performed where the guard holds (padding, concat)."""
    conds: tuple            # of (Ix, lo, hi)
    then: Expr
    otherwise: Expr
    dtype: DType

    def children(self) -> tuple:
        return (self.then, self.otherwise)


@dataclass(eq=False)
class IndexValue(Expr):
    """The integer value of an index expression (iota, one_hot, flat element numbers)."""
    index: Ix
    dtype: DType


@dataclass(eq=False)
class Random(Expr):
    """The ``random_uniform`` element with flat number ``flat``: see graphc.ir.ops.misc
    for the bit-exact definition every backend reproduces."""
    seed: Expr
    counter: Expr
    salt: int
    flat: Ix
    dtype: DType

    def children(self) -> tuple:
        return (self.seed, self.counter)


def walk_exprs(roots) -> list:
    """Every expression node reachable from ``roots`` once (a DAG walk by identity,
    following ``Expr.children``; backends' private node types declare theirs)."""
    seen, stack, out = set(), list(roots), []
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        out.append(e)
        stack.extend(e.children())
    return out


@dataclass(eq=False)
class Acc(Expr):
    """The accumulated reduction result (in a LoopKernel's stores) or contraction result
    (in a TemplateKernel's epilogue)."""
    dtype: DType

# ----------------------------------------------------------------------------- kernels


@dataclass
class Buffer:
    """One tensor in the step's memory: graph inputs/params/outputs are ``external``;
    ``temp`` buffers live in the arena; ``const`` buffers hold literal data."""
    id: int
    shape: tuple[int, ...]
    dtype: DType
    kind: str                   # 'input' | 'param' | 'output' | 'temp' | 'const'
    name: str = ""
    data: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


@dataclass
class Store:
    buffer: int
    index: Ix
    value: Expr


@dataclass
class Reduction:
    extents: tuple[int, ...]    # trip counts of the reduction axes (loop vars after the parallel ones)
    combiner: str               # 'sum' | 'max' | 'argmax'
    value: Expr                 # the element combined, over parallel + reduction vars
    dtype: DType                # accumulator dtype

    def init(self):
        return {"sum": 0.0, "max": -np.inf, "argmax": -np.inf}[self.combiner]


@dataclass
class LoopKernel:
    name: str
    shape: tuple[int, ...]      # parallel iteration space
    stores: list[Store]
    reduction: Reduction | None = None

    @property
    def kind(self):
        return "loop"


@dataclass
class TemplateKernel:
    """A contraction or window op on materialized buffers: ``op`` and ``attrs`` as in the
    registry, ``inputs``/``output`` buffer ids, optional ``epilogue`` over ``Acc`` and the
    output index (loop vars over the output shape)."""
    name: str
    op: str
    inputs: list[int]
    output: int
    attrs: dict
    epilogue: Expr | None = None

    @property
    def kind(self):
        return "template"


@dataclass
class Program:
    """A whole step: buffers, kernels in execution order, and the binding of the graph's
    inputs, params and outputs to buffers (an output may alias an input/param buffer)."""
    name: str
    buffers: list[Buffer]
    kernels: list
    inputs: list[int]
    params: list[int]
    outputs: list[int]
    output_names: list

# ----------------------------------------------------------------------------- printing


def format_expr(e: Expr) -> str:
    if isinstance(e, Load):
        return f"b{e.buffer}[{e.index}]"
    if isinstance(e, Const):
        return repr(e.value.item() if isinstance(e.value, np.generic) else e.value)
    if isinstance(e, Op):
        attrs = "".join(f", {k}={v}" for k, v in sorted(e.attrs.items()))
        return f"{e.op}({', '.join(format_expr(a) for a in e.args)}{attrs})"
    if isinstance(e, Guard):
        conds = " && ".join(f"{lo}<={ix}<{hi}" for ix, lo, hi in e.conds)
        return f"({conds} ? {format_expr(e.then)} : {format_expr(e.otherwise)})"
    if isinstance(e, IndexValue):
        return f"index({e.index})"
    if isinstance(e, Random):
        return f"random({format_expr(e.seed)}, {format_expr(e.counter)}, salt={e.salt}, {e.flat})"
    if isinstance(e, Acc):
        return "acc"
    raise TypeError(e)


def format_program(p: Program) -> str:
    lines = [f"program @{p.name} {{"]
    for b in p.buffers:
        extra = f" {b.name}" if b.name else ""
        lines.append(f"  buffer b{b.id}: {b.dtype}[{','.join(map(str, b.shape))}] {b.kind}{extra}")
    for k in p.kernels:
        if isinstance(k, TemplateKernel):
            ep = f" epilogue {format_expr(k.epilogue)}" if k.epilogue is not None else ""
            lines.append(f"  {k.name} = {k.op}({', '.join(f'b{i}' for i in k.inputs)}) -> "
                         f"b{k.output}{ep}")
            continue
        red = ""
        if k.reduction is not None:
            r = k.reduction
            red = f" reduce {r.combiner}{list(r.extents)} of {format_expr(r.value)}"
        lines.append(f"  {k.name} over {list(k.shape)}{red} {{")
        for s in k.stores:
            lines.append(f"    b{s.buffer}[{s.index}] = {format_expr(s.value)}")
        lines.append("  }")
    lines.append(f"  return {', '.join(f'b{i}' for i in p.outputs)}")
    lines.append("}")
    return "\n".join(lines) + "\n"
