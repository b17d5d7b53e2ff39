"""Worker for test_cuda_ptx.py, run in its own process with NUMBA_ENABLE_CUDASIM=0 (the test
session itself runs under the simulator, where numba's CUDA compiler does not exist).

    python tests/cuda/_kernel_check.py {nvvm|ptx} {primitives|models}

Renders the kernels of every primitive (registry samplers) or of the test models' train and
predict steps with the real-GPU schedule, compiles each distinct kernel text, and prints
one JSON object per kernel: ``nvvm`` runs numba's CUDA front end (typing and lowering to
NVVM IR, no GPU or NVRTC needed) and counts float64 arithmetic; ``ptx`` runs
``cuda.compile_ptx(..., cc=(9, 0))`` (needs the NVRTC wheels). The last line is a summary.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import re
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ["NUMBA_ENABLE_CUDASIM"] = "0"

import numpy as np  # noqa: E402

from graphc.codegen.cuda.dump import cuda_program_sources  # noqa: E402
from graphc.codegen.cuda.program import load_source, numba_signature  # noqa: E402
from graphc.codegen.cuda.source import GPU_CONFIG  # noqa: E402
from graphc.ir.dtypes import TensorType  # noqa: E402
from graphc.ir.graph import Graph  # noqa: E402
from graphc.ir.registry import all_ops  # noqa: E402

DOUBLE_OP = re.compile(r"= f(add|sub|mul|div|rem) double")


def _primitive_graphs():
    prims = sorted(n for n, op in all_ops().items() if op.primitive)
    for name in prims:
        opdef = all_ops()[name]
        for seed, dt in ((0, np.float32), (2, np.float64)):
            arrays, attrs = opdef.sample(np.random.default_rng(seed), dt)
            g = Graph(name)
            ins = [g.add_input(f"x{i}", TensorType.of(a)) for i, a in enumerate(arrays)]
            out = g.builder.emit(name, ins, attrs)
            outs = list(out) if isinstance(out, tuple) else [out]
            g.set_outputs(outs + [g.builder.emit("mul", [o, o]) for o in outs
                                  if o.dtype.is_float])
            yield name, g


def _model_graphs():
    from graphc.frontend.layers.base import reset_name_counters
    from graphc.passes.pipeline import build_stage
    sys.path.insert(0, str(ROOT / "tests" / "cuda"))
    spec = importlib.util.spec_from_file_location("cuda_models_for_check",
                                                  ROOT / "tests" / "cuda" / "test_cuda_models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name, build in mod.MODELS.items():
        for stage in ("traced", "optimized"):
            reset_name_counters()
            yield f"{name}.{stage}", build_stage(build(), stage, batch_size=4)


def _sources(which):
    graphs = _primitive_graphs() if which == "primitives" else _model_graphs()
    seen = set()
    for tag, g in graphs:
        _, sources, _ = cuda_program_sources(g, GPU_CONFIG)
        for s in sources:
            if s.text not in seen:
                seen.add(s.text)
                yield tag, s


def _nvvm(pyfunc, sig):
    from numba.cuda.compiler import _compile_pyfunc_with_fixup
    lib, _ = _compile_pyfunc_with_fixup(
        pyfunc, sig, debug=False, lineinfo=False, device=False, fastmath=False, cc=(9, 0),
        opt=True, abi="numba", abi_info=None, forceinline=False, launch_bounds=None, lto=False)
    return lib.get_llvm_str()


def main(mode, which):
    from numba import cuda
    if mode == "nvvm":
        try:
            from numba.cuda.compiler import _compile_pyfunc_with_fixup  # noqa: F401
        except ImportError as e:
            print(json.dumps({"summary": True, "unavailable": f"numba-cuda internals: {e}"}))
            return
    if mode == "ptx":
        # Probe first: without NVRTC there is no point in rendering a single model.
        def probe(a):
            a[0] = 1.0
        try:
            cuda.compile_ptx(probe, "void(float32[::1])", cc=(9, 0))
        except Exception as e:   # noqa: BLE001
            print(json.dumps({"summary": True, "unavailable": f"{type(e).__name__}: "
                                                              f"{str(e).splitlines()[0]}"}))
            return
    n, failed, t0 = 0, 0, time.time()
    for tag, s in _sources(which):
        n += 1
        rec = {"graph": tag, "kernel": s.name, "fn": s.fn_name, "ok": True}
        try:
            pyfunc = load_source(s, simulator=False)
            sig = numba_signature(s.arg_dtypes)
            if mode == "nvvm":
                ir = _nvvm(pyfunc, sig)
                rec["double_ops"] = len(DOUBLE_OP.findall(ir))
                rec["f64_args"] = any(d.value == "f64" for d in s.arg_dtypes)
                rec["intended_f64"] = s.name.split("_", 1)[1].startswith("avg_pool2d")
            else:
                ptx, _ = cuda.compile_ptx(pyfunc, sig, cc=(9, 0))
                rec["ptx_bytes"] = len(ptx)
        except Exception as e:   # noqa: BLE001 (reported, the test decides)
            text = f"{type(e).__name__}: {e}"
            if mode == "ptx" and ("nvrtc" in text.lower() or "libnvvm" in text.lower()):
                print(json.dumps({"summary": True, "unavailable": text.splitlines()[0]}))
                return
            failed += 1
            rec.update(ok=False, error=text[:2000], source=s.text)
        print(json.dumps(rec))
    print(json.dumps({"summary": True, "kernels": n, "failed": failed,
                      "seconds": round(time.time() - t0, 1)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
