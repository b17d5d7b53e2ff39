"""``graphc.preprocessing.image``: Keras' image preprocessing — loading, converting and
augmenting images, and ``ImageDataGenerator`` with its ``flow`` / ``flow_from_directory``
iterators — with Keras 2/3 (``keras.preprocessing.image``) signatures, defaults and batch
formats, so the tutorials' idiom runs unchanged::

    train_datagen = ImageDataGenerator(rescale=1./255)
    train_generator = train_datagen.flow_from_directory(
        'data/train', target_size=(150, 150), batch_size=32, class_mode='binary')
    model.fit(train_generator, steps_per_epoch=100, epochs=10)

The iterators are ``Sequence``-like (``__len__``, ``__getitem__``, ``on_epoch_end``) and
also plain iterators (``next(it)`` loops forever, as in Keras), which is what
``graphc.runtime.data`` consumes.

Differences from Keras, all deliberate:

* No scipy: the affine augmentations (rotation, shift, shear, zoom) map every output pixel
  back to an input coordinate and sample it with numpy (``interpolation_order`` 0 = nearest,
  1 = bilinear, Keras' default; higher spline orders are refused). The results match
  ``scipy.ndimage.affine_transform`` as Keras calls it, except that ``fill_mode='wrap'``
  is the documented ``abcd|abcd|abcd`` (scipy's legacy 'wrap' overlaps the edge pixels),
  coordinates within 1e-6 of the border count as inside (so a 90° rotation keeps its edge
  rows under ``fill_mode='constant'``), and non-square images are rotated about their true
  centre.
* ``width_shift_range`` shifts horizontally and ``height_shift_range`` vertically, as
  documented; Keras' implementation swaps the two (keras-team/keras#17398). ``tx`` in
  ``apply_transform``'s parameters is the horizontal (x, column) shift, ``ty`` the vertical
  one, as Keras' ``apply_transform`` documents and does.
* Randomness comes from numpy ``Generator`` objects, not the global ``np.random`` state: an
  iterator's batch ``i`` of epoch ``e`` is drawn from a generator keyed by
  ``(seed, e, i)``, so ``seed=`` makes batches reproducible however the batches are
  visited; ``seed=None`` draws the key from graphc's global generator, so
  ``graphc.utils.set_random_seed`` makes whole runs reproducible.
* Clear errors (``DataError``/``UnknownNameError``, both ``ValueError``s): a missing
  directory, no images found, an unknown ``class_mode``/``color_mode``/``interpolation``
  (the valid ones are listed), an unreadable image file (named).
"""
from __future__ import annotations

import io
import os
import threading
import warnings

import numpy as np

from graphc.errors import DataError, UnknownNameError
from graphc.frontend.seeding import global_rng, next_seed

__all__ = [
    "load_img", "img_to_array", "array_to_img", "save_img", "smart_resize",
    "apply_affine_transform", "apply_channel_shift", "apply_brightness_shift", "flip_axis",
    "transform_matrix_offset_center", "random_rotation", "random_shift", "random_shear",
    "random_zoom", "random_channel_shift", "random_brightness",
    "ImageDataGenerator", "Iterator", "DirectoryIterator", "NumpyArrayIterator",
]

COLOR_MODES = ("rgb", "rgba", "grayscale")
CLASS_MODES = ("categorical", "binary", "sparse", "input", None)
FILL_MODES = ("nearest", "constant", "reflect", "wrap")
DATA_FORMATS = ("channels_last", "channels_first")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "hamming", "box", "lanczos")
SUBSETS = ("training", "validation")

# Coordinates this close outside the image count as inside under fill_mode='constant':
# exact transforms (90° rotations, integer shifts) land on the border up to rounding error.
_BORDER_TOL = 1e-6


def _pil():
    # Imported on first use: `import graphc` stays cheap for users who never load images.
    try:
        from PIL import Image
    except ImportError:           # pragma: no cover - pillow is a declared dependency
        raise ImportError("graphc.preprocessing.image needs Pillow to read and write image "
                          "files: pip install pillow") from None
    return Image


def _check_choice(name: str, value, valid) -> None:
    if value not in valid:
        shown = ", ".join(repr(v) for v in valid)
        raise UnknownNameError(f"unknown {name} {value!r}; expected one of: {shown}")


def _data_format(data_format):
    if data_format is None:
        return "channels_last"       # graphc's layers are NHWC, as Keras' default
    _check_choice("data_format", data_format, DATA_FORMATS)
    return data_format


def _floatx():
    return "float32"


# ---------------------------------------------------------------------------------------
# Loading and converting

def _resample(interpolation):
    _check_choice("interpolation", interpolation, INTERPOLATIONS)
    return getattr(_pil().Resampling, interpolation.upper())


