"""Which loop kernels of a cpu step run on all cores (program.py's split decision): a step
whose buffers outgrow one core's L2 cache splits smaller kernels than one that fits, and
where a kernel runs never changes a bit of the result."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("llvmlite")

import graphc  # noqa: E402
from graphc.codegen.cpu import parallel, program  # noqa: E402
from graphc.codegen.kernel import Buffer  # noqa: E402
from graphc.ir.dtypes import DType  # noqa: E402
from graphc.layers import LSTM, Dense  # noqa: E402
from graphc.models import Sequential  # noqa: E402
from graphc.utils import set_random_seed  # noqa: E402


def test_threshold_depends_on_the_working_set(monkeypatch):
    monkeypatch.setattr(parallel, "l2_cache_bytes", lambda: 1 << 20)
    small = [Buffer(0, (64, 32), DType.f32, "param", "w"),
             Buffer(1, (1 << 20,), DType.f32, "const", "table")]     # constants don't count
    big = small + [Buffer(2, (512, 512), DType.f32, "temp", "t")]      # 1 MiB more
    assert program.min_cost_per_task(small) == program.MIN_COST_PER_TASK
    assert program.min_cost_per_task(big) == program.MIN_COST_PER_TASK_OUT_OF_L2
    assert program.MIN_COST_PER_TASK_OUT_OF_L2 < program.MIN_COST_PER_TASK


def test_l2_cache_size_is_read_or_defaulted():
    n = parallel.l2_cache_bytes()
    assert isinstance(n, int) and (1 << 16) <= n <= (1 << 26)


def _lstm_weights_after_steps(steps=3):
    set_random_seed(7)
    m = Sequential([LSTM(24, input_shape=(6, 5)), Dense(1, activation="sigmoid")])
    m.compile(optimizer="adam", loss="binary_crossentropy")
    exe = graphc.compile(m, target="cpu")
    rng = np.random.default_rng(8)
    x = rng.random((16, 6, 5), dtype=np.float32)
    y = rng.integers(0, 2, (16, 1)).astype(np.float32)
    for _ in range(steps):
        exe.train_on_batch(x, y)
    (_, fn), = [v for k, v in exe._steps.items() if k[0] == "train"]
    return m.get_weights(), fn.module_info.stats["parallel_kernels"]


def test_splitting_more_kernels_changes_no_bits(monkeypatch):
    # Pretend the L2 is tiny and the threshold is 1: every kernel with 2+ rows splits.
    monkeypatch.setattr(parallel, "l2_cache_bytes", lambda: 1)
    monkeypatch.setattr(program, "MIN_COST_PER_TASK_OUT_OF_L2", 1)
    split, n_split = _lstm_weights_after_steps()
    monkeypatch.setattr(program, "MIN_COST_PER_TASK_OUT_OF_L2", 1 << 40)
    whole, n_whole = _lstm_weights_after_steps()
    if parallel.default_threads() > 1:
        assert n_split > n_whole
    for a, b in zip(split, whole):
        np.testing.assert_array_equal(a, b)
