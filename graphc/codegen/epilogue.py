"""Epilogue formation: an elementwise loop kernel that only post-processes a contraction's
output is folded into the ``TemplateKernel`` as its ``epilogue`` (bias, activation,
residual add; in the backward pass the activation-gradient mask), so the contraction's
result is stored once, already finished, and the intermediate buffer disappears.

``fuse_epilogues(program, supported)`` is a Program → Program rewrite (backend-neutral; the
backend says through ``supported`` which epilogue expressions it can render in its
contraction templates). A loop kernel L is folded into template T when:
- T is a matmul / conv2d / conv2d_backprop_input writing a ``temp`` buffer o;
- L is the ONLY reader of o, is elementwise (no reduction, one store) over exactly o's
  shape, stores at the identity index into a buffer s of o's shape and dtype, and reads o
  only at that same index (other buffers at any index of the output variables);
- moving L's work up to T is exact: no kernel between them writes what L reads or touches
  s, T does not read s, and L does not read s.
T then writes s with ``epilogue = L's value`` (loads of o → ``Acc``); o is left unused
(kept in the table as an empty temp so buffer ids stay stable).
"""
from __future__ import annotations

from graphc.codegen.kernel import (Acc, Buffer, Const, Guard, IndexValue, Load, LoopKernel,
                                   Op, Program, Random, TemplateKernel, Var, flatten,
                                   walk_exprs)
from graphc.ir.dtypes import DType

#: contractions whose backends take an epilogue at the store
EPILOGUE_OPS = frozenset({"matmul", "conv2d", "conv2d_backprop_input"})

# The elementwise subset every contraction template renders on vectors (see
# ``vector_subset``): float arithmetic, min/max, comparisons, select, bool<->float casts.
VECTOR_OPS = frozenset("""add sub mul div neg maximum minimum select greater greater_equal
    less less_equal equal not_equal cast""".split())


def identity_index(shape):
    return flatten([Var(a) for a in range(len(shape))], shape)


def walk(e):
    """Every node of expression DAG ``e`` once (by identity)."""
    return walk_exprs([e])


def _known(e) -> bool:
    return isinstance(e, (Load, Const, Op, Guard, IndexValue, Random, Acc))


def expr_reads(e) -> set:
    """Buffers an expression loads (None inside: an unknown node, treat as unsafe)."""
    return {x.buffer for x in walk(e) if isinstance(x, Load) or hasattr(x, "buffer")}


def kernel_reads(k) -> set:
    if isinstance(k, TemplateKernel):
        r = set(k.inputs)
        if k.epilogue is not None:
            r |= expr_reads(k.epilogue)
        return r
    r = set()
    for st in k.stores:
        r |= expr_reads(st.value)
    if k.reduction is not None:
        r |= expr_reads(k.reduction.value)
    return r


def kernel_writes(k) -> set:
    if isinstance(k, TemplateKernel):
        return {k.output}
    return {st.buffer for st in k.stores}


def substitute(e, fn):
    """A copy of ``e`` with every node x for which ``fn(x)`` is not None replaced by it
    (sharing preserved)."""
    memo = {}

    def go(x):
        hit = memo.get(id(x))
        if hit is not None:
            return hit
        r = fn(x)
        if r is None:
            if isinstance(x, Op):
                r = Op(x.op, tuple(go(a) for a in x.args), x.dtype, dict(x.attrs))
            elif isinstance(x, Guard):
                r = Guard(x.conds, go(x.then), go(x.otherwise), x.dtype)
            elif isinstance(x, Random):
                r = Random(go(x.seed), go(x.counter), x.salt, x.flat, x.dtype)
            else:
                r = x
        memo[id(x)] = r
        return r
    return go(e)


def rename_loads(e, mapping: dict):
    """``e`` with loads of buffer b reading ``mapping[b]`` instead."""
    if not mapping:
        return e
    return substitute(e, lambda x: Load(mapping[x.buffer], x.index, x.dtype)
                      if isinstance(x, Load) and x.buffer in mapping else None)


def load_kind(index, out_shape) -> str | None:
    """How a contraction's store loop can address a load at ``index`` (over the output's
    index variables): 'elem' (the output element itself: row * ld + col), 'col' (the
    innermost output axis only: a per-channel / per-column vector, e.g. a bias), 'scalar'
    (no variable), else None."""
    if index == identity_index(out_shape):
        return "elem"
    if out_shape and index == Var(len(out_shape) - 1):
        return "col"
    if not any(isinstance(x, Var) for x in _ix_nodes(index)):
        return "scalar"
    return None


def _ix_nodes(ix):
    out, stack = [], [ix]
    while stack:
        x = stack.pop()
        out.append(x)
        for name in ("a", "b"):
            y = getattr(x, name, None)
            if y is not None and not isinstance(y, int):
                stack.append(y)
    return out