def _crop_box(width, height, target_width, target_height):
    """Keras' ``keep_aspect_ratio``: the largest centred box of the target's aspect."""
    crop_height = min(height, (width * target_height) // target_width)
    crop_width = min(width, (height * target_width) // target_height)
    left = (width - crop_width) // 2
    top = (height - crop_height) // 2
    return (left, top, left + crop_width, top + crop_height)


def _check_target_size(target_size):
    try:
        ok = len(target_size) == 2 and all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0
            for d in target_size)
    except TypeError:
        ok = False
    if not ok:
        raise DataError(f"target_size must be (height, width), two positive integers; got "
                        f"{target_size!r}")
    return (int(target_size[0]), int(target_size[1]))


def load_img(path, color_mode="rgb", target_size=None, interpolation="nearest",
             keep_aspect_ratio=False, grayscale=None):
    """Load an image file into a PIL image (Keras' ``load_img``).

    ``path``: a file path (str, bytes, ``pathlib.Path``) or a binary file-like object.
    ``color_mode``: 'rgb', 'rgba' or 'grayscale'. ``target_size``: ``(height, width)`` to
    resize to, or None to keep the file's size. ``interpolation``: the resampling filter
    for that resize ('nearest', 'bilinear', 'bicubic', 'hamming', 'box', 'lanczos').
    ``keep_aspect_ratio``: crop the centre to the target's aspect ratio before resizing.
    ``grayscale=True`` is Keras 2's deprecated spelling of ``color_mode='grayscale'``.
    """
    if grayscale:
        warnings.warn("grayscale is deprecated; use color_mode='grayscale'", stacklevel=2)
        color_mode = "grayscale"
    _check_choice("color_mode", color_mode, COLOR_MODES)
    resample = _resample(interpolation)
    if target_size is not None:
        target_size = _check_target_size(target_size)
    Image = _pil()
    name = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else \
        getattr(path, "name", repr(path))
    if isinstance(path, (str, bytes, os.PathLike)):
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such image file: {name!r}")
        # Read the bytes and close the file at once: PIL opens lazily and would otherwise
        # keep a handle per image (thousands of files per epoch).
        with open(path, "rb") as f:
            stream = io.BytesIO(f.read())
    else:
        stream = path
    try:
        img = Image.open(stream)
        img.load()                    # decode now, so a truncated file fails here, named
    except Exception as e:
        raise DataError(f"cannot read image file {name!r}: {type(e).__name__}: {e}") from e
    if color_mode == "grayscale":
        # 16/32-bit grayscale keeps its depth (as Keras does); everything else becomes 'L'.
        if img.mode not in ("L", "I;16", "I"):
            img = img.convert("L")
    elif color_mode == "rgba":
        if img.mode != "RGBA":
            img = img.convert("RGBA")
    elif img.mode != "RGB":
        img = img.convert("RGB")
    if target_size is not None:
        width_height = (target_size[1], target_size[0])
        if img.size != width_height:
            if keep_aspect_ratio:
                box = _crop_box(img.size[0], img.size[1], *width_height)
                img = img.resize(width_height, resample, box=box)
            else:
                img = img.resize(width_height, resample)
    return img


def img_to_array(img, data_format=None, dtype=None):
    """A PIL image (or anything ``np.asarray`` takes) as a 3-D array: ``(h, w, c)`` for
    'channels_last' (default), ``(c, h, w)`` for 'channels_first'; float32 by default."""
    data_format = _data_format(data_format)
    x = np.asarray(img, dtype=dtype or _floatx())
    if x.ndim == 3:
        if data_format == "channels_first":
            x = x.transpose(2, 0, 1)
    elif x.ndim == 2:
        x = x.reshape((1,) + x.shape if data_format == "channels_first" else x.shape + (1,))
    else:
        raise DataError(f"img_to_array: unsupported image shape {x.shape}; expected a "
                        f"2-D (grayscale) or 3-D image")
    return x


def array_to_img(x, data_format=None, scale=True, dtype=None):
    """A 3-D array as a PIL image (Keras' ``array_to_img``): 1 channel → 'L' (or 'I' for
    values above 255 when not scaled), 3 → 'RGB', 4 → 'RGBA'. ``scale``: stretch the
    values to [0, 255] first."""
    Image = _pil()
    data_format = _data_format(data_format)
    x = np.asarray(x, dtype=dtype or _floatx())
    if x.ndim != 3:
        raise DataError(f"array_to_img expects an image array of rank 3; got shape {x.shape}")
    if data_format == "channels_first":
        x = x.transpose(1, 2, 0)
    if scale:
        x = x - np.min(x)
        x_max = np.max(x)
        if x_max != 0:
            x = x / x_max
        x = x * 255
    channels = x.shape[2]
    if channels == 4:
        return Image.fromarray(x.astype("uint8"), "RGBA")
    if channels == 3:
        return Image.fromarray(x.astype("uint8"), "RGB")
    if channels == 1:
        if np.max(x) > 255:
            return Image.fromarray(x[:, :, 0].astype("int32"), "I")   # 32-bit signed ints
        return Image.fromarray(x[:, :, 0].astype("uint8"), "L")
    raise DataError(f"array_to_img: unsupported channel number {channels} (shape "
                    f"{x.shape}); expected 1, 3 or 4")


def save_img(path, x, data_format=None, file_format=None, scale=True, **kwargs):
    """Save a 3-D image array to ``path``; ``file_format`` defaults to the extension.
    ``kwargs`` go to ``PIL.Image.save``."""
    img = array_to_img(x, data_format=data_format, scale=scale)
    fmt = file_format
    if fmt is None and isinstance(path, (str, os.PathLike)):
        fmt = os.path.splitext(os.fspath(path))[1].lstrip(".") or None
    if img.mode == "RGBA" and fmt is not None and fmt.lower() in ("jpg", "jpeg"):
        warnings.warn("JPEG does not support an alpha channel; saving as RGB", stacklevel=2)
        img = img.convert("RGB")
    if fmt is not None and fmt.lower() == "jpg":
        fmt = "jpeg"                  # PIL knows the format as JPEG
    img.save(path, format=fmt, **kwargs)


def smart_resize(x, size, interpolation="bilinear"):
    """Resize an ``(h, w, c)`` (or batched ``(n, h, w, c)``) array to ``size`` without
    distorting the aspect ratio: the largest centred crop of the target's aspect is
    resized (per channel, with PIL)."""
    size = _check_target_size(size)
    resample = _resample(interpolation)
    x = np.asarray(x)
    if x.ndim == 4:
        return np.stack([smart_resize(img, size, interpolation) for img in x])
    if x.ndim != 3:
        raise DataError(f"smart_resize expects an (h, w, c) image or a batch of them; got "
                        f"shape {x.shape}")
    Image = _pil()
    h, w = x.shape[:2]
    box = _crop_box(w, h, size[1], size[0])
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(x[:, :, c], np.float32), "F")
                        .resize((size[1], size[0]), resample, box=box))
             for c in range(x.shape[2])]
    return np.stack(chans, axis=-1).astype(x.dtype if x.dtype.kind == "f" else np.float32)


# ---------------------------------------------------------------------------------------
# Transforms

def flip_axis(x, axis):
    """``x`` reversed along ``axis``."""
    return np.flip(np.asarray(x), axis)


def transform_matrix_offset_center(matrix, x, y):
    """``matrix`` (3x3, homogeneous) conjugated to act about the centre of an ``x`` by
    ``y`` grid instead of about its corner (Keras' helper)."""
    o_x = float(x) / 2 - 0.5
    o_y = float(y) / 2 - 0.5
    offset_matrix = np.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]])
    reset_matrix = np.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]])
    return offset_matrix @ matrix @ reset_matrix


def _map_index(idx, n, fill_mode):
    """Integer source indices outside [0, n) brought inside per ``fill_mode`` ('constant'
    clips: those pixels are masked to cval by the caller)."""
    if fill_mode == "reflect":
        # Half-sample symmetric (d c b a | a b c d | d c b a), as scipy's 'reflect'.
        m = np.mod(idx, 2 * n)
        return np.where(m >= n, 2 * n - 1 - m, m)
    if fill_mode == "wrap":
        return np.mod(idx, n)
    return np.clip(idx, 0, n - 1)


