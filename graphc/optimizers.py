"""``graphc.optimizers``: Keras optimizers (see ``graphc.frontend.optimizers``), with
``graphc.optimizers.schedules`` for learning-rate schedules."""
import sys as _sys

from graphc.frontend import schedules  # noqa: F401
from graphc.frontend.optimizers import (  # noqa: F401
    SGD, Adadelta, Adagrad, Adam, AdamW, Optimizer, RMSprop, deserialize, get, serialize)

# ``import graphc.optimizers.schedules`` / ``from graphc.optimizers.schedules import ...``
# need a module under that name; this module is a file, not a package.
_sys.modules.setdefault(__name__ + ".schedules", schedules)
