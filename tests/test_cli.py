"""``python -m graphc``: dump-ir loads model files safely and fails in one line; version.

Most tests run ``graphc.cli.main`` in-process with a stand-in ``build_stage`` (so they check
the command line, not the compiler); a few use the real compiler, and one runs a subprocess.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import graphc
from graphc import cli
from graphc.ir.dtypes import DType, TensorType
from graphc.ir.graph import Graph

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path, source, name="model.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return str(path)


def run(capsys, *argv):
    capsys.readouterr()
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *fragments):
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("graphc: error: ")
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture
def fake_stage(monkeypatch):
    """Replace the compiler with a function returning a one-node graph; records calls."""
    calls = []

    def build(model, stage, batch_size):
        from graphc.frontend.seeding import next_seed
        calls.append((model, stage, batch_size, next_seed()))
        g = Graph(stage)
        x = g.add_input("x", TensorType((batch_size, 3), DType.f32))
        g.set_outputs([g.builder.emit("relu", [x])])
        return g

    monkeypatch.setattr(cli, "_build_stage", build)
    return calls


# ----------------------------------------------------------------------------- basics

def test_help(capsys):
    rc, out, _ = run(capsys, "--help")
    assert rc == 0 and "dump-ir" in out and "version" in out
    rc, out, _ = run(capsys, "dump-ir", "--help")
    assert rc == 0 and "--stage" in out and "--batch-size" in out


def test_version(capsys):
    rc, out, _ = run(capsys, "version")
    assert rc == 0 and out.startswith(f"graphc {graphc.__version__} ")


def test_usage_errors(capsys):
    assert run(capsys)[0] == 2                                 # no command
    assert run(capsys, "frobnicate")[0] == 2
    assert run(capsys, "dump-ir", "m.py", "--stage", "nope")[0] == 2
    rc, _, err = run(capsys, "dump-ir", "m.py", "--batch-size", "0")
    assert rc == 2 and "positive integer" in err


def test_stages_match_the_pipeline():
    pipeline = pytest.importorskip("graphc.passes.pipeline")
    assert tuple(cli.GRAPH_STAGES) == tuple(pipeline.STAGES)


# ----------------------------------------------------------------------------- loading

def test_missing_file(capsys, tmp_path):
    rc, _, err = run(capsys, "dump-ir", str(tmp_path / "nope.py"))
    assert_one_line_error(rc, err, "no such file", "nope.py")


def test_directory(capsys, tmp_path):
    rc, _, err = run(capsys, "dump-ir", str(tmp_path))
    assert_one_line_error(rc, err, "is a directory")


def test_file_without_model(capsys, tmp_path):
    path = write(tmp_path, "x = 1\n")
    rc, _, err = run(capsys, "dump-ir", path)
    assert_one_line_error(rc, err, "neither `model` nor `build_model()`")


def test_file_that_raises(capsys, tmp_path):
    path = write(tmp_path, """\
        import math

        y = 1 / 0
    """)
    rc, _, err = run(capsys, "dump-ir", path)
    assert_one_line_error(rc, err, f"{path}:3: ZeroDivisionError: division by zero")


def test_file_with_syntax_error(capsys, tmp_path):
    path = write(tmp_path, "x = 1\ndef broken(:\n")
    rc, _, err = run(capsys, "dump-ir", path)
    assert_one_line_error(rc, err, f"{path}:2: SyntaxError: ")


def test_file_that_exits(capsys, tmp_path):
    path = write(tmp_path, "import sys\nsys.exit(3)\n")
    rc, _, err = run(capsys, "dump-ir", path)
    assert_one_line_error(rc, err, "SystemExit: 3")


def test_build_model_that_raises(capsys, tmp_path):
    path = write(tmp_path, """\
        def build_model():
            raise ValueError("bad\\nmulti-line message")
    """)
    rc, _, err = run(capsys, "dump-ir", path)
    assert_one_line_error(rc, err, "build_model() failed", f"{path}:2: ValueError: bad "
                          "multi-line message")


def test_build_model_returning_none(capsys, tmp_path):
    path = write(tmp_path, "def build_model():\n    pass\n")
    rc, _, err = run(capsys, "dump-ir", path)
    assert_one_line_error(rc, err, "returned None")


def test_traceback_flag_shows_the_cause(capsys, tmp_path):
    path = write(tmp_path, "y = 1 / 0\n")
    rc, _, err = run(capsys, "dump-ir", path, "--traceback")
    assert rc == 2 and "Traceback" in err and "ZeroDivisionError" in err
    assert err.strip().splitlines()[-1].startswith("graphc: error: ")


# ----------------------------------------------------------------------------- dumping

def test_dump_uses_model_not_main_block(capsys, tmp_path, fake_stage):
    path = write(tmp_path, """\
        print("chatter from the model file")
        model = "the model"
        if __name__ == "__main__":
            raise SystemExit("training code must not run")
    """)
    rc, out, err = run(capsys, "dump-ir", path, "--stage", "train", "--batch-size", "4")
    assert rc == 0, err
    assert out.startswith("graph @train(%x: f32[4,3])")
    assert "chatter" in err and "chatter" not in out        # stdout is only the IR
    assert fake_stage[0][:3] == ("the model", "train", 4)


def test_build_model_and_sibling_imports(capsys, tmp_path, fake_stage):
    write(tmp_path, "WIDTH = 7\n", name="helper_for_cli_test.py")
    path = write(tmp_path, """\
        from helper_for_cli_test import WIDTH

        def build_model():
            return ("built", WIDTH)
    """)
    path_before, modules_before = list(sys.path), set(sys.modules)
    rc, out, err = run(capsys, "dump-ir", path)
    assert rc == 0, err
    assert fake_stage[0][:3] == (("built", 7), "traced", 32)
    assert sys.path == path_before                           # loading leaves no trace
    assert cli.MODEL_MODULE_NAME not in sys.modules
    sys.modules.pop("helper_for_cli_test", None)
    assert set(sys.modules) - modules_before <= {"helper_for_cli_test"}


def test_each_dump_starts_from_seed_zero(capsys, tmp_path, fake_stage):
    path = write(tmp_path, "model = 1\n")
    from graphc.frontend.seeding import next_seed
    next_seed()                                              # whatever ran before
    assert run(capsys, "dump-ir", path)[0] == 0
    next_seed()
    assert run(capsys, "dump-ir", path)[0] == 0
    assert fake_stage[0][3] == fake_stage[1][3]


def test_output_file(capsys, tmp_path, fake_stage):
    path = write(tmp_path, "model = 1\n")
    target = tmp_path / "out.ir"
    rc, out, err = run(capsys, "dump-ir", path, "-o", str(target), "--batch-size", "2")
    assert rc == 0 and out == ""
    assert target.read_text().startswith("graph @traced(%x: f32[2,3])")
    rc, _, err = run(capsys, "dump-ir", path, "-o", str(tmp_path / "no" / "dir.ir"))
    assert_one_line_error(rc, err, "cannot write")


def test_compiler_failure_is_one_line(capsys, tmp_path, monkeypatch):
    from graphc.errors import ShapeError

    def fail(model, stage, batch_size):
        raise ShapeError("dense: expected f32[?,10], got\nf32[4,8]")

    monkeypatch.setattr(cli, "_build_stage", fail)
    path = write(tmp_path, "model = 1\n")
    rc, _, err = run(capsys, "dump-ir", path)
    assert_one_line_error(rc, err, "cannot build the traced stage",
                          "ShapeError: dense: expected f32[?,10], got f32[4,8]")


def test_subprocess(tmp_path):
    """The real entry point: `python -m graphc`, exit codes and clean stderr."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "graphc", "dump-ir", str(tmp_path / "x.py")],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == f"graphc: error: no such file: {tmp_path / 'x.py'}"
    proc = subprocess.run([sys.executable, "-m", "graphc", "--help"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0 and "dump-ir" in proc.stdout


# ----------------------------------------------------------------------------- real compiler

MLP = """\
    from graphc.layers import Dense
    from graphc.models import Sequential

    model = Sequential()
    model.add(Dense(8, activation="relu", input_dim=5))
    model.add(Dense(1, activation="sigmoid"))
"""


def test_real_traced_stage(capsys, tmp_path):
    path = write(tmp_path, MLP)
    rc, out, err = run(capsys, "dump-ir", path, "--batch-size", "4")
    assert rc == 0, err
    assert out.startswith("graph @") and "f32[4,5]" in out and "f32[4,1]" in out
    from graphc.ir.parser import parse
    assert str(parse(out)) == out


def test_real_train_stage(capsys, tmp_path):
    path = write(tmp_path, textwrap.dedent(MLP) + 'model.compile(optimizer="sgd", loss="mse")\n')
    rc, out, err = run(capsys, "dump-ir", path, "--stage", "train", "--batch-size", "4")
    assert rc == 0, err
    assert out.startswith("graph @")


def test_real_train_stage_needs_compile(capsys, tmp_path):
    path = write(tmp_path, MLP)
    rc, _, err = run(capsys, "dump-ir", path, "--stage", "train")
    assert_one_line_error(rc, err, "compile")


def test_real_model_that_fails_to_trace(capsys, tmp_path):
    path = write(tmp_path, """\
        from graphc.layers import Dense, Input, Layer
        from graphc.models import Model

        class Broken(Layer):
            def call(self, inputs):
                raise ValueError("Broken layer cannot handle its input")

        inputs = Input(shape=(3,))
        model = Model(inputs, Dense(2)(Broken()(inputs)))
    """)
    rc, _, err = run(capsys, "dump-ir", path)
    assert_one_line_error(rc, err, "Broken layer cannot handle its input")


# ----------------------------------------------------------------------------- README

README_TEST_COMMAND = "pip install '.[test]' && python -m pytest -q"
README_MAIN_JOB = "python examples/digits_cnn.py"


def test_ci_runs_the_readme_commands():
    """The README's commands are the project's promise; CI must run exactly them."""
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"\n{README_TEST_COMMAND}\n" in readme
    assert f"({README_TEST_COMMAND})" in ci
    assert "pip install . && " + README_MAIN_JOB in readme
    assert f"\n{README_MAIN_JOB}\n" in ci


def _readme_block(after: str, lang: str = "") -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(f"```{lang}\n", readme.index(after)) + len(lang) + 4
    return readme[start:readme.index("```", start)]


def test_readme_ir_sample_is_current():
    sample = _readme_block("The first prints the forward graph")
    golden = (ROOT / "tests" / "golden" / "seed_mlp.traced.ir").read_text()
    assert sample == golden, "README.md's dump-ir sample differs from the golden file: copy " \
                             "tests/golden/seed_mlp.traced.ir into it"


def test_readme_usage_example_runs(capsys):
    code = _readme_block("## Usage", "python")
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["probabilities"].shape == (5, 1)