def _affine_sample(img, matrix, fill_mode, cval, order):
    """Sample ``img`` (h, w, c) at ``matrix @ (x, y, 1)`` for every output pixel (x the
    column, y the row): the inverse mapping scipy's ``affine_transform`` uses."""
    h, w = img.shape[:2]
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                         indexing="ij")
    src_x = matrix[0, 0] * xx + matrix[0, 1] * yy + matrix[0, 2]
    src_y = matrix[1, 0] * xx + matrix[1, 1] * yy + matrix[1, 2]
    if order == 0:
        # scipy's order-0 spline: round half up.
        r = _map_index(np.floor(src_y + 0.5).astype(np.intp), h, fill_mode)
        c = _map_index(np.floor(src_x + 0.5).astype(np.intp), w, fill_mode)
        out = img[r, c]
    else:
        r0f = np.floor(src_y)
        c0f = np.floor(src_x)
        fr = (src_y - r0f)[..., None]
        fc = (src_x - c0f)[..., None]
        r0 = r0f.astype(np.intp)
        c0 = c0f.astype(np.intp)
        r_lo, r_hi = _map_index(r0, h, fill_mode), _map_index(r0 + 1, h, fill_mode)
        c_lo, c_hi = _map_index(c0, w, fill_mode), _map_index(c0 + 1, w, fill_mode)
        src = img.astype(np.float64, copy=False)
        out = ((1 - fr) * ((1 - fc) * src[r_lo, c_lo] + fc * src[r_lo, c_hi])
               + fr * ((1 - fc) * src[r_hi, c_lo] + fc * src[r_hi, c_hi]))
    if fill_mode == "constant":
        # scipy's 'constant': a source coordinate outside the image gives cval, with no
        # blending of cval into the border pixels.
        outside = ((src_y < -_BORDER_TOL) | (src_y > h - 1 + _BORDER_TOL)
                   | (src_x < -_BORDER_TOL) | (src_x > w - 1 + _BORDER_TOL))
        out = np.where(outside[..., None], cval, out)
    if img.dtype.kind in "iu":
        out = np.rint(out)
    return out.astype(img.dtype, copy=False)


def apply_affine_transform(x, theta=0, tx=0, ty=0, shear=0, zx=1, zy=1, row_axis=1,
                           col_axis=2, channel_axis=0, fill_mode="nearest", cval=0.0,
                           order=1):
    """Apply an affine transform to one image (Keras' ``apply_affine_transform``; note its
    channels-first default axes).

    ``theta``: rotation in degrees (positive: counter-clockwise); ``tx``/``ty``: shift in
    pixels along x (columns) / y (rows) — the output pixel (x, y) takes the input's value at
    (x + tx, y + ty), so the content moves by (-tx, -ty); ``shear``: shear angle in degrees;
    ``zx``/``zy``: zoom factors (above 1 shrinks the content: zoom out); ``fill_mode``:
    'constant', 'nearest', 'reflect' or 'wrap' for points mapped from outside the input;
    ``order``: 0 (nearest) or 1 (bilinear) interpolation.
    """
    x = np.asarray(x)
    if x.ndim != 3:
        raise DataError(f"apply_affine_transform expects a single image of rank 3; got "
                        f"shape {x.shape}")
    if sorted((row_axis, col_axis, channel_axis)) != [0, 1, 2]:
        raise DataError(f"row_axis, col_axis and channel_axis must be 0, 1 and 2 in some "
                        f"order; got {row_axis}, {col_axis}, {channel_axis}")
    if channel_axis not in (0, 2):
        raise DataError("channels must be the first or the last axis (channel_axis 0 or 2)")
    _check_choice("fill_mode", fill_mode, FILL_MODES)
    if order not in (0, 1):
        raise DataError(f"interpolation order {order!r} is not supported: 0 (nearest) or 1 "
                        f"(bilinear, the default)")

    matrix = None

    def then(m):
        nonlocal matrix
        matrix = m if matrix is None else matrix @ m

    # The same composition as Keras: rotation, then shift, shear and zoom, in (x, y).
    if theta != 0:
        t = np.deg2rad(theta)
        then(np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]]))
    if tx != 0 or ty != 0:
        then(np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], dtype=np.float64))
    if shear != 0:
        s = np.deg2rad(shear)
        then(np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]]))
    if zx != 1 or zy != 1:
        then(np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]], dtype=np.float64))
    if matrix is None:
        return x                       # nothing to do: spare the resampling

    img = np.moveaxis(x, channel_axis, -1)
    if row_axis > col_axis:            # (col, row) storage: sample the transposed image
        img = img.swapaxes(0, 1)
    h, w = img.shape[:2]
    matrix = transform_matrix_offset_center(matrix, w, h)   # (x, y) centre = (w, h) / 2
    out = _affine_sample(img, matrix, fill_mode, cval, order)
    if row_axis > col_axis:
        out = out.swapaxes(0, 1)
    return np.ascontiguousarray(np.moveaxis(out, -1, channel_axis))


def apply_channel_shift(x, intensity, channel_axis=0):
    """Add ``intensity`` to every channel, clipped to the image's original [min, max]."""
    x = np.asarray(x)
    lo, hi = np.min(x), np.max(x)
    return np.clip(x + intensity, lo, hi).astype(x.dtype if x.dtype.kind == "f" else
                                                  np.float32, copy=False)


def apply_brightness_shift(x, brightness, scale=True):
    """Scale the image's brightness by ``brightness`` (1: unchanged) through PIL's
    ``ImageEnhance.Brightness``, as Keras does (the image passes through 8 bits).
    ``scale``: leave the result in [0, 255]; otherwise values outside that range are
    mapped back to the input's range."""
    from PIL import ImageEnhance
    x = np.asarray(x)
    x_min, x_max = np.min(x), np.max(x)
    local_scale = (x_min < 0) or (x_max > 255)
    img = array_to_img(x, scale=local_scale or scale)
    img = ImageEnhance.Brightness(img).enhance(brightness)
    out = img_to_array(img)
    if not scale and local_scale:
        out = out / 255 * (x_max - x_min) + x_min
    return out


def _rng(seed=None, rng=None) -> np.random.Generator:
    if rng is not None:
        return rng
    return np.random.default_rng(seed) if seed is not None else global_rng()


def random_rotation(x, rg, row_axis=1, col_axis=2, channel_axis=0, fill_mode="nearest",
                    cval=0.0, interpolation_order=1, rng=None):
    """Rotate by an angle drawn uniformly from [-rg, rg] degrees."""
    theta = _rng(rng=rng).uniform(-rg, rg)
    return apply_affine_transform(x, theta=theta, row_axis=row_axis, col_axis=col_axis,
                                  channel_axis=channel_axis, fill_mode=fill_mode, cval=cval,
                                  order=interpolation_order)


