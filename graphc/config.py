"""Process-wide settings: which compilation target a model gets when none is named.

Precedence, highest first: the ``GRAPHC_TARGET`` environment variable, then
``set_default_target(...)``, then the built-in default. An explicit ``target=`` argument
(``graphc.compile(model, target=...)``) overrides all of these; ``resolve_target`` applies
the whole rule.
"""
from __future__ import annotations

import os

from graphc.errors import TargetError

KNOWN_TARGETS = ("reference", "cpu", "cuda")
ENV_VAR = "GRAPHC_TARGET"

# LLVM machine code for the host; "reference" stays available as the oracle.
BUILTIN_DEFAULT = "cpu"

_default: str | None = None


def _check(name, source: str) -> str:
    """Normalize a target name (case and surrounding blanks do not matter) or raise."""
    norm = name.strip().lower() if isinstance(name, str) else name
    if norm not in KNOWN_TARGETS:
        raise TargetError(f"unknown target {name!r} ({source}); "
                          f"known targets: {', '.join(KNOWN_TARGETS)}")
    return norm


def set_default_target(name: str | None) -> None:
    """Make ``name`` the target of models compiled without one; ``None`` restores the
    built-in default. ``GRAPHC_TARGET``, when set, still wins."""
    global _default
    _default = None if name is None else _check(name, "set_default_target")


def default_target() -> str:
    """The target a model gets when none is named (see the module docstring)."""
    env = os.environ.get(ENV_VAR, "")
    if env.strip():
        return _check(env, f"from the {ENV_VAR} environment variable")
    return _default if _default is not None else BUILTIN_DEFAULT


def _backend_available(name: str) -> bool:
    # The runtime's backend registry is the truth about what graphc can run; a backend
    # object may also say whether this machine can run it (is_available(): e.g. a GPU is
    # present). Looked up on demand: a backend can be slow to import (numba for cuda).
    from graphc.runtime.backends import get_backend
    try:
        backend = get_backend(name)
    except Exception:   # not registered, or it cannot start here: either way, unavailable
        return False
    probe = getattr(backend, "is_available", None)
    return bool(probe()) if callable(probe) else True


def available_targets() -> tuple[str, ...]:
    """The known targets that can run on this machine, in ``KNOWN_TARGETS`` order."""
    return tuple(t for t in KNOWN_TARGETS if _backend_available(t))


def resolve_target(target: str | None = None) -> str:
    """The target to compile for: ``target`` if given, else ``default_target()``.

    Raises ``TargetError`` if the name is unknown or its backend cannot run here.
    """
    name = default_target() if target is None else _check(target, "target=")
    if not _backend_available(name):
        raise TargetError(f"target {name!r} is not available on this machine; "
                          f"available targets: {', '.join(available_targets())}")
    return name
