"""The runtime: executables, the fit/evaluate/predict loops, callbacks, progress."""


def compile_model(model, target=None):
    from graphc.runtime.executable import compile_model as _compile
    return _compile(model, target)