def random_shift(x, wrg, hrg, row_axis=1, col_axis=2, channel_axis=0, fill_mode="nearest",
                 cval=0.0, interpolation_order=1, rng=None):
    """Shift by fractions drawn from [-wrg, wrg] of the width and [-hrg, hrg] of the
    height."""
    g = _rng(rng=rng)
    h, w = np.shape(x)[row_axis], np.shape(x)[col_axis]
    tx = g.uniform(-wrg, wrg) * w
    ty = g.uniform(-hrg, hrg) * h
    return apply_affine_transform(x, tx=tx, ty=ty, row_axis=row_axis, col_axis=col_axis,
                                  channel_axis=channel_axis, fill_mode=fill_mode, cval=cval,
                                  order=interpolation_order)


def random_shear(x, intensity, row_axis=1, col_axis=2, channel_axis=0, fill_mode="nearest",
                 cval=0.0, interpolation_order=1, rng=None):
    """Shear by an angle drawn from [-intensity, intensity] degrees."""
    shear = _rng(rng=rng).uniform(-intensity, intensity)
    return apply_affine_transform(x, shear=shear, row_axis=row_axis, col_axis=col_axis,
                                  channel_axis=channel_axis, fill_mode=fill_mode, cval=cval,
                                  order=interpolation_order)


def random_zoom(x, zoom_range, row_axis=1, col_axis=2, channel_axis=0, fill_mode="nearest",
                cval=0.0, interpolation_order=1, rng=None):
    """Zoom by factors (zx, zy) drawn independently from ``zoom_range`` = (lower, upper)."""
    if len(zoom_range) != 2:
        raise DataError(f"zoom_range should be a tuple or list of two floats; got "
                        f"{zoom_range!r}")
    if zoom_range[0] == 1 and zoom_range[1] == 1:
        zx, zy = 1, 1
    else:
        zx, zy = _rng(rng=rng).uniform(zoom_range[0], zoom_range[1], 2)
    return apply_affine_transform(x, zx=zx, zy=zy, row_axis=row_axis, col_axis=col_axis,
                                  channel_axis=channel_axis, fill_mode=fill_mode, cval=cval,
                                  order=interpolation_order)


def random_channel_shift(x, intensity_range, channel_axis=0, rng=None):
    """``apply_channel_shift`` by an intensity drawn from [-range, range]."""
    intensity = _rng(rng=rng).uniform(-intensity_range, intensity_range)
    return apply_channel_shift(x, intensity, channel_axis=channel_axis)


def random_brightness(x, brightness_range, scale=True, rng=None):
    """``apply_brightness_shift`` by a factor drawn from ``brightness_range``."""
    if len(brightness_range) != 2:
        raise DataError(f"brightness_range should be a tuple or list of two floats; got "
                        f"{brightness_range!r}")
    u = _rng(rng=rng).uniform(brightness_range[0], brightness_range[1])
    return apply_brightness_shift(x, u, scale)


def _draw_shift(g: np.random.Generator, spec, size: int) -> float:
    """A shift in pixels per Keras' rules for ``width_shift_range``/``height_shift_range``:
    a float < 1 is a fraction of ``size`` (uniform in ±), a float >= 1 pixels (uniform in
    ±); an int n gives an integer in (-n, n); a list gives one of its values, either sign."""
    if not np.any(spec):
        return 0
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        t = float(g.integers(0, spec) * g.choice([-1, 1]))
    elif isinstance(spec, (list, tuple, np.ndarray)):
        t = float(g.choice(np.asarray(spec)) * g.choice([-1, 1]))
    else:
        t = float(g.uniform(-spec, spec))
    if np.max(spec) < 1:
        t *= size
    return t


# ---------------------------------------------------------------------------------------
# ImageDataGenerator