def vector_subset(expr, out_shape, dtype=DType.f32) -> bool:
    """Whether an epilogue lies in the subset contraction templates render on vectors:
    float32 values (bool for comparisons), ``VECTOR_OPS``, float32 loads addressable by
    ``load_kind``, literals and ``Acc``."""
    for x in walk(expr):
        if isinstance(x, Acc):
            if x.dtype != dtype:
                return False
        elif isinstance(x, Const):
            if x.dtype not in (DType.f32, DType.bool):
                return False
        elif isinstance(x, Load):
            if x.dtype != DType.f32 or load_kind(x.index, out_shape) is None:
                return False
        elif isinstance(x, Op):
            if x.op not in VECTOR_OPS or x.dtype not in (DType.f32, DType.bool):
                return False
            if x.op == "cast" and not {x.dtype, x.args[0].dtype} <= {DType.f32, DType.bool}:
                return False
            if x.op in ("add", "sub", "mul", "div", "neg") and x.dtype != DType.f32:
                return False
        else:
            return False
    return True


def _candidate(T: TemplateKernel, L, bufs, reads_L) -> bool:
    o = bufs[T.output]
    if not isinstance(L, LoopKernel) or L.reduction is not None or len(L.stores) != 1:
        return False
    st = L.stores[0]
    s = bufs[st.buffer]
    ident = identity_index(o.shape)
    if tuple(L.shape) != tuple(o.shape) or st.index != ident or s.shape != o.shape or \
            s.dtype != o.dtype or s.id == o.id or s.kind == "const":
        return False
    if s.id in T.inputs or s.id in reads_L:
        return False
    for x in walk(st.value):
        if not _known(x):
            return False
        if isinstance(x, Load) and x.buffer == o.id and (x.index != ident or x.dtype != o.dtype):
            return False
        if isinstance(x, Acc):
            return False
    return True


def fuse_epilogues(p: Program, supported=None) -> Program:
    """Fold sole-reader elementwise loops into their contraction (see the module
    docstring). ``supported(template, epilogue, buffers) -> bool``: whether the backend
    renders that epilogue (default: ``vector_subset``). Returns ``p`` itself when nothing
    folds, else a new Program sharing ``p``'s kernels and buffers except the rewritten."""
    if supported is None:
        def supported(T, ep, bufs):
            return vector_subset(ep, bufs[T.output].shape, bufs[T.output].dtype)
    kernels = list(p.kernels)
    bufs = list(p.buffers)
    protected = set(p.outputs) | set(p.inputs) | set(p.params)
    changed = False
    # Reads per kernel object and readers per buffer, kept up to date as kernels are
    # rewritten: scanning every kernel per template was quadratic (an unrolled LSTM has
    # ~1,000 matmuls among ~4,000 kernels: minutes).
    reads: dict[int, set] = {}

    def reads_of(k):
        r = reads.get(id(k))
        if r is None:
            r = reads[id(k)] = kernel_reads(k)
        return r
    readers: dict[int, list] = {}
    for k in kernels:
        for b in reads_of(k):
            readers.setdefault(b, []).append(k)
    n = 0
    while n < len(kernels):
        T = kernels[n]
        if not (isinstance(T, TemplateKernel) and T.op in EPILOGUE_OPS):
            n += 1
            continue
        o = T.output
        if bufs[o].kind != "temp" or o in protected:
            n += 1
            continue
        users = [k for k in readers.get(o, []) if k is not T]
        if len(users) != 1:
            n += 1
            continue
        L = users[0]
        m = next((i for i in range(n + 1, len(kernels)) if kernels[i] is L), None)
        if m is None:
            n += 1
            continue
        reads_L = reads_of(L) if isinstance(L, LoopKernel) else set()
        if not _candidate(T, L, bufs, reads_L):
            n += 1
            continue
        s = L.stores[0].buffer
        between = kernels[n + 1:m]
        if any(kernel_writes(k) & (reads_L | {s}) or s in reads_of(k) for k in between):
            n += 1
            continue
        acc = Acc(bufs[o].dtype)
        inner = T.epilogue if T.epilogue is not None else acc
        ep = substitute(L.stores[0].value,
                        lambda x: inner if isinstance(x, Load) and x.buffer == o else None)
        if not supported(T, ep, bufs):
            n += 1
            continue
        new_T = TemplateKernel(T.name, T.op, list(T.inputs), s, dict(T.attrs), ep)
        for old in (T, L):
            for b in reads_of(old):
                readers[b] = [k for k in readers.get(b, []) if k is not old]
        for b in reads_of(new_T):
            readers.setdefault(b, []).append(new_T)
        kernels[n] = new_T
        del kernels[m]
        ob = bufs[o]
        bufs[o] = Buffer(ob.id, (0,), ob.dtype, "temp", ob.name)
        changed = True
        # T may take another epilogue stage (its new output's sole reader): look again.
    if not changed:
        return p
    return Program(p.name, bufs, kernels, list(p.inputs), list(p.params), list(p.outputs),
                   list(p.output_names))
