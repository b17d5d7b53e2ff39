"""The layers of ``graphc.layers`` (Keras names), plus ``Input``/``InputLayer``/``InputSpec``
and the serialization helpers ``serialize``/``deserialize``."""
from graphc.frontend.layers.base import InputSpec, Layer  # noqa: F401
from graphc.frontend.layers.input_layer import Input, InputLayer  # noqa: F401
from graphc.frontend.layers.core import (Activation, Dense, Dropout, Identity,  # noqa: F401
                                         Lambda, TFOpLambda)
from graphc.frontend.layers.reshaping import (Cropping1D, Cropping2D, Flatten,  # noqa: F401
                                              Reshape, UpSampling1D, UpSampling2D,
                                              ZeroPadding1D, ZeroPadding2D)
from graphc.frontend.layers.conv import (Conv1D, Conv1DTranspose, Conv2D,  # noqa: F401
                                         Conv2DTranspose, Convolution1D,
                                         Convolution1DTranspose, Convolution2D,
                                         Convolution2DTranspose, DepthwiseConv1D,
                                         DepthwiseConv2D, SeparableConv1D, SeparableConv2D,
                                         SeparableConvolution1D, SeparableConvolution2D)
from graphc.frontend.layers.pooling import (AveragePooling1D, AveragePooling2D,  # noqa: F401
                                            AvgPool1D, AvgPool2D, GlobalAveragePooling1D,
                                            GlobalAveragePooling2D, GlobalAvgPool1D,
                                            GlobalAvgPool2D, GlobalMaxPool1D, GlobalMaxPool2D,
                                            GlobalMaxPooling1D, GlobalMaxPooling2D,
                                            MaxPool1D, MaxPool2D, MaxPooling1D, MaxPooling2D)
from graphc.frontend.layers.merging import (Add, Average, Concatenate, Maximum,  # noqa: F401
                                            Minimum, Multiply, Subtract, add, average,
                                            concatenate, maximum, minimum, multiply,
                                            subtract)
from graphc.frontend.layers.serialization import deserialize, serialize  # noqa: F401
from graphc.frontend.layers.normalization import (BatchNormalization,  # noqa: F401
                                                  LayerNormalization)
from graphc.frontend.layers.activation_layers import (ELU, LeakyReLU, PReLU,  # noqa: F401
                                                      ReLU, Softmax)
from graphc.frontend.layers.misc import (ActivityRegularization, Dot,  # noqa: F401
                                         GaussianDropout, GaussianNoise, Permute,
                                         RepeatVector, SpatialDropout1D, SpatialDropout2D,
                                         SpatialDropout3D, dot)
from graphc.frontend.layers.embedding import Embedding  # noqa: F401
from graphc.frontend.layers.recurrent import (GRU, LSTM, RNN, Bidirectional,  # noqa: F401
                                              GRUCell, LSTMCell, SimpleRNN, SimpleRNNCell)
