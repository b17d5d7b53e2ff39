"""Golden IR: ``dump-ir --batch-size 4`` of every example at every stage, compared with
``tests/golden/<example>.<stage>.ir``. A compiler change that alters the IR shows up here as a
diff; when it is intended, ``python -m pytest tests/golden --update-golden`` rewrites the files
and the reviewer reads the change in ``git diff tests/golden``.
"""
import difflib
from pathlib import Path

import pytest

from graphc import cli

GOLDEN = Path(__file__).resolve().parent
ROOT = GOLDEN.parent.parent
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.py"))
STAGES = cli.GRAPH_STAGES    # every graph stage dump-ir offers (llvm is host-dependent)
BATCH_SIZE = "4"     # small and fixed: shapes in the files stay short and stable


def _dump(example: str, stage: str, capsys) -> str:
    # In-process (fast): dump-ir seeds and resets layer auto-naming itself, so the names
    # in the IR do not depend on which tests ran before.
    capsys.readouterr()
    rc = cli.main(["dump-ir", str(ROOT / "examples" / f"{example}.py"), "--stage", stage,
                   "--batch-size", BATCH_SIZE])
    out, err = capsys.readouterr()
    assert rc == 0, f"dump-ir {example} --stage {stage} failed: {err.strip()}"
    return out


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("example", EXAMPLES)
def test_golden_ir(example, stage, update_golden, capsys):
    path = GOLDEN / f"{example}.{stage}.ir"
    text = _dump(example, stage, capsys)
    if update_golden:
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        return
    if not path.exists():
        pytest.fail(f"{path.name} is missing: run `python -m pytest tests/golden "
                    f"--update-golden` and commit it")
    expected = path.read_text()
    if text != expected:
        diff = "".join(difflib.unified_diff(
            expected.splitlines(keepends=True), text.splitlines(keepends=True),
            fromfile=f"golden/{path.name}", tofile="dump-ir output"))
        pytest.fail(f"IR of {example} at stage {stage} changed (if intended, rerun with "
                    f"--update-golden):\n{diff}", pytrace=False)


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("example", EXAMPLES)
def test_golden_ir_round_trips_through_parser(example, stage):
    from graphc.ir.parser import parse
    path = GOLDEN / f"{example}.{stage}.ir"
    if not path.exists():
        pytest.skip(f"{path.name} not generated yet")
    import re
    text = path.read_text()
    # The optimized stage notes each node's fused kernel in `//` comments, which the parser
    # skips: the rest must print back exactly.
    assert str(parse(text)) == re.sub(r"  // [^\n]*", "", text)


def test_every_golden_file_belongs_to_an_example():
    """A renamed or deleted example must take its golden files with it."""
    expected = {f"{e}.{s}.ir" for e in EXAMPLES for s in STAGES}
    stale = sorted(p.name for p in GOLDEN.glob("*.ir") if p.name not in expected)
    assert not stale, f"golden files without an example/stage: {stale}"
