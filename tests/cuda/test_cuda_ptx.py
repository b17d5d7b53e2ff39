"""The generated kernels are valid CUDA beyond what the simulator accepts (it runs them as
plain Python). Each check runs ``_kernel_check.py`` in a process without the simulator:

- ``compile_ptx``: every kernel of every primitive and of the test models compiled to PTX
  for cc=(9, 0). Needs the NVRTC wheels (``pip install numba-cuda[cu13]``); skipped with
  that reason when they are absent.
- NVVM IR: numba's CUDA front end (typing, lowering) on every kernel — needs no GPU and no
  NVRTC, so it always runs (the model kernels, ~20 s, are marked slow) — and no float64
  arithmetic in kernels that have no float64 buffers (except avg-pool's division, which the
  reference does in float64): numba's silent promotions would cost throughput on a GPU and
  change rounding.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _run(mode, which):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, str(HERE / "_kernel_check.py"), mode, which],
                         capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=500)
    assert out.returncode == 0, out.stderr[-4000:]
    recs = [json.loads(ln) for ln in out.stdout.splitlines() if ln.startswith("{")]
    summary = recs[-1]
    assert summary.get("summary"), out.stdout[-2000:]
    return recs[:-1], summary


def _report(recs):
    bad = [r for r in recs if not r["ok"]]
    return "\n\n".join(f"{r['graph']} {r['kernel']}: {r['error']}\n{r['source']}"
                       for r in bad[:3])


@pytest.mark.parametrize("which", ["primitives", "models"])
def test_compile_ptx_for_cc90(which):
    recs, summary = _run("ptx", which)
    if "unavailable" in summary:
        pytest.skip(f"cuda.compile_ptx cannot run here (the NVRTC wheels are an optional "
                    f"extra: pip install 'numba-cuda[cu13]'): {summary['unavailable']}")
    assert summary["failed"] == 0, _report(recs)
    assert summary["kernels"] > 20


@pytest.mark.parametrize("which", ["primitives",
                                   pytest.param("models", marks=pytest.mark.slow)])
def test_kernels_type_check_and_lower_for_a_real_gpu(which):
    recs, summary = _run("nvvm", which)
    if "unavailable" in summary:
        pytest.skip(summary["unavailable"])
    assert summary["failed"] == 0, _report(recs)
    assert summary["kernels"] > 20
    promoted = [f"{r['graph']} {r['kernel']}" for r in recs
                if r["double_ops"] and not r["f64_args"] and not r["intended_f64"]]
    assert not promoted, f"float64 arithmetic in float32 kernels: {promoted}"
