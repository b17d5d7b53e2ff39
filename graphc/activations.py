"""``graphc.activations``: Keras activation functions (see ``graphc.frontend.activations``)."""
from graphc.frontend.activations import (  # noqa: F401
    deserialize, elu, exponential, gelu, get, hard_sigmoid, hard_silu, leaky_relu, linear,
    log_softmax, mish, relu, relu6, selu, serialize, sigmoid, silu, softmax, softplus,
    softsign, swish, tanh)

hard_swish = hard_silu
