"""``graphc.callbacks``: Keras' callbacks under Keras' names (``from keras.callbacks
import EarlyStopping`` → ``from graphc.callbacks import EarlyStopping``)."""
from graphc.runtime.callbacks import (  # noqa: F401
    CSVLogger,
    Callback,
    CallbackList,
    EarlyStopping,
    History,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ProgbarLogger,
    ReduceLROnPlateau,
    TerminateOnNaN,
)

__all__ = ["Callback", "CallbackList", "History", "ProgbarLogger", "EarlyStopping",
           "ModelCheckpoint", "LambdaCallback", "TerminateOnNaN", "CSVLogger",
           "ReduceLROnPlateau", "LearningRateScheduler"]
