"""From an optimized (primitive-only) graph to a ``Program`` of kernels.

Fusion rule ("materialize or inline"): every node either gets a buffer and a kernel of its
own (it is *materialized*) or is *inlined* — recomputed inside each consumer's loop from its
own inputs. Reductions and template ops (matmul, conv, pooling) are always materialized, and
so is every value a template reads or the graph returns. An injective node (elementwise,
movement, constant, random) is inlined when it has one consumer that does not re-broadcast
it, or when it is cheap (a literal, or pure index arithmetic over a buffer); otherwise it is
materialized so that its work is done once. Elementwise producers of a reduction therefore
fuse into the reduction's loop (softmax's exp into its sum), and chains of elementwise ops
(bias, activation, their gradients, optimizer updates) become one loop each.
"""
from __future__ import annotations

import numpy as np

from graphc.errors import GraphcError
from graphc.ir.graph import Graph, Node, Value
from graphc.codegen.kernel import (Acc, Buffer, Const, Guard, Ix, Lit, Load,
                                   LoopKernel, Op, Program, Random, Reduction, Store,
                                   TemplateKernel, Var, flatten, ix_add, ix_mul, unflatten)

ELEMENTWISE = frozenset("""neg exp log log1p sqrt tanh sigmoid abs sign floor erf cos sin cast
    add sub mul div pow maximum minimum greater greater_equal less less_equal equal not_equal
    logical_and logical_or logical_not select""".split())
MOVEMENT = frozenset("reshape transpose broadcast_to slice pad concat".split())
REDUCTIONS = frozenset("reduce_sum reduce_max argmax".split())
TEMPLATES = frozenset("""matmul conv2d conv2d_backprop_input conv2d_backprop_filter
    max_pool2d avg_pool2d max_pool2d_grad avg_pool2d_grad max_pool2d_gather
    gather scatter_add""".split())
INJECTIVE = ELEMENTWISE | MOVEMENT | {"constant", "random_uniform"}


def _size(v: Value) -> int:
    return int(np.prod(v.shape)) if v.shape else 1


def _broadcast_index(index: list[Ix], out_shape, in_shape) -> list[Ix]:
    lead = len(out_shape) - len(in_shape)
    return [Lit(0) if d == 1 else index[lead + j] for j, d in enumerate(in_shape)]