class ImageDataGenerator:
    """Real-time data augmentation and normalization for batches of images (Keras'
    ``ImageDataGenerator``; same arguments and defaults).

    Order, per image: random transform (``get_random_transform`` + ``apply_transform``),
    then ``standardize``: ``preprocessing_function``, ``rescale``, samplewise
    centring/normalization, featurewise centring/normalization (statistics from
    ``fit(x)``), ZCA whitening. ``validation_split`` reserves that fraction for
    ``subset='validation'`` of ``flow``/``flow_from_directory``.
    """

    def __init__(self, featurewise_center=False, samplewise_center=False,
                 featurewise_std_normalization=False, samplewise_std_normalization=False,
                 zca_whitening=False, zca_epsilon=1e-6, rotation_range=0,
                 width_shift_range=0.0, height_shift_range=0.0, brightness_range=None,
                 shear_range=0.0, zoom_range=0.0, channel_shift_range=0.0,
                 fill_mode="nearest", cval=0.0, horizontal_flip=False, vertical_flip=False,
                 rescale=None, preprocessing_function=None, data_format=None,
                 validation_split=0.0, interpolation_order=1, dtype=None):
        self.featurewise_center = featurewise_center
        self.samplewise_center = samplewise_center
        self.featurewise_std_normalization = featurewise_std_normalization
        self.samplewise_std_normalization = samplewise_std_normalization
        self.zca_whitening = zca_whitening
        self.zca_epsilon = zca_epsilon
        self.rotation_range = rotation_range
        self.width_shift_range = width_shift_range
        self.height_shift_range = height_shift_range
        self.shear_range = shear_range
        self.channel_shift_range = channel_shift_range
        _check_choice("fill_mode", fill_mode, FILL_MODES)
        self.fill_mode = fill_mode
        self.cval = cval
        self.horizontal_flip = horizontal_flip
        self.vertical_flip = vertical_flip
        self.rescale = rescale
        if preprocessing_function is not None and not callable(preprocessing_function):
            raise DataError(f"preprocessing_function must be callable; got "
                            f"{preprocessing_function!r}")
        self.preprocessing_function = preprocessing_function
        self.dtype = dtype or _floatx()
        if interpolation_order not in (0, 1):
            raise DataError(f"interpolation_order {interpolation_order!r} is not supported: "
                            f"0 (nearest) or 1 (bilinear, the default)")
        self.interpolation_order = interpolation_order
        self.data_format = _data_format(data_format)
        if self.data_format == "channels_first":
            self.channel_axis, self.row_axis, self.col_axis = 1, 2, 3
        else:
            self.channel_axis, self.row_axis, self.col_axis = 3, 1, 2
        if validation_split and not 0 < validation_split < 1:
            raise DataError(f"validation_split must be strictly between 0 and 1; got "
                            f"{validation_split!r}")
        self._validation_split = validation_split

        self.mean = None
        self.std = None
        self.zca_whitening_matrix = None

        if isinstance(zoom_range, (float, int)) and not isinstance(zoom_range, bool):
            self.zoom_range = [1 - zoom_range, 1 + zoom_range]
        elif (isinstance(zoom_range, (list, tuple)) and len(zoom_range) == 2
              and all(isinstance(v, (float, int)) for v in zoom_range)):
            self.zoom_range = [zoom_range[0], zoom_range[1]]
        else:
            raise DataError(f"zoom_range should be a float or a tuple or list of two floats; "
                            f"got {zoom_range!r}")
        # Keras' implications between the normalization flags (with its warnings).
        if zca_whitening:
            if not featurewise_center:
                self.featurewise_center = True
                warnings.warn("This ImageDataGenerator specifies `zca_whitening`, which "
                              "overrides setting of `featurewise_center`.", stacklevel=2)
            if featurewise_std_normalization:
                self.featurewise_std_normalization = False
                warnings.warn("This ImageDataGenerator specifies `zca_whitening` which "
                              "overrides setting of `featurewise_std_normalization`.",
                              stacklevel=2)
        if featurewise_std_normalization and not self.featurewise_center and \
                not zca_whitening:
            self.featurewise_center = True
            warnings.warn("This ImageDataGenerator specifies `featurewise_std_normalization`, "
                          "which overrides setting of `featurewise_center`.", stacklevel=2)
        if samplewise_std_normalization and not samplewise_center:
            self.samplewise_center = True
            warnings.warn("This ImageDataGenerator specifies `samplewise_std_normalization`, "
                          "which overrides setting of `samplewise_center`.", stacklevel=2)
        if brightness_range is not None and (not isinstance(brightness_range, (tuple, list))
                                             or len(brightness_range) != 2):
            raise DataError(f"brightness_range should be a tuple or list of two floats; got "
                            f"{brightness_range!r}")
        self.brightness_range = brightness_range

    # -- iterators

    def flow(self, x, y=None, batch_size=32, shuffle=True, sample_weight=None, seed=None,
             save_to_dir=None, save_prefix="", save_format="png", ignore_class_split=False,
             subset=None):
        """Batches of augmented/normalized images from arrays: ``(x, y)`` batches, or
        ``(x, y, sample_weight)``, or just ``x`` when ``y`` is None. ``x`` has rank 4;
        ``x`` may also be ``(images, [other arrays])``, passed through unaugmented."""
        return NumpyArrayIterator(
            x, y, self, batch_size=batch_size, shuffle=shuffle, sample_weight=sample_weight,
            seed=seed, data_format=self.data_format, save_to_dir=save_to_dir,
            save_prefix=save_prefix, save_format=save_format,
            ignore_class_split=ignore_class_split, subset=subset, dtype=self.dtype)

    def flow_from_directory(self, directory, target_size=(256, 256), color_mode="rgb",
                            classes=None, class_mode="categorical", batch_size=32,
                            shuffle=True, seed=None, save_to_dir=None, save_prefix="",
                            save_format="png", follow_links=False, subset=None,
                            interpolation="nearest", keep_aspect_ratio=False):
        """Batches from a directory with one subdirectory per class (sorted
        alphanumerically unless ``classes`` names them): ``(images, labels)`` with
        labels per ``class_mode`` — 'categorical' one-hot float32, 'binary' float32 0/1,
        'sparse' float32 class indices, 'input' the images themselves, None images only."""
        return DirectoryIterator(
            directory, self, target_size=target_size, color_mode=color_mode,
            keep_aspect_ratio=keep_aspect_ratio, classes=classes, class_mode=class_mode,
            data_format=self.data_format, batch_size=batch_size, shuffle=shuffle, seed=seed,
            save_to_dir=save_to_dir, save_prefix=save_prefix, save_format=save_format,
            follow_links=follow_links, subset=subset, interpolation=interpolation,
            dtype=self.dtype)

    def flow_from_dataframe(self, *args, **kwargs):
        raise NotImplementedError("flow_from_dataframe is not available in graphc: use "
                                  "flow_from_directory, or load the images with load_img "
                                  "and use flow(x, y)")

    # -- normalization

    def standardize(self, x):
        """Apply the normalization configuration to an image or a batch. As in Keras, a
        float array is changed in place (pass ``np.copy(x)`` to keep the original)."""
        if self.preprocessing_function:
            x = self.preprocessing_function(x)
        if not (isinstance(x, np.ndarray) and x.dtype.kind == "f"):
            x = np.asarray(x, dtype=self.dtype)   # in-place float ops need a float array
        if self.rescale:
            x *= self.rescale
        if self.samplewise_center:
            x -= np.mean(x, keepdims=True)
        if self.samplewise_std_normalization:
            x /= np.std(x, keepdims=True) + 1e-6
        if self.featurewise_center:
            if self.mean is not None:
                x -= self.mean
            else:
                warnings.warn("This ImageDataGenerator specifies `featurewise_center`, but "
                              "it hasn't been fit on any training data. Fit it first by "
                              "calling `.fit(numpy_data)`.", stacklevel=2)
        if self.featurewise_std_normalization:
            if self.std is not None:
                x /= self.std + 1e-6
            else:
                warnings.warn("This ImageDataGenerator specifies "
                              "`featurewise_std_normalization`, but it hasn't been fit on "
                              "any training data. Fit it first by calling "
                              "`.fit(numpy_data)`.", stacklevel=2)
        if self.zca_whitening:
            if self.zca_whitening_matrix is not None:
                flat = x.reshape(-1, int(np.prod(x.shape[-3:])))
                x = np.reshape(flat @ self.zca_whitening_matrix, x.shape).astype(
                    x.dtype, copy=False)
            else:
                warnings.warn("This ImageDataGenerator specifies `zca_whitening`, but it "
                              "hasn't been fit on any training data. Fit it first by calling "
                              "`.fit(numpy_data)`.", stacklevel=2)
        return x

    # -- augmentation

    @property
    def _augments(self) -> bool:
        """Whether any random transform is configured (if not, images skip that step)."""
        return bool(self.rotation_range or np.any(self.width_shift_range)
                    or np.any(self.height_shift_range) or self.shear_range
                    or self.zoom_range[0] != 1 or self.zoom_range[1] != 1
                    or self.horizontal_flip or self.vertical_flip
                    or self.channel_shift_range or self.brightness_range is not None)

    def get_random_transform(self, img_shape, seed=None, rng=None):
        """Random parameters for one image of shape ``img_shape`` (no batch axis), as a
        dict for ``apply_transform``. Drawn from ``rng`` (a numpy Generator) if given,
        else from a generator seeded with ``seed``, else from graphc's global generator."""
        g = _rng(seed, rng)
        img_row_axis = self.row_axis - 1
        img_col_axis = self.col_axis - 1
        theta = g.uniform(-self.rotation_range, self.rotation_range) \
            if self.rotation_range else 0
        # tx: horizontal (column) shift from width_shift_range; ty: vertical, from
        # height_shift_range — the documented meaning (Keras swaps them, see module doc).
        tx = _draw_shift(g, self.width_shift_range, img_shape[img_col_axis])
        ty = _draw_shift(g, self.height_shift_range, img_shape[img_row_axis])
        shear = g.uniform(-self.shear_range, self.shear_range) if self.shear_range else 0
        if self.zoom_range[0] == 1 and self.zoom_range[1] == 1:
            zx, zy = 1, 1
        else:
            zx, zy = (float(v) for v in g.uniform(self.zoom_range[0], self.zoom_range[1], 2))
        flip_horizontal = bool(g.random() < 0.5) and bool(self.horizontal_flip)
        flip_vertical = bool(g.random() < 0.5) and bool(self.vertical_flip)
        channel_shift_intensity = None
        if self.channel_shift_range != 0:
            channel_shift_intensity = g.uniform(-self.channel_shift_range,
                                                self.channel_shift_range)
        brightness = None
        if self.brightness_range is not None:
            brightness = g.uniform(self.brightness_range[0], self.brightness_range[1])
        return {"theta": theta, "tx": tx, "ty": ty, "shear": shear, "zx": zx, "zy": zy,
                "flip_horizontal": flip_horizontal, "flip_vertical": flip_vertical,
                "channel_shift_intensity": channel_shift_intensity, "brightness": brightness}

    def apply_transform(self, x, transform_parameters):
        """Apply the transform described by ``transform_parameters`` to one image (no
        batch axis). Keys (all optional): 'theta' (degrees, counter-clockwise), 'tx'/'ty'
        (pixels, x = columns / y = rows; the content moves by -tx/-ty), 'shear'
        (degrees), 'zx'/'zy' (zoom factors), 'flip_horizontal', 'flip_vertical',
        'channel_shift_intensity', 'brightness'. Points from outside the image are filled
        per the generator's ``fill_mode``/``cval``."""
        img_row_axis = self.row_axis - 1
        img_col_axis = self.col_axis - 1
        img_channel_axis = self.channel_axis - 1
        p = transform_parameters
        x = apply_affine_transform(
            x, p.get("theta", 0), p.get("tx", 0), p.get("ty", 0), p.get("shear", 0),
            p.get("zx", 1), p.get("zy", 1), row_axis=img_row_axis, col_axis=img_col_axis,
            channel_axis=img_channel_axis, fill_mode=self.fill_mode, cval=self.cval,
            order=self.interpolation_order)
        if p.get("channel_shift_intensity") is not None:
            x = apply_channel_shift(x, p["channel_shift_intensity"], img_channel_axis)
        if p.get("flip_horizontal", False):
            x = flip_axis(x, img_col_axis)
        if p.get("flip_vertical", False):
            x = flip_axis(x, img_row_axis)
        if p.get("brightness") is not None:
            x = apply_brightness_shift(x, p["brightness"], False)
        return x

    def random_transform(self, x, seed=None, rng=None):
        """``x`` (one image) under a random transform."""
        return self.apply_transform(x, self.get_random_transform(np.shape(x), seed, rng))

    def fit(self, x, augment=False, rounds=1, seed=None):
        """Compute the featurewise statistics (mean, std, ZCA matrix) from sample images
        ``x`` of rank 4 (after ``rescale``; over ``rounds`` augmented copies if
        ``augment``). Only needed for the featurewise options and ZCA whitening."""
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim != 4:
            raise DataError(f"Input to `.fit()` should have rank 4. Got array with shape: "
                            f"{x.shape}")
        if x.shape[self.channel_axis] not in (1, 3, 4):
            warnings.warn(f"Expected input to be images (as Numpy array) following the data "
                          f"format convention {self.data_format!r} (channels on axis "
                          f"{self.channel_axis}), i.e. expected either 1, 3 or 4 channels on "
                          f"axis {self.channel_axis}. However, it was passed an array with "
                          f"shape {x.shape} ({x.shape[self.channel_axis]} channels).",
                          stacklevel=2)
        g = _rng(seed)
        x = np.copy(x)
        if self.rescale:
            x *= self.rescale
        if augment:
            ax = np.zeros((rounds * x.shape[0],) + x.shape[1:], dtype=self.dtype)
            for r in range(rounds):
                for i in range(x.shape[0]):
                    ax[i + r * x.shape[0]] = self.random_transform(x[i], rng=g)
            x = ax
        bshape = [1, 1, 1]
        bshape[self.channel_axis - 1] = x.shape[self.channel_axis]
        axes = (0, self.row_axis, self.col_axis)
        if self.featurewise_center:
            self.mean = np.reshape(np.mean(x, axis=axes), bshape)
            x -= self.mean
        if self.featurewise_std_normalization:
            self.std = np.reshape(np.std(x, axis=axes), bshape)
            x /= self.std + 1e-6
        if self.zca_whitening:
            n = len(x)
            flat_x = np.reshape(x, (n, -1)).astype(np.float64)
            u, s, _ = np.linalg.svd(flat_x.T, full_matrices=False)
            s_inv = np.sqrt(n) / (s + self.zca_epsilon)
            self.zca_whitening_matrix = ((u * s_inv) @ u.T).astype(self.dtype)


