"""Plumbing shared by the savers: atomic file replacement, format sniffing, Keras' chunked
HDF5 string attributes, JSON encoding of configs, and turning low-level read errors
(h5py ``OSError``s, ``zipfile.BadZipFile``) into ``FileFormatError``s that name the file.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import zipfile

import numpy as np

from graphc.saving.errors import ExistingFileError, FileFormatError, MissingFileError

#: The Keras release whose file layouts graphc writes (``keras_version`` in the files).
KERAS_COMPAT_VERSION = "3.15.1"

#: HDF5 keeps attributes in the object header, which holds 64 KiB; Keras splits longer
#: string lists into ``name0``, ``name1``, ... (``save_attributes_to_hdf5_group``).
HDF5_OBJECT_HEADER_LIMIT = 64512

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def graphc_version() -> str:
    import graphc
    return graphc.__version__


# --------------------------------------------------------------------------------------
# Writing: a temporary file beside the target, then os.replace
# --------------------------------------------------------------------------------------

def _fsync_path(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def target_path(filepath) -> str:
    """``filepath`` as a string; a symlink is followed so the save replaces its target
    (replacing the link itself would silently detach it)."""
    path = os.fspath(filepath)
    if os.path.islink(path):
        path = os.path.realpath(path)
    return path


@contextlib.contextmanager
def atomic_write(filepath, overwrite: bool = True):
    """Yield a temporary path in the target's directory; when the block succeeds, the
    temporary file atomically replaces ``filepath``. If anything fails (an exception, a
    crash, a full disk), the old file is left untouched and the temporary one removed."""
    path = target_path(filepath)
    if os.path.isdir(path):
        raise ExistingFileError(f"Cannot save to {path!r}: it is a directory (graphc writes "
                                f"single files: use a '.keras' or '.h5' file name)")
    if not overwrite and os.path.exists(path):
        raise ExistingFileError(f"{path!r} already exists and overwrite=False; pass "
                                f"overwrite=True to replace it, or choose another name")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise MissingFileError(f"Cannot save to {path!r}: directory {directory!r} does not "
                               f"exist")
    base = os.path.basename(path)
    while True:
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(4)}.tmp")
        try:
            # O_EXCL: never clobber another writer's temp file; mode 0o666 lets the umask
            # give the file the permissions a plain open() would (mkstemp would use 0600).
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        break
    try:
        yield tmp
        _fsync_path(tmp)
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_no_clobber(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_path(directory)


def _link_no_clobber(tmp: str, path: str) -> None:
    """Move ``tmp`` to ``path`` unless ``path`` exists (also if another process created it
    while we were writing): a hard link fails instead of replacing."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise ExistingFileError(f"{path!r} already exists and overwrite=False (it appeared "
                                f"while saving); the new file was not written") from None
    except OSError:
        # No hard links on this file system: fall back to check-then-replace.
        if os.path.exists(path):
            raise ExistingFileError(f"{path!r} already exists and overwrite=False") from None
        os.replace(tmp, path)
        return
    os.remove(tmp)


# --------------------------------------------------------------------------------------
# Reading: what kind of file is this?
# --------------------------------------------------------------------------------------

def sniff(filepath) -> str:
    """``'zip'`` (a ``.keras`` archive) or ``'hdf5'``, decided by the content, not the
    name; raises ``MissingFileError``/``FileFormatError`` otherwise."""
    if hasattr(filepath, "read"):
        pos = filepath.tell() if hasattr(filepath, "tell") else None
        head = filepath.read(8)
        if pos is not None:
            filepath.seek(pos)
        if head[:4] in _ZIP_MAGIC:
            return "zip"
        if head == _HDF5_MAGIC:
            return "hdf5"
        raise FileFormatError(f"{_describe(filepath)} is neither a .keras zip archive nor an "
                              f"HDF5 file (it starts with {head!r})")
    path = os.fspath(filepath)
    if os.path.isdir(path):
        raise FileFormatError(
            f"{path!r} is a directory. graphc reads .keras archives and .h5 files; a "
            f"TensorFlow SavedModel directory cannot be loaded (re-save the model with "
            f"Keras as 'model.keras' or 'model.h5')")
    if not os.path.exists(path):
        raise MissingFileError(f"File not found: {path!r}")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise FileFormatError(f"Cannot read {path!r}: {e}") from e
    if not head:
        raise FileFormatError(f"{path!r} is empty (0 bytes): the save that wrote it did not "
                              f"finish, or the file was truncated")
    if head[:4] in _ZIP_MAGIC:
        return "zip"
    if head == _HDF5_MAGIC:
        return "hdf5"
    import h5py
    try:
        if h5py.is_hdf5(path):      # HDF5 with a user block: signature at 512, 1024, ...
            return "hdf5"
    except OSError:
        pass
    raise FileFormatError(f"{path!r} is neither a .keras zip archive nor an HDF5 (.h5) file "
                          f"(it starts with {head!r}); it may be corrupted or of another "
                          f"format")


