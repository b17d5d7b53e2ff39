"""``graphc.layers``: Keras' ``keras.layers`` face (layers, ``Input``, ``InputLayer``)."""
from graphc.frontend.layers import *  # noqa: F401,F403
from graphc.frontend.layers import (Input, InputLayer, InputSpec, Layer,  # noqa: F401
                                    deserialize, serialize)
