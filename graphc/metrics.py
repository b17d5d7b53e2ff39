"""``graphc.metrics``: Keras metrics (see ``graphc.frontend.metrics``)."""
from graphc.frontend.metrics import (  # noqa: F401
    MAE, MAPE, MSE, MSLE, Accuracy, BinaryAccuracy, BinaryCrossentropy, CategoricalAccuracy,
    CategoricalCrossentropy, CategoricalHinge, Hinge, KLDivergence, LogCoshError,
    MeanAbsoluteError, MeanAbsolutePercentageError, MeanMetricWrapper, MeanSquaredError,
    MeanSquaredLogarithmicError, Metric, Poisson, RootMeanSquaredError,
    SparseCategoricalAccuracy, SparseCategoricalCrossentropy, SparseTopKCategoricalAccuracy,
    SquaredHinge, TopKCategoricalAccuracy, accuracy, binary_accuracy, binary_crossentropy,
    categorical_accuracy, categorical_crossentropy, categorical_hinge, deserialize, get,
    hinge, kl_divergence, log_cosh, mae, mape, mean_absolute_error,
    mean_absolute_percentage_error, mean_squared_error, mean_squared_logarithmic_error, mse,
    msle, poisson, serialize, sparse_categorical_accuracy, sparse_categorical_crossentropy,
    sparse_top_k_categorical_accuracy, squared_hinge, top_k_categorical_accuracy)