# ---------------------------------------------------------------------------------------
# Iterators

def _positive_int(name, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise DataError(f"{name} must be a positive integer; got {v!r}")
    return int(v)


class Iterator:
    """Base of the batch iterators: a ``Sequence`` (``len``, ``it[i]``, ``on_epoch_end``)
    and an endless Python iterator (``next(it)``), as Keras' ``Iterator``.

    ``it[i]`` is batch ``i`` of the current epoch: the same indices (and the same random
    transforms) every time it is asked for within an epoch. ``on_epoch_end()`` starts a
    new epoch: a new order when ``shuffle``, new random transforms. ``next(it)`` walks the
    batches in order and starts a new epoch after the last (partial) one.
    Subclasses implement ``_get_batches_of_transformed_samples(index_array, rng)``."""

    white_list_formats = ("png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff")

    def __init__(self, n, batch_size, shuffle, seed):
        self.n = int(n)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.seed = seed
        if seed is not None and (isinstance(seed, bool) or
                                 not isinstance(seed, (int, np.integer)) or seed < 0):
            raise DataError(f"seed must be a non-negative integer or None; got {seed!r}")
        # The key every epoch's order and every batch's transforms derive from.
        self._key = int(seed) if seed is not None else next_seed()
        self.shuffle = shuffle
        self.epoch = 0
        self.batch_index = 0
        self.total_batches_seen = 0
        self.lock = threading.Lock()
        self.index_array = None

    def _set_index_array(self):
        if self.shuffle:
            self.index_array = np.random.default_rng([self._key, 0, self.epoch]) \
                .permutation(self.n)
        else:
            self.index_array = np.arange(self.n)

    def _batch_rng(self, idx) -> np.random.Generator:
        return np.random.default_rng([self._key, 1, self.epoch, idx])

    def __len__(self):
        return (self.n + self.batch_size - 1) // self.batch_size     # round up

    def __getitem__(self, idx):
        if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)):
            raise TypeError(f"batch index must be an integer; got {idx!r}")
        n_batches = len(self)
        idx = int(idx)
        if idx < 0:
            idx += n_batches
        if not 0 <= idx < n_batches:
            raise IndexError(f"Asked to retrieve element {idx}, but the Sequence has length "
                             f"{n_batches}")
        if self.index_array is None:
            self._set_index_array()
        self.total_batches_seen += 1
        index_array = self.index_array[self.batch_size * idx:self.batch_size * (idx + 1)]
        return self._get_batches_of_transformed_samples(index_array, self._batch_rng(idx))

    def on_epoch_end(self):
        self.epoch += 1
        self._set_index_array()

    def reset(self):
        """Make ``next()`` start again from the first batch of the current epoch."""
        self.batch_index = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.n == 0:
            raise DataError(f"{type(self).__name__} has no samples to yield")
        with self.lock:
            idx = self.batch_index
            self.batch_index += 1
            wrap = self.batch_index >= len(self)
            if wrap:
                self.batch_index = 0
            batch = self[idx]
            if wrap:
                self.on_epoch_end()
        return batch

    next = __next__         # Keras 2 spelled it it.next()

    def _get_batches_of_transformed_samples(self, index_array, rng):
        raise NotImplementedError

    def _save_batch(self, batch_x, index_array, rng):
        for i, j in enumerate(index_array):
            img = array_to_img(batch_x[i], self.data_format, scale=True)
            fname = f"{self.save_prefix}_{j}_{int(rng.integers(10 ** 7))}.{self.save_format}"
            img.save(os.path.join(self.save_to_dir, fname))


