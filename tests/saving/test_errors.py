"""Users' mistakes and damaged files: clear ``GraphcError``s naming the file, layer, weight
and shapes; loads that fail change nothing; saves that fail leave the old file intact."""
from __future__ import annotations

import json
import os
import zipfile

import h5py
import numpy as np
import pytest

import graphc
from graphc import layers
from graphc.errors import GraphcError
from graphc.models import load_model
from graphc.saving import (ExistingFileError, FileFormatError, MissingFileError,
                           SavingError, UnknownObjectError, WeightsMismatchError, keras_zip,
                           legacy_h5, weights_h5)

from . import assert_same_arrays, fit_a_little, mlp


def small(units=(4, 3), name="small"):
    stack = [layers.Input((5,))] + [layers.Dense(u) for u in units]
    return graphc.Sequential(stack, name=name)


def snapshot(model):
    return [w.copy() for w in model.get_weights()]


# -- files that are not what they should be ---------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(MissingFileError, match="not found") as e:
        load_model(tmp_path / "nope.keras")
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, GraphcError)
    with pytest.raises(MissingFileError):
        small().load_weights(tmp_path / "nope.weights.h5")


@pytest.mark.parametrize("content", [b"", b"hello, this is not a model\n" * 20,
                                     b"\x00" * 4096])
def test_not_a_keras_file(tmp_path, content):
    p = tmp_path / "model.h5"
    p.write_bytes(content)
    with pytest.raises(FileFormatError) as e:
        load_model(p)
    assert isinstance(e.value, ValueError)
    assert "model.h5" in str(e.value)
    model = small()
    before = snapshot(model)
    with pytest.raises(FileFormatError):
        model.load_weights(p)
    assert_same_arrays(model.get_weights(), before)


def test_directory_is_not_a_model(tmp_path):
    (tmp_path / "saved_model").mkdir()
    with pytest.raises(FileFormatError, match="SavedModel"):
        load_model(tmp_path / "saved_model")


@pytest.mark.parametrize("ext", [".keras", ".h5", ".weights.h5"])
@pytest.mark.parametrize("keep", [0.3, 0.7, 0.95])
def test_truncated_files(tmp_path, ext, keep):
    model, xs, ys = mlp()
    fit_a_little(model, xs, ys)
    p = tmp_path / f"m{ext}"
    (model.save_weights if ext == ".weights.h5" else model.save)(p)
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * keep)])
    fresh, _, _ = mlp()
    before = snapshot(fresh)
    with pytest.raises(FileFormatError) as e:
        if ext == ".weights.h5":
            fresh.load_weights(p)
        else:
            load_model(p)
    assert str(p) in str(e.value)
    assert_same_arrays(fresh.get_weights(), before)


def test_corrupted_member_of_keras_archive(tmp_path):
    model, _, _ = mlp()
    p = tmp_path / "m.keras"
    model.save(p)
    data = bytearray(p.read_bytes())
    with zipfile.ZipFile(p) as zf:
        info = zf.getinfo("config.json")
    # Flip bytes inside the stored config.json: the CRC check must catch it.
    start = info.header_offset + 30 + len(info.filename) + 10
    data[start:start + 8] = b"########"
    p.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="corrupted"):
        load_model(p)


def test_zip_without_config(tmp_path):
    p = tmp_path / "m.keras"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(FileFormatError, match="config.json"):
        load_model(p)


def test_archive_with_bad_json_or_missing_weights(tmp_path):
    model, _, _ = mlp()
    good = tmp_path / "good.keras"
    model.save(good)
    with zipfile.ZipFile(good) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("config.json", b"{not json")
        zf.writestr("model.weights.h5", members["model.weights.h5"])
    with pytest.raises(FileFormatError, match="JSON"):
        load_model(bad)
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("config.json", members["config.json"])
    with pytest.raises(FileFormatError, match="model.weights.h5"):
        load_model(bad)
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("config.json", members["config.json"])
        zf.writestr("model.weights.h5", b"garbage" * 10)
    with pytest.raises(FileFormatError, match="model.weights.h5"):
        load_model(bad)


def test_weights_only_file_given_to_load_model(tmp_path):
    model = small()
    for name in ("w.weights.h5", "w.h5"):
        model.save_weights(tmp_path / name)
        with pytest.raises(FileFormatError, match="load_weights"):
            load_model(tmp_path / name)


def test_hdf5_without_keras_content(tmp_path):
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(FileFormatError, match="no Keras weights"):
        small().load_weights(tmp_path / "data.h5")
    with pytest.raises(FileFormatError, match="model config"):
        load_model(tmp_path / "data.h5")


# -- weights for another architecture -------------------------------------------------

def test_legacy_layer_count_mismatch_changes_nothing(tmp_path):
    small((4, 3)).save_weights(tmp_path / "w.h5")
    other = small((4, 3, 2))
    before = snapshot(other)
    with pytest.raises(WeightsMismatchError) as e:
        other.load_weights(tmp_path / "w.h5")
    msg = str(e.value)
    assert "layer count mismatch" in msg and "3 layer(s)" in msg and "has 2" in msg
    assert "No weights were changed" in msg
    assert isinstance(e.value, ValueError)
    assert_same_arrays(other.get_weights(), before)