def _describe(filepath) -> str:
    if hasattr(filepath, "read"):
        return repr(getattr(filepath, "name", filepath))
    return repr(os.fspath(filepath))


def open_h5(filepath, mode="r"):
    """``h5py.File`` with read errors turned into ``FileFormatError``."""
    import h5py
    try:
        return h5py.File(filepath, mode)
    except OSError as e:
        raise FileFormatError(f"Cannot open {_describe(filepath)} as HDF5: the file is "
                              f"truncated or corrupted ({e})") from e


@contextlib.contextmanager
def reading(what: str):
    """Wrap the low-level errors of reading a file's content into ``FileFormatError``."""
    try:
        yield
    except (OSError, KeyError, zipfile.BadZipFile, EOFError) as e:
        from graphc.saving.errors import SavingError
        if isinstance(e, SavingError):
            raise
        raise FileFormatError(f"{what}: the file is truncated or corrupted "
                              f"({type(e).__name__}: {e})") from e


# --------------------------------------------------------------------------------------
# HDF5 string-list attributes (Keras' legacy helpers)
# --------------------------------------------------------------------------------------

def save_attribute_list(group, name: str, data: list[str]) -> None:
    """Keras' ``save_attributes_to_hdf5_group``: utf-8 strings, split into ``name0``,
    ``name1``, ... when they do not fit in one object header."""
    encoded = [s.encode("utf8") for s in data]
    too_long = [s for s in encoded if len(s) > HDF5_OBJECT_HEADER_LIMIT]
    if too_long:
        raise FileFormatError(f"Cannot save attribute {name!r}: entries longer than "
                              f"{HDF5_OBJECT_HEADER_LIMIT} bytes: {too_long[:3]}")
    arr = np.asarray(encoded) if encoded else np.asarray([], dtype=np.float64)
    chunks = [arr]
    n = 1
    while any(c.nbytes > HDF5_OBJECT_HEADER_LIMIT for c in chunks):
        n += 1
        chunks = np.array_split(arr, n)
    if n > 1:
        for i, c in enumerate(chunks):
            group.attrs[f"{name}{i}"] = c
    else:
        # A list (not an 'S' array) is what Keras passes: h5py stores variable-length strings.
        group.attrs[name] = encoded


def load_attribute_list(group, name: str) -> list[str]:
    """Inverse of ``save_attribute_list`` (also reads the chunked form)."""
    def decode(values):
        return [v.decode("utf8") if isinstance(v, bytes) else str(v)
                for v in np.asarray(values).reshape(-1)]

    if name in group.attrs:
        return decode(group.attrs[name])
    out: list[str] = []
    i = 0
    while f"{name}{i}" in group.attrs:
        out.extend(decode(group.attrs[f"{name}{i}"]))
        i += 1
    return out


def attr_str(obj, name: str, default=None):
    v = obj.attrs.get(name, default)
    if isinstance(v, bytes):
        return v.decode("utf8")
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v.item()
        return v.decode("utf8") if isinstance(v, bytes) else v
    return v


def read_dataset(ds) -> np.ndarray:
    """A dataset as a numpy array; Keras' bfloat16 (``dtype="bfloat16"`` attribute, raw
    16-bit payload) is widened to float32, which holds every bfloat16 exactly."""
    value = np.asarray(ds[()])
    if attr_str(ds, "dtype") == "bfloat16" and value.dtype.itemsize == 2:
        bits = value.view(np.uint16).astype(np.uint32) << 16
        value = bits.view(np.float32)
    return value


# --------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------

def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if hasattr(obj, "get_config"):
        return {"module": type(obj).__module__, "class_name": type(obj).__name__,
                "config": obj.get_config(), "registered_name": None}
    if callable(obj) and hasattr(obj, "__name__"):
        return obj.__name__
    from graphc.saving.errors import SavingError
    raise SavingError(f"Cannot save the model config: a value of type "
                      f"{type(obj).__name__} ({obj!r}) is not JSON serializable; make the "
                      f"layer's get_config() return plain Python values")


def to_json(obj) -> str:
    return json.dumps(obj, default=_json_default)


def parse_json(text, what: str):
    try:
        if isinstance(text, bytes):
            text = text.decode("utf8")
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FileFormatError(f"{what} is not valid JSON: the file is corrupted ({e})") \
            from e
