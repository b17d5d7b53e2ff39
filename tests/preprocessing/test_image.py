"""``graphc.preprocessing.image``: file round trips, ``flow_from_directory`` (discovery,
order, labels, batches, subsets, errors), every augmentation against an expectation built
independently (numpy slicing/rolling/padding, or values from Keras + scipy), the
normalization statistics, seeding, and ``model.fit`` on a generator."""
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from graphc.errors import DataError, UnknownNameError
from graphc.layers import Conv2D, Dense, Flatten
from graphc.models import Sequential
from graphc.preprocessing import image_dataset_from_directory
from graphc.preprocessing.image import (DirectoryIterator, ImageDataGenerator,
                                        apply_affine_transform, array_to_img, img_to_array,
                                        load_img, save_img)
from graphc.utils import set_random_seed

H, W = 6, 8          # non-square on purpose: catches (height, width) mix-ups


def _png(path, value, size=(H, W)):
    """A uniform RGB PNG whose pixel value identifies it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full(size + (3,), value, np.uint8), "RGB").save(path)


@pytest.fixture
def image_dir(tmp_path):
    """``dogs`` (5 images, values 100..104) and ``cats`` (3 images, values 10..12); the
    sorted order puts cats first. A text file and a nested folder test the listing."""
    root = tmp_path / "train"
    for i in range(5):
        _png(str(root / "dogs" / f"d{i}.png"), 100 + i)
    for i in range(3):
        _png(str(root / "cats" / f"c{i}.png"), 10 + i)
    (root / "cats" / "notes.txt").write_text("not an image")
    _png(str(root / "cats" / "sub" / "c9.png"), 19)           # nested: found too
    return str(root)


def _value(img):
    return int(round(float(img[0, 0, 0])))


# ---------------------------------------------------------------------------------------
# Loading and converting

def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (H, W, 3)).astype("float32")
    path = str(tmp_path / "a.png")
    save_img(path, x, scale=False)
    img = load_img(path)
    assert img.size == (W, H) and img.mode == "RGB"
    back = img_to_array(img)
    assert back.dtype == np.float32 and back.shape == (H, W, 3)
    np.testing.assert_array_equal(back, x)
    # array_to_img(img_to_array(img)) is the same picture.
    np.testing.assert_array_equal(np.asarray(array_to_img(back, scale=False)), x.astype(np.uint8))


def test_color_modes_and_target_size(tmp_path):
    path = str(tmp_path / "a.png")
    _png(path, 77)
    assert img_to_array(load_img(path, color_mode="grayscale")).shape == (H, W, 1)
    rgba = img_to_array(load_img(path, color_mode="rgba"))
    assert rgba.shape == (H, W, 4) and np.all(rgba[..., 3] == 255)
    resized = img_to_array(load_img(path, target_size=(3, 5), interpolation="bilinear"))
    assert resized.shape == (3, 5, 3) and np.all(resized == 77)
    assert img_to_array(load_img(path), data_format="channels_first").shape == (3, H, W)
    assert load_img(path, target_size=(4, 4), keep_aspect_ratio=True).size == (4, 4)


def test_array_to_img_scales_to_full_range():
    x = np.array([[[0.0], [0.5]], [[1.0], [0.25]]])
    np.testing.assert_array_equal(np.asarray(array_to_img(x)), [[0, 127], [255, 63]])


def test_loading_errors_are_clear(tmp_path):
    path = str(tmp_path / "a.png")
    _png(path, 1)
    with pytest.raises(UnknownNameError, match="'rgb', 'rgba', 'grayscale'"):
        load_img(path, color_mode="cmyk")
    with pytest.raises(UnknownNameError, match="'nearest', 'bilinear'"):
        load_img(path, interpolation="cubic")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DataError, match="broken.png"):
        load_img(str(bad))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_img(str(tmp_path / "missing.png"))


# ---------------------------------------------------------------------------------------
# flow_from_directory

def test_discovery_order_and_attributes(image_dir):
    it = ImageDataGenerator().flow_from_directory(image_dir, target_size=(H, W), batch_size=3,
                                                  shuffle=False)
    assert it.class_indices == {"cats": 0, "dogs": 1}           # sorted alphanumerically
    assert it.filenames == [os.path.join("cats", "c0.png"), os.path.join("cats", "c1.png"),
                            os.path.join("cats", "c2.png"), os.path.join("cats", "sub", "c9.png"),
                            *[os.path.join("dogs", f"d{i}.png") for i in range(5)]]
    assert it.samples == it.n == 9 and it.batch_size == 3 and it.num_classes == 2
    np.testing.assert_array_equal(it.classes, [0, 0, 0, 0, 1, 1, 1, 1, 1])
    assert it.classes.dtype == np.int32
    assert len(it) == 3
    x, y = it[0]
    assert x.shape == (3, H, W, 3) and x.dtype == np.float32
    assert [_value(im) for im in x] == [10, 11, 12]
    np.testing.assert_array_equal(y, np.eye(2, dtype=np.float32)[[0, 0, 0]])   # categorical


def test_last_partial_batch_and_len(image_dir):
    it = ImageDataGenerator().flow_from_directory(image_dir, target_size=(H, W), batch_size=4,
                                                  class_mode="binary", shuffle=False)
    assert len(it) == 3
    sizes = [len(it[i][0]) for i in range(len(it))]
    assert sizes == [4, 4, 1]
    with pytest.raises(IndexError):
        it[3]


@pytest.mark.parametrize("class_mode", ["binary", "sparse", "categorical", "input", None])
def test_class_modes(image_dir, class_mode):
    it = ImageDataGenerator().flow_from_directory(image_dir, target_size=(H, W), batch_size=9,
                                                  class_mode=class_mode, shuffle=True, seed=1)
    batch = it[0]
    x = batch[0] if class_mode is not None else batch
    values = [_value(im) for im in x]
    truth = np.array([0 if v < 100 else 1 for v in values])
    assert sorted(values) == [10, 11, 12, 19, 100, 101, 102, 103, 104]
    if class_mode is None:
        assert isinstance(batch, np.ndarray)
        return
    y = batch[1]
    assert y.dtype == np.float32                # as Keras: labels in the generator's dtype
    if class_mode in ("binary", "sparse"):
        assert y.shape == (9,)
        np.testing.assert_array_equal(y, truth)
    elif class_mode == "categorical":
        np.testing.assert_array_equal(y, np.eye(2)[truth])
    else:
        np.testing.assert_array_equal(y, x)


def test_explicit_classes_set_the_order(image_dir):
    it = ImageDataGenerator().flow_from_directory(image_dir, target_size=(H, W),
                                                  classes=["dogs", "cats"], shuffle=False,
                                                  class_mode="sparse", batch_size=9)
    assert it.class_indices == {"dogs": 0, "cats": 1}
    x, y = it[0]
    assert _value(x[0]) == 100 and y[0] == 0 and y[-1] == 1


def test_rescale_and_grayscale(image_dir):
    it = ImageDataGenerator(rescale=1. / 255).flow_from_directory(
        image_dir, target_size=(3, 4), color_mode="grayscale", batch_size=2, shuffle=False)
    x, _ = it[0]
    assert x.shape == (2, 3, 4, 1)
    np.testing.assert_allclose(x[0], 10 / 255, rtol=1e-6)


def test_validation_split_subsets(image_dir):
    gen = ImageDataGenerator(validation_split=0.4)
    kw = dict(target_size=(H, W), shuffle=False, batch_size=16)
    val = gen.flow_from_directory(image_dir, subset="validation", **kw)
    train = gen.flow_from_directory(image_dir, subset="training", **kw)
    # Per class, the first int(0.4 * n) sorted files: cats 1 of 4, dogs 2 of 5.
    assert val.filenames == [os.path.join("cats", "c0.png"), os.path.join("dogs", "d0.png"),
                             os.path.join("dogs", "d1.png")]
    assert sorted(val.filenames + train.filenames) == sorted(
        gen.flow_from_directory(image_dir, **kw).filenames)
    assert not set(val.filenames) & set(train.filenames)
    with pytest.raises(DataError, match="validation_split"):
        ImageDataGenerator().flow_from_directory(image_dir, subset="validation")
    with pytest.raises(UnknownNameError, match="'training', 'validation'"):
        gen.flow_from_directory(image_dir, subset="test")


def test_directory_errors(tmp_path, image_dir):
    gen = ImageDataGenerator()
    with pytest.raises(FileNotFoundError, match="nowhere"):
        gen.flow_from_directory(str(tmp_path / "nowhere"))
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    (empty / "b").mkdir()
    with pytest.raises(DataError, match=r"no images found.*'a', 'b'.*\.png"):
        gen.flow_from_directory(str(empty))
    flat = tmp_path / "flat"
    _png(str(flat / "x.png"), 1)
    with pytest.raises(DataError, match="one subdirectory per class"):
        gen.flow_from_directory(str(flat))
    with pytest.raises(UnknownNameError, match="'categorical', 'binary', 'sparse', 'input', None"):
        gen.flow_from_directory(image_dir, class_mode="multiclass")
    with pytest.raises(UnknownNameError, match="color_mode"):
        gen.flow_from_directory(image_dir, color_mode="bgr")
    with pytest.raises(DataError, match="no subdirectory for class"):
        gen.flow_from_directory(image_dir, classes=["cats", "birds"])


def test_corrupted_file_is_named_when_read(image_dir):
    with open(os.path.join(image_dir, "dogs", "zz_bad.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff not really a jpeg")
    it = ImageDataGenerator().flow_from_directory(image_dir, target_size=(H, W), batch_size=16,
                                                  shuffle=False)
    with pytest.raises(DataError, match="zz_bad.jpg"):
        it[0]


def test_next_walks_the_epoch_then_reshuffles(image_dir):
    it = ImageDataGenerator().flow_from_directory(image_dir, target_size=(H, W), batch_size=4,
                                                  shuffle=True, seed=3)
    first = [next(it) for _ in range(3)]
    assert [len(b[0]) for b in first] == [4, 4, 1]
    assert sorted(_value(im) for b in first for im in b[0]) == \
        [10, 11, 12, 19, 100, 101, 102, 103, 104]
    assert it.epoch == 1                       # a new epoch began after the partial batch
    second = [next(it) for _ in range(3)]
    order = lambda bs: [_value(im) for b in bs for im in b[0]]    # noqa: E731
    assert sorted(order(second)) == sorted(order(first)) and order(second) != order(first)


# ---------------------------------------------------------------------------------------
# Transforms: each against an expectation computed without the code under test

def _img(h=5, w=7, c=2):
    return np.arange(h * w * c, dtype=np.float32).reshape(h, w, c)


def test_flips():
    x = _img()
    gen = ImageDataGenerator()
    np.testing.assert_array_equal(gen.apply_transform(x, {"flip_horizontal": True}), x[:, ::-1])
    np.testing.assert_array_equal(gen.apply_transform(x, {"flip_vertical": True}), x[::-1])
    # The random flip gives the image or its mirror, both over a few draws.
    rgen = ImageDataGenerator(horizontal_flip=True)
    rng = np.random.default_rng(0)
    outs = [rgen.random_transform(x, rng=rng) for _ in range(20)]
    assert all(np.array_equal(o, x) or np.array_equal(o, x[:, ::-1]) for o in outs)
    assert any(np.array_equal(o, x) for o in outs) and \
        any(np.array_equal(o, x[:, ::-1]) for o in outs)


# np.pad's modes are the fill modes: symmetric = half-sample reflect (d c b a | a b c d).
_PAD = {"constant": "constant", "nearest": "edge", "reflect": "symmetric", "wrap": "wrap"}


@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "reflect", "wrap"])
@pytest.mark.parametrize("order", [0, 1])
def test_integer_shift_equals_padded_slice(fill_mode, order):
    x = _img()
    gen = ImageDataGenerator(fill_mode=fill_mode, cval=-5.0, interpolation_order=order)
    pad = dict(constant_values=-5.0) if fill_mode == "constant" else {}
    # tx = +2: output column j shows input column j + 2 (content moves left by 2).
    expected = np.pad(x, ((0, 0), (0, 2), (0, 0)), mode=_PAD[fill_mode], **pad)[:, 2:]
    np.testing.assert_array_equal(gen.apply_transform(x, {"tx": 2}), expected)
    # ty = -1: output row i shows input row i - 1 (content moves down by 1).
    expected = np.pad(x, ((1, 0), (0, 0), (0, 0)), mode=_PAD[fill_mode], **pad)[:-1]
    np.testing.assert_array_equal(gen.apply_transform(x, {"ty": -1}), expected)
    if fill_mode == "wrap":
        np.testing.assert_array_equal(gen.apply_transform(x, {"tx": 3, "ty": 1}),
                                      np.roll(x, (-1, -3), axis=(0, 1)))


@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "reflect", "wrap"])
@pytest.mark.parametrize("order", [0, 1])
def test_right_angle_rotations_equal_rot90(fill_mode, order):
    x = _img(6, 6, 1)
    gen = ImageDataGenerator(fill_mode=fill_mode, interpolation_order=order)
    np.testing.assert_allclose(gen.apply_transform(x, {"theta": 90}), np.rot90(x, 1),
                               atol=1e-4)      # positive angles turn counter-clockwise
    np.testing.assert_allclose(gen.apply_transform(x, {"theta": -90}), np.rot90(x, -1),
                               atol=1e-4)
    np.testing.assert_allclose(gen.apply_transform(x, {"theta": 180}), x[::-1, ::-1],
                               atol=1e-4)


def test_zoom_out_by_two_subsamples_about_the_centre():
    x = np.arange(25, dtype=np.float32).reshape(5, 5, 1)
    gen = ImageDataGenerator(fill_mode="constant", cval=-1.0, interpolation_order=0)
    out = gen.apply_transform(x, {"zx": 2, "zy": 2})[..., 0]
    # Output pixel i samples 2 + 2 * (i - 2): -2, 0, 2, 4, 6 → cval at both ends.
    expected = np.full((5, 5), -1.0)
    expected[1:4, 1:4] = x[0:5:2, 0:5:2, 0]
    np.testing.assert_array_equal(out, expected)


# Keras' apply_affine_transform (scipy.ndimage.affine_transform) on arange(25) as a 5x5
# image with theta=30, tx=0.7, ty=-0.4, shear=10, zx=1.2, zy=0.9; computed with Keras'
# code and scipy 1.17, rounded to 4 decimals.
_KERAS_PARAMS = dict(theta=30, tx=0.7, ty=-0.4, shear=10, zx=1.2, zy=0.9)
_KERAS_VALUES = {
    ("nearest", 1): [[1.8848, 3.0476, 7.0868, 10.1235, 13.1235],
                     [1.877, 5.9162, 9.9555, 13.5707, 16.5707],
                     [4.7457, 8.7849, 12.8242, 16.8634, 20.0179],
                     [7.6144, 11.6536, 15.6929, 19.7321, 23.4651],
                     [10.9123, 14.5223, 18.5615, 22.6008, 23.7277]],
    ("constant", 0): [[-1.0, 3.0, 9.0, -1.0, -1.0], [1.0, 7.0, 8.0, -1.0, -1.0],
                      [6.0, 7.0, 13.0, 19.0, -1.0], [5.0, 11.0, 17.0, 18.0, -1.0],
                      [-1.0, 16.0, 17.0, 23.0, -1.0]],
    ("reflect", 1): [[1.8848, 3.0476, 7.0868, 10.1211, 12.0819],
                     [1.877, 5.9162, 9.9555, 13.5707, 16.1076],
                     [4.7457, 8.7849, 12.8242, 16.8634, 20.0179],
                     [7.6144, 11.6536, 15.6929, 19.7321, 23.4651],
                     [10.9123, 14.5223, 18.5615, 22.6008, 23.7277]],
}


@pytest.mark.parametrize("fill_mode,order", list(_KERAS_VALUES))
def test_general_affine_transform_matches_keras(fill_mode, order):
    x = np.arange(25, dtype=np.float64).reshape(5, 5, 1)
    gen = ImageDataGenerator(fill_mode=fill_mode, cval=-1.0, interpolation_order=order)
    out = gen.apply_transform(x, _KERAS_PARAMS)[..., 0]
    np.testing.assert_allclose(out, _KERAS_VALUES[(fill_mode, order)], atol=1e-4)
    # The module function with Keras' channels-first default axes agrees.
    cf = apply_affine_transform(x.transpose(2, 0, 1), **_KERAS_PARAMS, fill_mode=fill_mode,
                                cval=-1.0, order=order)
    np.testing.assert_allclose(cf[0], out, atol=1e-12)


def test_channel_shift_clips_to_the_image_range():
    x = _img(3, 3, 2)
    out = ImageDataGenerator().apply_transform(x, {"channel_shift_intensity": 4.0})
    np.testing.assert_array_equal(out, np.clip(x + 4.0, x.min(), x.max()))


def test_random_ranges_are_respected():
    gen = ImageDataGenerator(rotation_range=20, width_shift_range=0.25, height_shift_range=2,
                             zoom_range=0.1, shear_range=5)
    rng = np.random.default_rng(0)
    ps = [gen.get_random_transform((8, 12, 3), rng=rng) for _ in range(200)]
    assert all(abs(p["theta"]) <= 20 and abs(p["shear"]) <= 5 for p in ps)
    assert all(abs(p["tx"]) <= 0.25 * 12 for p in ps)            # fraction of the width
    assert {p["ty"] for p in ps} == {-1.0, 0.0, 1.0}              # int n: (-n, n) pixels
    assert all(0.9 <= p["zx"] <= 1.1 and 0.9 <= p["zy"] <= 1.1 for p in ps)
    with pytest.raises(UnknownNameError, match="'nearest', 'constant', 'reflect', 'wrap'"):
        ImageDataGenerator(fill_mode="mirror")


# ---------------------------------------------------------------------------------------
# Normalization

def test_featurewise_statistics():
    rng = np.random.default_rng(0)
    x = rng.normal([10, -3, 50], [2, 0.5, 9], size=(40, 4, 5, 3)).astype("float32")
    gen = ImageDataGenerator(featurewise_center=True, featurewise_std_normalization=True,
                             rescale=0.5)
    gen.fit(x)
    np.testing.assert_allclose(gen.mean.ravel(), (x * 0.5).mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(gen.std.ravel(), (x * 0.5).std(axis=(0, 1, 2)), rtol=1e-4)
    assert gen.mean.shape == (1, 1, 3)
    out = gen.flow(x, batch_size=40, shuffle=False)[0]
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1, atol=1e-3)


def test_samplewise_statistics_and_unfitted_warning():
    rng = np.random.default_rng(1)
    x = rng.normal(5, 3, size=(6, 4, 4, 1)).astype("float32")
    out = ImageDataGenerator(samplewise_center=True, samplewise_std_normalization=True) \
        .flow(x, batch_size=6, shuffle=False)[0]
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3)), 1, atol=1e-4)
    with pytest.warns(UserWarning, match="hasn't been fit"):
        ImageDataGenerator(featurewise_center=True).standardize(x[0].copy())


def test_zca_whitening_decorrelates():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(200, 4))
    x = (base @ np.array([[1, .8, 0, 0], [0, 1, .5, 0], [0, 0, 1, .3], [0, 0, 0, 1]])) \
        .reshape(200, 2, 2, 1).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gen = ImageDataGenerator(zca_whitening=True)
    gen.fit(x)
    out = gen.flow(x, batch_size=200, shuffle=False)[0].reshape(200, 4)
    np.testing.assert_allclose(np.cov(out.T, bias=True), np.eye(4), atol=1e-2)


# ---------------------------------------------------------------------------------------
# flow, seeding

def test_flow_batches_subsets_and_input_untouched():
    x = np.arange(10 * 2 * 2 * 1, dtype="float32").reshape(10, 2, 2, 1)
    keep = x.copy()
    y = np.array([0, 1] * 5)
    sw = np.linspace(0.1, 1, 10)
    gen = ImageDataGenerator(rescale=2.0, validation_split=0.3)
    bx, by, bsw = gen.flow(x, y, sample_weight=sw, batch_size=4, shuffle=False)[2]
    np.testing.assert_array_equal(bx, x[8:] * 2)
    np.testing.assert_array_equal(by, y[8:])
    np.testing.assert_array_equal(bsw, sw[8:])
    np.testing.assert_array_equal(x, keep)                     # standardize did not leak
    assert isinstance(gen.flow(x, batch_size=4)[0], np.ndarray)   # no y: x alone
    val = gen.flow(x, y, subset="validation", shuffle=False, batch_size=10)[0]
    np.testing.assert_array_equal(val[1], y[:3])
    assert len(gen.flow(x, y, subset="training", batch_size=10)[0][0]) == 7
    with pytest.raises(DataError, match="different number of classes"):
        gen.flow(x, np.sort(y), subset="training")
    with pytest.raises(DataError, match="rank 4"):
        gen.flow(x[..., 0])


def test_seed_makes_batches_reproducible(image_dir):
    gen = ImageDataGenerator(rotation_range=30, width_shift_range=0.2, zoom_range=0.2,
                             horizontal_flip=True)
    x = np.random.default_rng(0).random((12, 6, 6, 3)).astype("float32")

    def batches(seed):
        it = gen.flow(x, batch_size=5, seed=seed)
        out = [it[i] for i in range(len(it))]
        it.on_epoch_end()
        return out + [it[0]]

    a, b, c = batches(7), batches(7), batches(8)
    for p, q in zip(a, b, strict=True):
        np.testing.assert_array_equal(p, q)
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[0], a[-1])                    # a new epoch, new draws
    it = gen.flow(x, batch_size=5, seed=7)
    np.testing.assert_array_equal(it[1], it[1])               # stable within an epoch
    # seed=None: graphc's global seed decides.
    runs = []
    for _ in range(2):
        set_random_seed(3)
        runs.append(gen.flow_from_directory(image_dir, target_size=(H, W), batch_size=9)[0])
    np.testing.assert_array_equal(runs[0][0], runs[1][0])


# ---------------------------------------------------------------------------------------
# Training from a generator, image_dataset_from_directory

def test_model_fit_on_flow_from_directory(image_dir):
    set_random_seed(0)
    gen = ImageDataGenerator(rescale=1. / 255, horizontal_flip=True)
    it = gen.flow_from_directory(image_dir, target_size=(H, W), batch_size=4,
                                 class_mode="binary", seed=0)
    model = Sequential([Conv2D(2, (3, 3), activation="relu", input_shape=(H, W, 3)),
                        Flatten(), Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"],
                  target="reference")
    # steps_per_epoch > len(it) (3): the Sequence is cycled, as Keras does.
    history = model.fit(it, steps_per_epoch=4, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert all(np.isfinite(history.history["loss"]))
    loss, acc = model.evaluate(it, verbose=0)
    assert np.isfinite(loss) and 0 <= acc <= 1
    assert model.predict(it, verbose=0).shape == (9, 1)


def test_image_dataset_from_directory(image_dir, capsys):
    ds = image_dataset_from_directory(image_dir, image_size=(H, W), batch_size=4,
                                      shuffle=False)
    assert "Found 9 files belonging to 2 classes." in capsys.readouterr().out
    assert ds.class_names == ["cats", "dogs"] and len(ds) == 3
    x, y = ds[0]
    assert x.shape == (4, H, W, 3) and x.dtype == np.float32 and _value(x[0]) == 10
    assert y.dtype == np.int32 and list(y) == [0, 0, 0, 0]
    _, yb = image_dataset_from_directory(image_dir, image_size=(H, W), label_mode="binary",
                                         shuffle=False, verbose=False)[0]
    assert yb.shape == (9, 1) and yb.dtype == np.float32
    train, val = image_dataset_from_directory(image_dir, image_size=(H, W), seed=1,
                                              validation_split=0.34, subset="both",
                                              verbose=False)
    assert len(train.file_paths) == 6 and len(val.file_paths) == 3
    assert not set(train.file_paths) & set(val.file_paths)
    with pytest.raises(DataError, match="seed"):
        image_dataset_from_directory(image_dir, validation_split=0.2, subset="training")
    batches = list(ds.take(2).prefetch(1))
    assert len(batches) == 2
    assert isinstance(DirectoryIterator.white_list_formats, tuple)
