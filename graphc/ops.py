"""``graphc.ops``: tensor functions for custom layers, ``Lambda`` and losses (see
``graphc.frontend.ops``)."""
from graphc.frontend.ops import *  # noqa: F401,F403
from graphc.frontend.ops import apply  # noqa: F401
