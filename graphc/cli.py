"""``python -m graphc``: look at what the compiler does to a model, from the shell.

``dump-ir model.py --stage traced|train|optimized`` prints the IR of a model defined in a
Python file (as ``model`` or ``build_model()``); ``version`` prints the version. Mistakes
(missing file, no model, a file that raises, a model that does not trace) end in one
``graphc: error: ...`` line on stderr and exit status 2; ``--traceback`` shows the full story.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
import traceback
from types import ModuleType

PROG = "graphc"
EXIT_ERROR = 2   # argparse's status for usage errors; dump-ir uses it for every failure

# Kept here, not read from graphc.passes.pipeline.STAGES, so that --help does not import
# the compiler; test_cli checks that the two agree.
GRAPH_STAGES = ("traced", "train", "optimized")
# 'llvm' prints the optimized LLVM IR of the cpu target (it depends on the host CPU's
# features, so it has no golden files); 'cuda' the generated CUDA kernels and launch plan.
STAGES = GRAPH_STAGES + ("llvm", "cuda")

# The name model files run under: anything but "__main__", so that training code under
# ``if __name__ == "__main__":`` in an example does not run when its IR is dumped.
MODEL_MODULE_NAME = "__graphc_model__"


class CLIError(Exception):
    """A failure to report as one line (the message) and exit status 2."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _describe(exc: BaseException, path: str | None = None) -> str:
    """``Type: message`` prefixed by where the user should look: ``path:line: `` (the
    innermost frame in ``path``) or ``path: ``, when a ``path`` is given."""
    where = f"{path}: " if path is not None else ""
    if isinstance(exc, SyntaxError) and path is not None and exc.lineno:
        # The traceback of a SyntaxError ends before the file; the error knows the line.
        return f"{path}:{exc.lineno}: {type(exc).__name__}: {_one_line(exc.msg)}"
    if path is not None:
        target = os.path.abspath(path)
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if os.path.abspath(frame.filename) == target:
                where = f"{path}:{frame.lineno}: "
                break
    msg = _one_line(exc)
    return f"{where}{type(exc).__name__}" + (f": {msg}" if msg else "")


def _fresh_session() -> None:
    """Make a dump independent of what ran before in this process (golden tests run many
    in one pytest process): seed 0, and layer auto-naming reset (as Keras'
    ``clear_session``) so that names start again at ``dense``."""
    from graphc.frontend.layers.base import reset_name_counters
    from graphc.frontend.seeding import set_random_seed
    set_random_seed(0)
    reset_name_counters()


def load_model_file(path: str):
    """Run ``path`` as a module named ``__graphc_model__`` and return its model: the
    ``model`` it defines, else what its ``build_model()`` returns."""
    if not os.path.exists(path):
        raise CLIError(f"no such file: {path}")
    if os.path.isdir(path):
        raise CLIError(f"{path} is a directory, not a Python file")
    spec = importlib.util.spec_from_file_location(MODEL_MODULE_NAME, path)
    if spec is None or spec.loader is None:
        raise CLIError(f"cannot load {path} as Python (expected a .py file)")
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(os.path.abspath(path))
    # As `python model.py` would: its folder is importable (sibling helper modules), and
    # its prints go to stderr so that stdout carries nothing but the IR.
    sys.path.insert(0, folder)
    sys.modules[MODEL_MODULE_NAME] = module     # dataclasses, pickle look the module up
    try:
        with contextlib.redirect_stdout(sys.stderr):
            try:
                spec.loader.exec_module(module)
            except (Exception, SystemExit) as exc:
                raise CLIError(_describe(exc, path)) from exc
            model = getattr(module, "model", None)
            if model is None:
                build = getattr(module, "build_model", None)
                if not callable(build):
                    raise CLIError(f"{path} defines neither `model` nor `build_model()`")
                try:
                    model = build()
                except (Exception, SystemExit) as exc:
                    raise CLIError(f"build_model() failed: {_describe(exc, path)}") from exc
                if model is None:
                    raise CLIError(f"build_model() in {path} returned None, not a model")
    finally:
        sys.modules.pop(MODEL_MODULE_NAME, None)
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    return model


def _build_stage(model, stage: str, batch_size: int):
    # Imported here: the compiler is only needed once a model is loaded.
    from graphc.passes.pipeline import build_stage
    if stage == "llvm":
        from graphc.codegen.cpu.dump import llvm_ir
        return llvm_ir(build_stage(model, "optimized", batch_size))
    if stage == "cuda":
        from graphc.codegen.cuda.dump import cuda_source
        return cuda_source(build_stage(model, "optimized", batch_size))
    return build_stage(model, stage, batch_size)


def dump_ir(path: str, stage: str = "traced", batch_size: int = 32) -> str:
    """The IR text of the model in ``path`` at ``stage``; raises ``CLIError``."""
    _fresh_session()
    model = load_model_file(path)
    try:
        graph = _build_stage(model, stage, batch_size)
    except Exception as exc:
        raise CLIError(f"cannot build the {stage} stage of {path}: {_describe(exc)}") from exc
    return str(graph)


# ----------------------------------------------------------------------------- commands

def _cmd_dump_ir(args) -> int:
    text = dump_ir(args.model, args.stage, args.batch_size)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            raise CLIError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    else:
        sys.stdout.write(text)
    return 0


def version_string() -> str:
    import platform

    import numpy

    import graphc
    return (f"graphc {graphc.__version__} (python {platform.python_version()}, "
            f"numpy {numpy.__version__})")


def _cmd_version(args) -> int:
    print(version_string())
    return 0


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="graphc: a static-graph compiler for Keras-style models.",
        epilog="Run 'python -m graphc COMMAND --help' for a command's options.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    dump = sub.add_parser(
        "dump-ir", help="print a model's IR at one compiler stage",
        description="Print the IR of the model defined in MODEL_FILE (a variable `model`, "
                    "or a function `build_model()` returning one). The file runs with "
                    "__name__ != '__main__', so its training code under "
                    "`if __name__ == '__main__':` does not run. The train and optimized "
                    "stages need a compiled model (model.compile(...) in the file).")
    dump.add_argument("model", metavar="MODEL_FILE", help="Python file defining the model")
    dump.add_argument("--stage", choices=STAGES, default="traced",
                      help="traced: forward graph as traced; train: forward + loss + "
                           "backward + optimizer update; optimized: train after "
                           "decomposition and simplification, annotated with its fused "
                           "kernels; llvm: the cpu target's LLVM IR; cuda: the cuda "
                           "target's kernels and launch plan (default: %(default)s)")
    dump.add_argument("--batch-size", type=_positive_int, default=32, metavar="N",
                      help="static batch size of the graph (default: %(default)s)")
    dump.add_argument("--output", "-o", metavar="FILE",
                      help="write the IR to FILE instead of stdout")
    dump.add_argument("--traceback", action="store_true",
                      help="on error, show the full Python traceback (for bug reports)")
    dump.set_defaults(func=_cmd_dump_ir)

    ver = sub.add_parser("version", help="print graphc's version",
                         description="Print the versions of graphc, Python and numpy.")
    ver.set_defaults(func=_cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status instead of exiting (for tests)."""
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:       # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    try:
        return args.func(args)
    except CLIError as exc:
        if getattr(args, "traceback", False):
            traceback.print_exception(exc.__cause__ or exc, file=sys.stderr)
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
