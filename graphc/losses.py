"""``graphc.losses``: Keras losses (see ``graphc.frontend.losses``)."""
from graphc.frontend.losses import (  # noqa: F401
    BCE, KLD, MAE, MAPE, MSE, MSLE, BinaryCrossentropy, CategoricalCrossentropy,
    CategoricalHinge, Hinge, Huber, KLDivergence, LogCosh, Loss, LossFunctionWrapper,
    MeanAbsoluteError, MeanAbsolutePercentageError, MeanSquaredError,
    MeanSquaredLogarithmicError, Poisson, SparseCategoricalCrossentropy, SquaredHinge,
    binary_crossentropy, categorical_crossentropy, categorical_hinge, deserialize, get,
    hinge, huber, kl_divergence, kld, kullback_leibler_divergence, log_cosh, logcosh, mae,
    mape, mean_absolute_error, mean_absolute_percentage_error, mean_squared_error,
    mean_squared_logarithmic_error, mse, msle, poisson, serialize,
    sparse_categorical_crossentropy, squared_hinge)
