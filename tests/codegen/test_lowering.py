"""The kernel form: every primitive op and every example's optimized train graph, cut into
kernels by ``lower_graph`` and evaluated by the numpy kernel evaluator, agree with the graph
interpreter."""
import importlib.util
import pathlib

import numpy as np
import pytest

from graphc.codegen.kernel import LoopKernel, TemplateKernel, format_program
from graphc.codegen.kernel_interp import run_program
from graphc.codegen.lowering import INJECTIVE, REDUCTIONS, TEMPLATES, lower_graph
from graphc.ir.dtypes import TensorType, f32
from graphc.ir.graph import Graph
from graphc.ir.interpreter import interpret
from graphc.ir.registry import all_ops
from graphc.passes.pipeline import build_stage

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
PRIMITIVES = sorted(n for n, op in all_ops().items() if op.primitive)


def test_every_primitive_has_a_lowering_rule():
    missing = [n for n in PRIMITIVES if n not in INJECTIVE | REDUCTIONS | TEMPLATES]
    assert not missing, f"primitives without a kernel rule: {missing}"


def _one_node_graph(name, seed):
    opdef = all_ops()[name]
    arrays, attrs = opdef.sample(np.random.default_rng(seed), np.float32)
    g = Graph(name)
    ins = [g.add_input(f"x{i}", TensorType.of(a)) for i, a in enumerate(arrays)]
    out = g.builder.emit(name, ins, attrs)
    outs = list(out) if isinstance(out, tuple) else [out]
    # Feed the result through an elementwise consumer too, so inlining paths are exercised.
    extra = [g.builder.emit("mul", [o, o]) for o in outs if o.dtype.is_float]
    g.set_outputs(outs + extra)
    return g, arrays


@pytest.mark.parametrize("name", PRIMITIVES)
def test_primitive_through_kernels_matches_interpreter(name):
    for seed in range(4):
        g, arrays = _one_node_graph(name, seed)
        got = run_program(lower_graph(g), arrays, [])
        for want, have in zip(interpret(g, arrays), got):
            np.testing.assert_allclose(have, want, rtol=1e-6, atol=1e-6, err_msg=name)


def _example(name):
    spec = importlib.util.spec_from_file_location(f"ex_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build_model()


def _random_args(values, rng):
    out = []
    for v in values:
        if v.dtype.is_float:
            out.append((rng.standard_normal(v.shape) * 0.3).astype(v.dtype.np))
        elif v.name in ("seed", "optimizer.iterations"):
            out.append(np.array(5, v.dtype.np))
        else:
            out.append(rng.integers(0, 2, v.shape).astype(v.dtype.np))
    return out


@pytest.mark.parametrize("example", ["seed_mlp", "small_cnn", "functional_two_input",
                                     "digits_cnn"])
def test_example_train_step_through_kernels(example):
    g = build_stage(_example(example), "optimized", batch_size=4)
    p = lower_graph(g)
    rng = np.random.default_rng(0)
    ins, params = _random_args(g.inputs, rng), _random_args(g.params, rng)
    params = [np.abs(a) if v.name.endswith("velocity") else a for a, v in zip(params, g.params)]
    for want, have in zip(interpret(g, ins, params), run_program(p, ins, params)):
        np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-6)
    # Elementwise chains fuse: fewer kernels than nodes, and every matmul is a template.
    assert len(p.kernels) < len(g.nodes) / 2
    assert sum(isinstance(k, TemplateKernel) and k.op == "matmul" for k in p.kernels) == \
        g.op_counts().get("matmul", 0)
    assert "program @train" in format_program(p)


def test_softmax_exp_fuses_into_its_sum():
    g = Graph("sm")
    x = g.add_input("x", TensorType((3, 5), f32))
    b = g.builder
    e = b.exp(b.sub(x, b.reduce_max(x, axes=(1,), keepdims=True)))
    g.set_outputs([b.reduce_sum(e, axes=(1,), keepdims=False)])
    p = lower_graph(g)
    loops = [k for k in p.kernels if isinstance(k, LoopKernel)]
    assert len(loops) == 2 and all(k.reduction is not None for k in loops)


def test_optimized_stage_shows_the_fusion_groups():
    from graphc.ir.parser import parse
    g = build_stage(_example("seed_mlp"), "optimized", batch_size=4)
    text = str(g)
    lines = [ln for ln in text.splitlines() if " = " in ln]
    # Every non-literal node names its kernel or the kernels it is fused into.
    assert all("//" in ln for ln in lines if "constant()" not in ln)
    assert any("// k0_matmul" in ln for ln in lines)
    fused = [ln for ln in lines if "// fused into k" in ln]
    assert fused and all("matmul(" not in ln for ln in fused)   # templates are never inlined
    assert parse(text).op_counts() == g.op_counts()             # comments parse away


def _shared_weight_sum(uses=4, bias_add=False):
    """sum_i x_i @ W (+ b per product when ``bias_add``), the shape of an unrolled RNN's
    weight gradient: a chain of adds, each reading a fresh product."""
    g = Graph("acc")
    w = g.add_input("w", TensorType((6, 5), f32))
    xs = [g.add_input(f"x{i}", TensorType((3, 6), f32)) for i in range(uses)]
    bias = g.add_input("b", TensorType((5,), f32))
    b = g.builder
    terms = [b.matmul(x, w) for x in xs]
    if bias_add:
        terms = [b.add(t, bias) for t in terms]
    s = terms[0]
    for t in terms[1:]:
        s = b.add(s, t)
    g.set_outputs([b.exp(s)])
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(v.shape).astype(np.float32) for v in g.inputs]
    return g, arrays


def test_a_sum_of_products_accumulates_as_the_products_are_made():
    from graphc.codegen.epilogue import fuse_epilogues
    g, arrays = _shared_weight_sum()
    p = lower_graph(g)
    # Every link but the last (inlined into its consumer, the exp) has a kernel of its own
    # reading one product only: each can fold into that product's GEMM as a residual.
    adds = [k for k in p.kernels if isinstance(k, LoopKernel) and k.name.endswith("_add")]
    assert len(adds) == 2
    folded = fuse_epilogues(p)
    assert not [k for k in folded.kernels if isinstance(k, LoopKernel) and
                k.name.endswith("_add")]
    assert len([k for k in folded.kernels if isinstance(k, TemplateKernel) and
                k.epilogue is not None]) == 2
    want = interpret(g, arrays)[0]
    np.testing.assert_allclose(run_program(p, arrays, [])[0], want, rtol=1e-5, atol=1e-5)
    # (the kernel evaluator does not run epilogues: the cpu target runs the folded form)
    from graphc.runtime.backends import get_backend
    got = get_backend("cpu").compile(g)(arrays)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_bias_adds_and_lone_products_stay_inlined():
    # A bias add (broadcast operand) stays in its product's epilogue chain, and a sum whose
    # consumer is no add is inlined as before.
    g, _ = _shared_weight_sum(uses=2, bias_add=True)
    p = lower_graph(g)
    assert not [k for k in p.kernels if isinstance(k, LoopKernel) and
                k.name.endswith("_add") and k.reduction is None]
