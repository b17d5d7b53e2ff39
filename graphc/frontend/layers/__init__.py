"""The layers of ``graphc.layers`` (Keras names), plus ``Input``/``InputLayer``/``InputSpec``
and the serialization helpers ``serialize``/``deserialize``."""
from graphc.frontend.layers.base import InputSpec, Layer  # noqa: F401
from graphc.frontend.layers.input_layer import Input, InputLayer  # noqa: F401
from graphc.frontend.layers.core import (Activation, Dense, Dropout, Identity,  # noqa: F401
                                         Lambda, TFOpLambda)
from graphc.frontend.layers.reshaping import Flatten, Reshape  # noqa: F401
from graphc.frontend.layers.conv import Conv2D, Convolution2D  # noqa: F401
from graphc.frontend.layers.pooling import (AveragePooling2D, AvgPool2D,  # noqa: F401
                                            GlobalAveragePooling2D, GlobalAvgPool2D,
                                            GlobalMaxPool2D, GlobalMaxPooling2D,
                                            MaxPool2D, MaxPooling2D)
from graphc.frontend.layers.merging import (Add, Average, Concatenate, Maximum,  # noqa: F401
                                            Minimum, Multiply, Subtract, add, average,
                                            concatenate, maximum, minimum, multiply,
                                            subtract)
from graphc.frontend.layers.serialization import deserialize, serialize  # noqa: F401