@pytest.mark.parametrize("name", ["w.h5", "w.weights.h5", "w.keras"])
def test_shape_mismatch_names_layer_weight_and_shapes(tmp_path, name):
    saved = small((4, 3))
    if name.endswith(".keras"):
        saved.save(tmp_path / name)
    else:
        saved.save_weights(tmp_path / name)
    other = small((4, 6), name="other")          # the last layer differs
    before = snapshot(other)
    with pytest.raises(WeightsMismatchError) as e:
        other.load_weights(tmp_path / name)
    msg = str(e.value)
    last = other.layers[-1]
    assert last.name in msg and "kernel" in msg
    assert "(4, 6)" in msg and "(4, 3)" in msg
    # The first layer fit, but nothing was assigned: all checks come first.
    assert_same_arrays(other.get_weights(), before)


def test_keras3_layout_more_layers_in_file(tmp_path):
    small((4, 3, 2)).save_weights(tmp_path / "w.weights.h5")
    other = small((4, 3))
    before = snapshot(other)
    with pytest.raises(WeightsMismatchError, match="layers/dense_2/vars"):
        other.load_weights(tmp_path / "w.weights.h5")
    assert_same_arrays(other.get_weights(), before)


def test_keras3_layout_fewer_layers_in_file(tmp_path):
    small((4,)).save_weights(tmp_path / "w.weights.h5")
    other = small((4, 3))
    with pytest.raises(WeightsMismatchError, match="no group 'layers/dense_1/vars'"):
        other.load_weights(tmp_path / "w.weights.h5")


def test_keras3_layout_weight_count_mismatch(tmp_path):
    a = graphc.Sequential([layers.Input((5,)), layers.Dense(3, use_bias=False)])
    a.save_weights(tmp_path / "w.weights.h5")
    b = graphc.Sequential([layers.Input((5,)), layers.Dense(3)])
    with pytest.raises(WeightsMismatchError, match=r"expects 2 weight\(s\).*file has 1"):
        b.load_weights(tmp_path / "w.weights.h5")


def test_load_model_with_mismatching_weights_in_file(tmp_path):
    # A hand-edited archive: the config says 3 units, the weights hold 4.
    small((4, 3)).save(tmp_path / "a.keras")
    small((4, 4)).save(tmp_path / "b.keras")
    with zipfile.ZipFile(tmp_path / "a.keras") as za, zipfile.ZipFile(tmp_path / "b.keras") as zb:
        cfg, weights = za.read("config.json"), zb.read("model.weights.h5")
    with zipfile.ZipFile(tmp_path / "mixed.keras", "w") as zf:
        zf.writestr("config.json", cfg)
        zf.writestr("model.weights.h5", weights)
    with pytest.raises(WeightsMismatchError, match=r"\(4, 3\).*\(4, 4\)"):
        load_model(tmp_path / "mixed.keras")


def test_optimizer_state_for_another_optimizer_is_skipped_with_warning(tmp_path):
    model, xs, ys = mlp(optimizer="adam")
    fit_a_little(model, xs, ys)
    model.save_weights(tmp_path / "w.weights.h5")
    other, _, _ = mlp(optimizer="sgd")
    with pytest.warns(UserWarning, match="optimizer state"):
        other.load_weights(tmp_path / "w.weights.h5")
    assert_same_arrays(other.get_weights(), model.get_weights())   # weights still load
    assert int(other.optimizer.iterations) == 0


def test_unbuilt_model(tmp_path):
    small().save_weights(tmp_path / "w.weights.h5")
    unbuilt = graphc.Sequential([layers.Dense(4), layers.Dense(3)])
    with pytest.raises(SavingError, match="not built"):
        unbuilt.load_weights(tmp_path / "w.weights.h5")


# -- configs graphc cannot rebuild --------------------------------------------------

def _edit_config(src, dst, edit):
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    cfg = json.loads(members["config.json"])
    edit(cfg)
    members["config.json"] = json.dumps(cfg).encode()
    with zipfile.ZipFile(dst, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)


def test_unknown_layer_class(tmp_path):
    small().save(tmp_path / "m.keras")

    def rename(cfg):
        cfg["config"]["layers"][1]["class_name"] = "MysteryLayer"
    _edit_config(tmp_path / "m.keras", tmp_path / "u.keras", rename)
    with pytest.raises(UnknownObjectError) as e:
        load_model(tmp_path / "u.keras")
    assert "MysteryLayer" in str(e.value) and "custom_objects" in str(e.value)
    assert isinstance(e.value, ValueError) and isinstance(e.value, GraphcError)