def _iter_valid_files(directory, white_list_formats, follow_links):
    """(root, filename) of the image files under ``directory``, recursively, in sorted
    order (folders by path, then files by name)."""
    exts = tuple("." + e.lower().lstrip(".") for e in white_list_formats)
    for root, _, files in sorted(os.walk(directory, followlinks=follow_links),
                                 key=lambda t: t[0]):
        for fname in sorted(files):
            if fname.lower().endswith(exts):
                yield root, fname


class DirectoryIterator(Iterator):
    """Batches of images read from ``directory/<class>/...`` (``flow_from_directory``).

    Attributes as in Keras: ``filenames`` (paths relative to ``directory``, class folder
    first), ``filepaths``, ``classes`` (int32 class index per file), ``class_indices``
    (class name → index), ``num_classes``, ``samples`` = ``n``, ``batch_size``,
    ``image_shape``, ``labels``."""

    allowed_class_modes = set(CLASS_MODES)

    def __init__(self, directory, image_data_generator, target_size=(256, 256),
                 color_mode="rgb", classes=None, class_mode="categorical", batch_size=32,
                 shuffle=True, seed=None, data_format=None, save_to_dir=None, save_prefix="",
                 save_format="png", follow_links=False, subset=None, interpolation="nearest",
                 keep_aspect_ratio=False, dtype=None):
        self.image_data_generator = image_data_generator
        self.data_format = _data_format(data_format)
        self.target_size = _check_target_size(target_size)
        _check_choice("color_mode", color_mode, COLOR_MODES)
        _check_choice("class_mode", class_mode, CLASS_MODES)
        _check_choice("interpolation", interpolation, INTERPOLATIONS)
        self.color_mode = color_mode
        self.class_mode = class_mode
        self.interpolation = interpolation
        self.keep_aspect_ratio = keep_aspect_ratio
        self.dtype = dtype or _floatx()
        channels = {"rgb": 3, "rgba": 4, "grayscale": 1}[color_mode]
        self.image_shape = (self.target_size + (channels,) if self.data_format ==
                            "channels_last" else (channels,) + self.target_size)
        self.save_to_dir = save_to_dir
        self.save_prefix = save_prefix
        self.save_format = save_format
        self.subset = subset
        if subset is not None:
            _check_choice("subset", subset, SUBSETS)
            vs = getattr(image_data_generator, "_validation_split", 0) or 0
            if not vs:
                raise DataError(f"subset={subset!r} needs a validation_split: pass "
                                f"ImageDataGenerator(validation_split=...)")
            self.split = (0, vs) if subset == "validation" else (vs, 1)
        else:
            self.split = None

        self.directory = os.fspath(directory) if isinstance(directory, os.PathLike) \
            else directory
        if not os.path.exists(self.directory):
            raise FileNotFoundError(f"flow_from_directory: directory {self.directory!r} does "
                                    f"not exist")
        if not os.path.isdir(self.directory):
            raise NotADirectoryError(f"flow_from_directory: {self.directory!r} is not a "
                                     f"directory")
        if not classes:
            classes = sorted(d for d in os.listdir(self.directory)
                             if os.path.isdir(os.path.join(self.directory, d)))
        else:
            classes = list(classes)
            missing = [c for c in classes
                       if not os.path.isdir(os.path.join(self.directory, c))]
            if missing:
                raise DataError(f"flow_from_directory: no subdirectory for class(es) "
                                f"{', '.join(map(repr, missing))} in {self.directory!r}")
        self.num_classes = len(classes)
        self.class_indices = {c: i for i, c in enumerate(classes)}
        if class_mode == "binary" and self.num_classes != 2:
            warnings.warn(f"class_mode='binary' with {self.num_classes} classes "
                          f"({', '.join(classes)}): labels are the class indices "
                          f"0..{self.num_classes - 1}, not 0/1", stacklevel=3)

        self.filenames = []
        labels = []
        for cls in classes:
            class_dir = os.path.join(self.directory, cls)
            files = list(_iter_valid_files(class_dir, self.white_list_formats, follow_links))
            if self.split:
                # Per class, the first fraction of the sorted files is the validation part.
                start, stop = (int(self.split[0] * len(files)), int(self.split[1] * len(files)))
                files = files[start:stop]
            for root, fname in files:
                self.filenames.append(os.path.join(cls, os.path.relpath(
                    os.path.join(root, fname), class_dir)))
                labels.append(self.class_indices[cls])
        self.samples = len(self.filenames)
        self.classes = np.asarray(labels, dtype="int32")
        if self.samples == 0:
            self._raise_no_images(classes)
        print(f"Found {self.samples} images belonging to {self.num_classes} classes.")
        self._filepaths = [os.path.join(self.directory, f) for f in self.filenames]
        super().__init__(self.samples, batch_size, shuffle, seed)

    def _raise_no_images(self, classes):
        exts = ", ".join("." + e for e in self.white_list_formats)
        if not classes:
            loose = [f for f in os.listdir(self.directory) if f.lower().endswith(
                tuple("." + e for e in self.white_list_formats))]
            hint = (f" ({len(loose)} image file(s) lie directly in it: flow_from_directory "
                    f"expects one subdirectory per class — for unlabeled images put them in "
                    f"one subdirectory and pass class_mode=None)") if loose else ""
            raise DataError(f"flow_from_directory: no images found in {self.directory!r}: it "
                            f"has no class subdirectories{hint}")
        where = f" in the {self.subset!r} subset" if self.subset else ""
        raise DataError(f"flow_from_directory: no images found{where} in the class "
                        f"subdirectories of {self.directory!r} "
                        f"({', '.join(map(repr, classes))}); image files must end in {exts}")

    @property
    def filepaths(self):
        """Absolute (or ``directory``-prefixed) paths of the image files."""
        return self._filepaths

    @property
    def labels(self):
        return self.classes

    @property
    def sample_weight(self):
        return None

    def _get_batches_of_transformed_samples(self, index_array, rng):
        batch_x = np.zeros((len(index_array),) + self.image_shape, dtype=self.dtype)
        gen = self.image_data_generator
        augment = gen is not None and gen._augments
        for i, j in enumerate(index_array):
            img = load_img(self._filepaths[j], color_mode=self.color_mode,
                           target_size=self.target_size, interpolation=self.interpolation,
                           keep_aspect_ratio=self.keep_aspect_ratio)
            x = img_to_array(img, data_format=self.data_format, dtype=self.dtype)
            img.close()
            if gen is not None:
                if augment:
                    x = gen.apply_transform(x, gen.get_random_transform(x.shape, rng=rng))
                x = gen.standardize(x)
            batch_x[i] = x
        if self.save_to_dir:
            self._save_batch(batch_x, index_array, rng)
        if self.class_mode == "input":
            batch_y = batch_x.copy()
        elif self.class_mode in ("binary", "sparse"):
            batch_y = self.classes[index_array].astype(self.dtype)
        elif self.class_mode == "categorical":
            batch_y = np.zeros((len(batch_x), self.num_classes), dtype=self.dtype)
            batch_y[np.arange(len(batch_x)), self.classes[index_array]] = 1.0
        else:
            return batch_x
        return batch_x, batch_y


