"""The CUDA backend: every kernel of the shared kernel form rendered as Python source of a
``numba.cuda`` kernel, compiled with ``cuda.jit`` and launched from a step callable that
keeps parameters and optimizer state on the device.

``source`` renders loop kernels (elementwise and reductions), ``templates`` the contraction
and window ops, ``program`` turns a whole ``Program`` into compiled kernels with launch
configurations, ``backend`` is the ``cuda`` target, ``dump`` the text of
``dump-ir --stage cuda``. Importing this package imports neither numba nor a driver.
"""
from __future__ import annotations

import os
import sys

NO_GPU_MESSAGE = ("target 'cuda' needs an NVIDIA GPU (none found); use target='cpu', or set "
                  "NUMBA_ENABLE_CUDASIM=1 before importing graphc to run the CUDA simulator")


def simulator_enabled() -> bool:
    """Whether numba's CUDA simulator is (or, once numba is imported, will be) active.

    Numba reads ``NUMBA_ENABLE_CUDASIM`` once, at its first import; after that its own
    config is the truth, before it the environment is."""
    if "numba" in sys.modules:
        try:
            from numba.cuda.core import config
            return bool(config.ENABLE_CUDASIM)
        except ImportError:         # an older numba-cuda layout
            from numba import config
            return bool(getattr(config, "ENABLE_CUDASIM", 0))
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0").strip() not in ("", "0")


def is_available() -> bool:
    """Whether the cuda target can run here: a usable GPU, or the simulator."""
    import importlib.util
    if importlib.util.find_spec("numba") is None:
        return False
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:   # a broken driver install is "not available", not a crash
        return False