def test_unknown_optimizer_and_bad_layer_config(tmp_path):
    model, _, _ = mlp()
    model.save(tmp_path / "m.keras")

    def bad_opt(cfg):
        cfg["compile_config"]["optimizer"]["class_name"] = "Lion9000"
    _edit_config(tmp_path / "m.keras", tmp_path / "o.keras", bad_opt)
    with pytest.raises(UnknownObjectError, match="(?i)lion9000"):
        load_model(tmp_path / "o.keras")
    assert not load_model(tmp_path / "o.keras", compile=False).compiled

    def bad_units(cfg):
        cfg["config"]["layers"][1]["config"]["units"] = "many"
    _edit_config(tmp_path / "m.keras", tmp_path / "b.keras", bad_units)
    with pytest.raises(SavingError, match="Cannot rebuild"):
        load_model(tmp_path / "b.keras")


# -- saving safely ------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["save_keras", "save_h5", "save_weights", "save_weights_h5"])
def test_overwrite_false(tmp_path, how):
    model = small()
    name = {"save_keras": "m.keras", "save_h5": "m.h5", "save_weights": "m.weights.h5",
            "save_weights_h5": "m_w.h5"}[how]
    p = tmp_path / name
    p.write_bytes(b"precious")
    with pytest.raises(ExistingFileError, match="overwrite") as e:
        if how.startswith("save_weights"):
            model.save_weights(p, overwrite=False)
        else:
            model.save(p, overwrite=False)
    assert isinstance(e.value, FileExistsError)
    assert p.read_bytes() == b"precious"
    (model.save_weights if how.startswith("save_weights") else model.save)(p, overwrite=True)
    assert p.read_bytes() != b"precious"


@pytest.mark.parametrize("target,module,attr,fail_at", [
    ("m.keras", weights_h5, "write", 1),
    ("m.keras", keras_zip, "model_json", 1),
    ("m.h5", legacy_h5, "write_optimizer", 1),
    ("m.weights.h5", weights_h5, "write", 1),
    ("m_w.h5", legacy_h5, "_write_subset", 2),
])
def test_failed_save_keeps_old_file(tmp_path, monkeypatch, target, module, attr, fail_at):
    model, xs, ys = mlp()
    fit_a_little(model, xs, ys)
    p = tmp_path / target
    save = model.save_weights if target.endswith(("weights.h5", "_w.h5")) else model.save
    save(p)
    old = p.read_bytes()
    old_weights = snapshot(model)
    fit_a_little(model, xs, ys)              # the model changes, then saving it fails
    real = getattr(module, attr)
    calls = {"n": 0}

    def fail_midway(*args, **kwargs):
        out = real(*args, **kwargs)          # part of the file is written...
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise OSError("No space left on device (simulated)")   # ...then the disk fills
        return out
    monkeypatch.setattr(module, attr, fail_midway)
    with pytest.raises(OSError, match="simulated"):
        save(p)
    assert p.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == [target]        # no temporary file left over
    monkeypatch.undo()
    fresh, _, _ = mlp()
    if target.endswith(("weights.h5", "_w.h5")):
        fresh.load_weights(p)
    else:
        fresh = load_model(p)
    assert_same_arrays(fresh.get_weights(), old_weights)


def test_interrupted_save_keeps_old_file(tmp_path, monkeypatch):
    model = small()
    p = tmp_path / "m.keras"
    model.save(p)
    old = p.read_bytes()

    def interrupt(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(keras_zip, "weights_bytes", interrupt)
    with pytest.raises(KeyboardInterrupt):
        model.save(p)
    assert p.read_bytes() == old and os.listdir(tmp_path) == ["m.keras"]


def test_save_paths(tmp_path):
    model = small()
    (tmp_path / "adir").mkdir()
    with pytest.raises(ExistingFileError, match="directory"):
        model.save(tmp_path / "adir")
    with pytest.raises(MissingFileError, match="does not exist"):
        model.save(tmp_path / "missing_dir" / "m.keras")
    with pytest.raises(SavingError, match=r"model\.save"):
        model.save_weights(tmp_path / "w.keras")


def test_save_keeps_permissions_of_a_normal_file(tmp_path):
    model = small()
    model.save(tmp_path / "m.keras")
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "m.keras").st_mode & 0o777 == 0o666 & ~umask


def test_save_through_symlink_updates_target(tmp_path):
    model = small()
    real = tmp_path / "real.keras"
    model.save(real)
    link = tmp_path / "link.keras"
    link.symlink_to(real)
    small(name="second").save(link)
    assert link.is_symlink()
    assert load_model(link).name == "second"


def test_overwrite_false_when_the_file_appears_during_the_save(tmp_path, monkeypatch):
    model = small()
    p = tmp_path / "m.keras"
    real = keras_zip.weights_bytes

    def competitor_writes_first(*args, **kwargs):
        p.write_bytes(b"theirs")
        return real(*args, **kwargs)
    monkeypatch.setattr(keras_zip, "weights_bytes", competitor_writes_first)
    with pytest.raises(ExistingFileError):
        model.save(p, overwrite=False)
    assert p.read_bytes() == b"theirs" and os.listdir(tmp_path) == ["m.keras"]
