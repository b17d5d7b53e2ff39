"""The Keras 3 ``.keras`` archive: a zip of ``metadata.json``
(``{"keras_version", "date_saved"}``; graphc adds ``graphc_version``), ``config.json`` (the
serialized model with its ``compile_config``) and ``model.weights.h5`` (the Keras 3
weights layout of ``graphc.saving.weights_h5``, optimizer state included). Members are
stored uncompressed, as Keras writes them.
"""
from __future__ import annotations

import datetime
import io
import zipfile

from graphc.saving import model_config, weights_h5
from graphc.saving.common import (KERAS_COMPAT_VERSION, graphc_version, parse_json, reading,
                                  to_json)
from graphc.saving.errors import FileFormatError

METADATA = "metadata.json"
CONFIG = "config.json"
WEIGHTS = "model.weights.h5"
WEIGHTS_NPZ = "model.weights.npz"

# A member that claims to expand to more than this many times its stored size (and to more
# than 4 GiB) is a zip bomb, not a model (Keras refuses the same).
_BOMB_FLOOR = 1 << 32
_BOMB_RATIO = 100


def model_json(model, include_optimizer: bool = True) -> str:
    from graphc.frontend.layers.serialization import serialize
    cfg = serialize(model)
    cfg["compile_config"] = (model_config.compile_config_for_saving(model)
                             if include_optimizer else None)
    return to_json(cfg)


def weights_bytes(model, include_optimizer: bool = True) -> bytes:
    import h5py
    bio = io.BytesIO()
    with h5py.File(bio, "w") as h5:
        weights_h5.write(h5, model, include_optimizer=include_optimizer)
    return bio.getvalue()


def save_model(model, target, include_optimizer: bool = True) -> None:
    """Write the archive to ``target`` (a path — the caller's temporary file — or a
    writable binary file object)."""
    config = model_json(model, include_optimizer)
    metadata = to_json({"keras_version": KERAS_COMPAT_VERSION,
                        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
                        "graphc_version": graphc_version()})
    weights = weights_bytes(model, include_optimizer)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(METADATA, metadata)
        zf.writestr(CONFIG, config)
        zf.writestr(WEIGHTS, weights)


def _member(zf: zipfile.ZipFile, name: str, source: str) -> bytes:
    info = zf.getinfo(name)
    if info.file_size > _BOMB_FLOOR and info.file_size > _BOMB_RATIO * max(1, info.compress_size):
        raise FileFormatError(f"{source}: member {name} claims {info.file_size} bytes from "
                              f"{info.compress_size} stored: refusing a zip bomb")
    return zf.read(name)


class Archive:
    """The parts of an opened ``.keras`` file."""

    def __init__(self, source_file, source: str):
        self.source = source
        with reading(f"{source} (a .keras zip archive)"):
            with zipfile.ZipFile(source_file, "r") as zf:
                names = zf.namelist()
                if CONFIG not in names:
                    raise FileFormatError(
                        f"{source} is a zip file but not a Keras model archive: it has no "
                        f"{CONFIG} (members: {', '.join(names[:10]) or 'none'})")
                self.config = parse_json(_member(zf, CONFIG, source), f"{source}: {CONFIG}")
                self.metadata = (parse_json(_member(zf, METADATA, source),
                                            f"{source}: {METADATA}")
                                 if METADATA in names else {})
                if WEIGHTS in names:
                    self.weights = _member(zf, WEIGHTS, source)
                elif WEIGHTS_NPZ in names:
                    raise FileFormatError(f"{source} stores its weights as {WEIGHTS_NPZ} "
                                          f"(weights_format='npz'), which graphc does not "
                                          f"read; re-save it with Keras' default format")
                else:
                    raise FileFormatError(f"{source} has no {WEIGHTS}: the archive is "
                                          f"incomplete (members: {', '.join(names)})")
        if not isinstance(self.config, dict):
            raise FileFormatError(f"{source}: {CONFIG} does not hold a serialized model")

    def open_weights(self):
        import h5py
        try:
            return h5py.File(io.BytesIO(self.weights), "r")
        except OSError as e:
            raise FileFormatError(f"{self.source}: {WEIGHTS} is not a readable HDF5 file: "
                                  f"the archive is truncated or corrupted ({e})") from e


def load_model(source_file, source: str, custom_objects=None, compile=True):  # noqa: A002
    archive = Archive(source_file, source)
    model = model_config.rebuild_model(archive.config, custom_objects, source)
    compile_config = archive.config.get("compile_config")
    if compile and compile_config:
        model_config.compile_model(model, compile_config, custom_objects, source)
    with archive.open_weights() as h5, reading(f"{source}: {WEIGHTS}"):
        assignments = weights_h5.plan(h5, model, f"{source} ({WEIGHTS})",
                                      load_optimizer=bool(compile and compile_config))
    weights_h5.assign(assignments)
    return model


def plan_weights(source_file, source: str, model, skip_mismatch=False, by_name=False):
    """``model.load_weights`` from a ``.keras`` archive (Keras 3 allows it)."""
    archive = Archive(source_file, source)
    with archive.open_weights() as h5, reading(f"{source}: {WEIGHTS}"):
        return weights_h5.plan(h5, model, f"{source} ({WEIGHTS})",
                               skip_mismatch=skip_mismatch, by_name=by_name)
