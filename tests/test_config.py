"""graphc.config: default-target precedence (env > set_default_target > built-in), errors."""
import pytest

from graphc import config
from graphc.errors import TargetError


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    config.set_default_target(None)
    yield
    config.set_default_target(None)


def test_builtin_default():
    assert config.default_target() == config.BUILTIN_DEFAULT
    assert config.BUILTIN_DEFAULT in config.KNOWN_TARGETS


def test_known_targets():
    assert config.KNOWN_TARGETS == ("reference", "cpu", "cuda")


def test_set_default_target_and_reset():
    config.set_default_target("cuda")
    assert config.default_target() == "cuda"
    config.set_default_target(" CPU ")        # case and blanks do not matter
    assert config.default_target() == "cpu"
    config.set_default_target(None)
    assert config.default_target() == config.BUILTIN_DEFAULT


def test_environment_wins(monkeypatch):
    config.set_default_target("cpu")
    monkeypatch.setenv(config.ENV_VAR, "cuda")
    assert config.default_target() == "cuda"
    monkeypatch.setenv(config.ENV_VAR, "")    # empty counts as unset
    assert config.default_target() == "cpu"


def test_unknown_name_lists_known_ones():
    with pytest.raises(TargetError, match="tpu.*reference, cpu, cuda"):
        config.set_default_target("tpu")
    assert config.default_target() == config.BUILTIN_DEFAULT   # unchanged by the failure
    with pytest.raises(ValueError):           # TargetError is a ValueError, as in Keras
        config.set_default_target(3)


def test_unknown_environment_value(monkeypatch):
    monkeypatch.setenv(config.ENV_VAR, "gpu")
    with pytest.raises(TargetError, match="GRAPHC_TARGET.*known targets"):
        config.default_target()


def test_available_targets():
    avail = config.available_targets()
    assert "reference" in avail
    assert set(avail) <= set(config.KNOWN_TARGETS)
    assert list(avail) == [t for t in config.KNOWN_TARGETS if t in avail]


def test_resolve_target(monkeypatch):
    assert config.resolve_target() == config.default_target()
    assert config.resolve_target("reference") == "reference"
    with pytest.raises(TargetError, match="known targets"):
        config.resolve_target("tpu")
    monkeypatch.setattr(config, "_backend_available", lambda name: name == "reference")
    with pytest.raises(TargetError, match="not available.*available targets: reference"):
        config.resolve_target("cuda")


def test_available_targets_asks_the_backends(monkeypatch):
    from graphc.runtime import backends

    class Probe:
        def __init__(self, ok):
            self.ok = ok

        def is_available(self):
            return self.ok

    def get_backend(name):
        if name == "cpu":
            raise TargetError("not implemented")
        return Probe(name == "reference")

    monkeypatch.setattr(backends, "get_backend", get_backend)
    assert config.available_targets() == ("reference",)