class NumpyArrayIterator(Iterator):
    """Batches of augmented images from arrays (``ImageDataGenerator.flow``)."""

    def __init__(self, x, y, image_data_generator, batch_size=32, shuffle=False,
                 sample_weight=None, seed=None, data_format=None, save_to_dir=None,
                 save_prefix="", save_format="png", subset=None, ignore_class_split=False,
                 dtype=None):
        self.dtype = dtype or _floatx()
        self.data_format = _data_format(data_format)
        if isinstance(x, (tuple, list)):
            x_misc = [np.asarray(a) for a in x[1]] if isinstance(x[1], list) \
                else [np.asarray(x[1])]
            x = x[0]
            for a in x_misc:
                if len(x) != len(a):
                    raise DataError(f"All of the arrays in `x` should have the same length. "
                                    f"Found a pair with: len(x[0]) = {len(x)}, "
                                    f"len(x[?]) = {len(a)}")
        else:
            x_misc = []
        if y is not None and len(x) != len(y):
            raise DataError(f"`x` (images tensor) and `y` (labels) should have the same "
                            f"length. Found: x.shape = {np.shape(x)}, y.shape = "
                            f"{np.shape(y)}")
        if sample_weight is not None and len(x) != len(sample_weight):
            raise DataError(f"`x` (images tensor) and `sample_weight` should have the same "
                            f"length. Found: x.shape = {np.shape(x)}, sample_weight.shape = "
                            f"{np.shape(sample_weight)}")
        if subset is not None:
            _check_choice("subset", subset, SUBSETS)
            vs = getattr(image_data_generator, "_validation_split", 0) or 0
            if not vs:
                raise DataError(f"subset={subset!r} needs a validation_split: pass "
                                f"ImageDataGenerator(validation_split=...)")
            split_idx = int(len(x) * vs)
            if (y is not None and not ignore_class_split and not np.array_equal(
                    np.unique(np.asarray(y)[:split_idx]),
                    np.unique(np.asarray(y)[split_idx:]))):
                raise DataError("Training and validation subsets have different number of "
                                "classes after the split. If your numpy arrays are sorted by "
                                "the label, you might want to shuffle them.")
            sl = slice(None, split_idx) if subset == "validation" else slice(split_idx, None)
            x = np.asarray(x)[sl]
            x_misc = [a[sl] for a in x_misc]
            if y is not None:
                y = np.asarray(y)[sl]
            if sample_weight is not None:
                sample_weight = np.asarray(sample_weight)[sl]
        self.x = np.asarray(x, dtype=self.dtype)
        self.x_misc = x_misc
        if self.x.ndim != 4:
            raise DataError(f"Input data in `NumpyArrayIterator` should have rank 4. You "
                            f"passed an array with shape {self.x.shape}")
        channels_axis = 3 if self.data_format == "channels_last" else 1
        if self.x.shape[channels_axis] not in (1, 3, 4):
            warnings.warn(f"NumpyArrayIterator is set to use the data format convention "
                          f"{self.data_format!r} (channels on axis {channels_axis}), i.e. "
                          f"expected either 1, 3, or 4 channels on axis {channels_axis}. "
                          f"However, it was passed an array with shape {self.x.shape} "
                          f"({self.x.shape[channels_axis]} channels).", stacklevel=3)
        self.y = None if y is None else np.asarray(y)
        self.sample_weight = None if sample_weight is None else np.asarray(sample_weight)
        self.image_data_generator = image_data_generator
        self.save_to_dir = save_to_dir
        self.save_prefix = save_prefix
        self.save_format = save_format
        super().__init__(self.x.shape[0], batch_size, shuffle, seed)

    def _get_batches_of_transformed_samples(self, index_array, rng):
        gen = self.image_data_generator
        augment = gen._augments
        batch_x = np.zeros((len(index_array),) + self.x.shape[1:], dtype=self.dtype)
        for i, j in enumerate(index_array):
            x = self.x[j].copy()          # standardize works in place: keep self.x intact
            if augment:
                x = gen.apply_transform(x, gen.get_random_transform(x.shape, rng=rng))
            batch_x[i] = gen.standardize(x)
        if self.save_to_dir:
            self._save_batch(batch_x, index_array, rng)
        misc = [a[index_array] for a in self.x_misc]
        out_x = batch_x if not misc else [batch_x] + misc
        if self.y is None:
            return out_x
        if self.sample_weight is None:
            return out_x, self.y[index_array]
        return out_x, self.y[index_array], self.sample_weight[index_array]
