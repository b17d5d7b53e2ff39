"""The issue-4 examples run and show what each is for, at reduced sizes (seconds, not the
default minute budget): each ``main(argv)`` returns 0 only when its own check passes, and
the test also reads the numbers it prints and asserts the key property directly.

The examples' default sizes are what ``python examples/<name>.py`` runs; these arguments
only shorten training, with the same model and data.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module


def _run(name: str, argv: list[str], capsys) -> str:
    rc = _load(name).main(argv)
    out, err = capsys.readouterr()
    assert rc == 0, f"examples/{name}.py {' '.join(argv)} failed (status {rc}):\n{out}{err}"
    return out


def _number(pattern: str, out: str) -> float:
    m = re.search(pattern, out)
    assert m, f"no line matching {pattern!r} in the output:\n{out}"
    return float(m.group(1))


def test_lstm_sequence_learns(capsys):
    out = _run("lstm_sequence", ["--epochs", "4", "--train-size", "2000",
                                 "--batch-size", "16"], capsys)
    m = re.search(r"Training loss: ([\d.]+) \(first epoch\) -> ([\d.]+) \(last\)", out)
    assert m, out
    first, last = float(m.group(1)), float(m.group(2))
    assert last < first / 2, f"training loss only fell from {first} to {last}"
    assert _number(r"Test accuracy: ([\d.]+)", out) > 0.9


def test_vgg_bn_cnn_reaches_90_percent(capsys):
    out = _run("vgg_bn_cnn", ["--epochs", "3"], capsys)
    assert _number(r"Test accuracy: ([\d.]+)", out) > 0.9
    # Training moved BatchNormalization's moving mean off its initial zeros.
    assert _number(r"moving mean, mean \|m\|: ([\d.]+)", out) > 0


def test_dcgan_freezes_the_discriminator_in_the_combined_model(capsys):
    out = _run("dcgan", ["--epochs", "2"], capsys)
    for line in ("discriminator frozen in combined.train_on_batch: yes",
                 "generator updated by combined.train_on_batch: yes",
                 "discriminator updated by its own train_on_batch: yes",
                 "losses finite: yes"):
        assert line in out, f"{line!r} missing:\n{out}"
    losses = [float(v) for v in re.findall(r"[dg]_loss: ([-\d.naif]+)", out)]
    assert len(losses) == 4 and all(0 < v < 10 for v in losses), out


def test_transfer_learning_keeps_the_frozen_base_bit_identical(capsys):
    out = _run("transfer_learning", ["--base-epochs", "3", "--head-epochs", "4"], capsys)
    assert "Frozen base weights bit-identical after training the head (10 arrays): yes" in out
    assert _number(r"Head on digits 5-9: test accuracy ([\d.]+)", out) > 0.9


@pytest.mark.parametrize("name", ["lstm_sequence", "vgg_bn_cnn", "dcgan",
                                  "transfer_learning"])
def test_example_has_build_model_and_golden_ir(name):
    """What ``dump-ir`` and the golden tests use: ``build_model()`` gives a compiled model,
    and its golden files exist."""
    model = _load(name).build_model()
    assert getattr(model, "compiled", False) or getattr(model, "optimizer", None) is not None
    golden = EXAMPLES.parent / "tests" / "golden"
    for stage in ("traced", "train", "optimized"):
        assert (golden / f"{name}.{stage}.ir").exists()