class _Lowering:
    def __init__(self, graph: Graph):
        self.g = graph
        self.users: dict[Value, list[Node]] = graph.users()
        self.outputs = set(graph.outputs)
        self.buffers: list[Buffer] = []
        self.buf_of: dict[Value, int] = {}
        self.kernels: list = []
        self.materialized: set[Value] = set()
        self._memo: dict = {}
        # value -> names of the kernels that compute it (one when materialized; every
        # consumer kernel when inlined): what dump-ir shows as the fusion groups.
        self.origins: dict[Value, list[str]] = {}
        self._kernel_name = ""

    # -- buffers ---------------------------------------------------------------------
    def new_buffer(self, shape, dtype, kind, name="", data=None) -> int:
        b = Buffer(len(self.buffers), tuple(shape), dtype, kind, name, data)
        self.buffers.append(b)
        return b.id

    # -- decisions -------------------------------------------------------------------
    def _is_cheap(self, node: Node) -> bool:
        if node.op == "constant":
            return True
        if node.op in ("reshape", "transpose", "broadcast_to", "slice"):
            src = node.inputs[0]
            return src.node is None or src in self.materialized or \
                (src.node.op == "constant")
        return False

    def _must_materialize(self, node: Node) -> bool:
        out = node.outputs[0]
        if node.op in REDUCTIONS or node.op in TEMPLATES:
            return True
        if node.op not in INJECTIVE:
            raise GraphcError(f"the kernel lowering has no rule for op '{node.op}' "
                              f"(is it a primitive? run the decompose pass first)")
        consumers = self.users.get(out, [])
        if out in self.outputs or any(c.op in TEMPLATES for c in consumers):
            return True
        if self._is_cheap(node):
            return False
        if len(consumers) > 1:
            return True
        # One consumer: inline unless it re-broadcasts us over a larger space.
        c = consumers[0] if consumers else None
        if c is not None and self._accumulates_contraction(node, c):
            return True
        if c is not None and c.op not in REDUCTIONS and _size(c.outputs[0]) > _size(out):
            return True
        return False

    def _accumulates_contraction(self, node: Node, consumer: Node) -> bool:
        """``s_k = s_{k-1} + T_k`` feeding ``s_{k+1}``, where T_k is a matmul/conv output
        read only here: a gradient summed over the uses of one weight (an unrolled RNN's
        kernels: one product per time step). Materialized, each link becomes T_k's GEMM
        with a residual epilogue (codegen/epilogue.py), so the products accumulate as they
        are made; inlined, the whole chain would become one loop at the end reading every
        product, all of them alive until then (W3: 31 temps of 64 KB summed in 23 us)."""
        if node.op != "add" or consumer.op != "add":
            return False
        out = node.outputs[0]
        if any(v.shape != out.shape for v in node.inputs):
            return False        # a bias add: it stays in the contraction's epilogue chain
        return any(v.node is not None and v.node.op in TEMPLATES and
                   len(self.users.get(v, [])) == 1 for v in node.inputs)

    # -- expressions -----------------------------------------------------------------
    def load(self, v: Value, index: list[Ix]) -> Load:
        return Load(self.buf_of[v], flatten(index, v.shape), v.dtype)

    def expr(self, v: Value, index: list[Ix]):
        if v in self.buf_of:
            return self.load(v, index)
        key = (v, tuple(index))
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = self._expr(v.node, v, index)
            names = self.origins.setdefault(v, [])
            if self._kernel_name and self._kernel_name not in names:
                names.append(self._kernel_name)
        return hit

    def _expr(self, node: Node, v: Value, index: list[Ix]):
        op, ins, a = node.op, node.inputs, node.attrs
        if op == "constant":
            value = a["value"]
            if value.size == 1:
                return Const(value.reshape(()).item(), v.dtype)
            bid = self.new_buffer(value.shape, v.dtype, "const", data=np.ascontiguousarray(value))
            self.buf_of[v] = bid
            return self.load(v, index)
        if op in ELEMENTWISE:
            args = tuple(self.expr(x, _broadcast_index(index, v.shape, x.shape)) for x in ins)
            return Op(op, args, v.dtype, dict(a))
        if op == "random_uniform":
            return Random(self.expr(ins[0], []), self.expr(ins[1], []), int(a["salt"]),
                          flatten(index, v.shape), v.dtype)
        if op == "reshape":
            x = ins[0]
            return self.expr(x, unflatten(flatten(index, v.shape), x.shape))
        if op == "transpose":
            src = [None] * len(index)
            for k, p in enumerate(a["perm"]):
                src[p] = index[k]
            return self.expr(ins[0], src)
        if op == "broadcast_to":
            return self.expr(ins[0], _broadcast_index(index, v.shape, ins[0].shape))
        if op == "slice":
            strides = a["strides"] or (1,) * len(index)
            return self.expr(ins[0], [ix_add(b, ix_mul(i, s))
                                      for i, b, s in zip(index, a["begin"], strides)])
        if op == "pad":
            x = ins[0]
            conds, src = [], []
            for i, (lo, hi), d in zip(index, a["pads"], x.shape):
                src.append(ix_add(i, -lo))
                if lo or hi:
                    conds.append((i, lo, lo + d))
            inner = self.expr(x, src)
            if not conds:
                return inner
            return Guard(tuple(conds), inner, Const(a["value"], v.dtype), v.dtype)
        if op == "concat":
            axis = a["axis"]
            offsets = np.cumsum([0] + [x.shape[axis] for x in ins])
            out = None
            for k in range(len(ins) - 1, -1, -1):
                src = list(index)
                src[axis] = ix_add(index[axis], -int(offsets[k]))
                e = self.expr(ins[k], src)
                out = e if out is None else Guard(
                    ((index[axis], int(offsets[k]), int(offsets[k + 1])),), e, out, v.dtype)
            return out
        raise GraphcError(f"cannot inline op '{op}'")

    # -- kernels ---------------------------------------------------------------------
    def kernel_for(self, node: Node, out_buf: int):
        v = node.outputs[0]
        name = f"k{len(self.kernels)}_{node.op}"
        self._kernel_name = name
        self.origins[v] = [name]
        par = [Var(k) for k in range(len(v.shape))]
        if node.op in TEMPLATES:
            inputs = [self.buf_of[x] for x in node.inputs]
            return TemplateKernel(name, node.op, inputs, out_buf, dict(node.attrs))
        if node.op in REDUCTIONS:
            x = node.inputs[0]
            axes = node.attrs["axes"] if node.op != "argmax" else (node.attrs["axis"],)
            keep = node.attrs.get("keepdims", False)
            src, r, p = [], 0, 0
            for j in range(x.rank):
                if j in axes:
                    src.append(Var(len(v.shape) + r))
                    r += 1
                    if keep:
                        p += 1
                else:
                    src.append(par[p])
                    p += 1
            extents = tuple(x.shape[j] for j in axes)
            combiner = {"reduce_sum": "sum", "reduce_max": "max", "argmax": "argmax"}[node.op]
            red = Reduction(extents, combiner, self.expr(x, src), x.dtype)
            self._memo.clear()
            return LoopKernel(name, v.shape, [Store(out_buf, flatten(par, v.shape), Acc(v.dtype))], red)
        value = self.expr(v, par)
        self._memo.clear()
        return LoopKernel(name, v.shape, [Store(out_buf, flatten(par, v.shape), value)])

    def run(self) -> Program:
        g = self.g
        inputs = [self.new_buffer(v.shape, v.dtype, "input", v.name) for v in g.inputs]
        params = [self.new_buffer(v.shape, v.dtype, "param", v.name) for v in g.params]
        for v, b in zip(g.inputs + g.params, inputs + params):
            self.buf_of[v] = b
        out_of: dict[Value, int] = {}
        for node in g.nodes:
            if len(node.outputs) != 1:
                raise GraphcError(f"the kernel lowering needs single-output ops, got "
                                  f"'{node.op}' with {len(node.outputs)} outputs")
            v = node.outputs[0]
            if not self._must_materialize(node):
                continue
            self.materialized.add(v)
            kind = "output" if v in self.outputs and v not in out_of and \
                g.outputs.count(v) == 1 else "temp"
            if node.op == "constant" and kind == "temp":
                value = node.attrs["value"]
                self.buf_of[v] = self.new_buffer(v.shape, v.dtype, "const",
                                                 data=np.ascontiguousarray(value))
                continue
            buf = self.new_buffer(v.shape, v.dtype, kind)
            self.kernels.append(self.kernel_for(node, buf))
            self.buf_of[v] = buf
            if kind == "output":
                out_of[v] = buf
        outputs = []
        for v, name in zip(g.outputs, g.output_names):
            if v in out_of and out_of[v] not in outputs:
                self.buffers[out_of[v]].name = name or ""
                outputs.append(out_of[v])
                continue
            # An output that is an input/param, a repeated value or a constant: copy it.
            buf = self.new_buffer(v.shape, v.dtype, "output", name or "")
            par = [Var(k) for k in range(len(v.shape))]
            self._kernel_name = f"k{len(self.kernels)}_copy"
            value = self.expr(v, par)
            self._memo.clear()
            self.kernels.append(LoopKernel(f"k{len(self.kernels)}_copy", v.shape,
                                           [Store(buf, flatten(par, v.shape), value)]))
            outputs.append(buf)
        return Program(g.name, self.buffers, self.kernels, inputs, params, outputs,
                       list(g.output_names))


def lower_graph(graph: Graph, origins: dict | None = None) -> Program:
    """Cut a primitive-only graph into kernels (see the module docstring). When given,
    ``origins`` is filled with value -> (own kernel name or None, names of the kernels
    that recompute it inline)."""
    low = _Lowering(graph)
    program = low.run()
    if origins is not None:
        for v, names in low.origins.items():
            own = names[0] if v in low.materialized and names else None
            origins[v] = (own, [n for n in names if n != own])
    return program


def annotate_fusion(graph: Graph) -> Graph:
    """Note on each node its own kernel (``k3_add``) or, when it is inlined, the kernels
    that recompute it (``fused into k4_mul``); the printer shows the notes as ``//``
    comments, so the fusion groups are visible in ``dump-ir --stage optimized``."""
    origins: dict = {}
    lower_graph(graph, origins)
    notes = {}
    for node in graph.nodes:
        if len(node.outputs) != 1 or node.outputs[0] not in origins:
            continue
        own, users = origins[node.outputs[0]]
        if own is None and node.op == "constant":
            continue        # literals are folded into every kernel that reads them
        notes[node] = own if own else "fused into " + ", ".join(users)
    graph.annotations = notes
    return graph
