"""``image_dataset_from_directory``: Keras 3's (``keras.utils`` /
``keras.preprocessing``) loader of an image folder, one subfolder per class.

Keras returns a ``tf.data.Dataset``; graphc has no TensorFlow, so this returns an
``ImageDataset``: a ``Sequence`` of ``(images, labels)`` numpy batches that ``fit``,
``evaluate`` and ``predict`` take as they take the ``tf.data`` object, that iterates
(``for images, labels in ds``) and carries ``class_names`` and ``file_paths``. The
``tf.data`` calls tutorials chain onto it — ``.prefetch(...)``, ``.cache()``, ``.take(n)``,
``.map(fn)``, ``.as_numpy_iterator()`` — work (``map`` runs ``fn`` on the numpy batches).

Arguments, defaults and results as Keras: images are float32 in [0, 255] (not rescaled),
resized with 'bilinear'; labels 'int' (int32), 'categorical' (float32 one-hot), 'binary'
(float32, shape ``(batch, 1)``) or None; the file list is shuffled once with ``seed`` before
``validation_split`` takes its last fraction for 'validation', and batches are reshuffled
every epoch.
"""
from __future__ import annotations

import os

import numpy as np

from graphc.errors import DataError
from graphc.frontend.seeding import global_rng
from graphc.preprocessing import image as _image

__all__ = ["image_dataset_from_directory", "ImageDataset"]

ALLOWLIST_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
LABEL_MODES = ("int", "categorical", "binary", None)


def _index_directory(directory, labels, class_names, follow_links):
    """(file paths, int labels or None, class names) in sorted order."""
    if labels == "inferred":
        subdirs = sorted(d for d in os.listdir(directory)
                         if os.path.isdir(os.path.join(directory, d)))
        if class_names:
            unknown = [c for c in class_names if c not in subdirs]
            if unknown:
                raise DataError(f"The `class_names` passed did not match the names of the "
                                f"subdirectories of the target directory. Expected: "
                                f"{subdirs} (or a subset of it), but received: "
                                f"class_names={list(class_names)}")
            subdirs = list(class_names)
        class_names = subdirs
    else:
        subdirs = [""]
        class_names = list(class_names or [])
    exts = tuple(e.lstrip(".") for e in ALLOWLIST_FORMATS)
    paths, label_ids = [], []
    for i, sub in enumerate(subdirs):
        for root, fname in _image._iter_valid_files(os.path.join(directory, sub), exts,
                                                    follow_links):
            paths.append(os.path.join(root, fname))
            label_ids.append(i)
    if labels == "inferred":
        return paths, np.asarray(label_ids, dtype="int32"), class_names
    if labels is None:
        return paths, None, class_names
    labels = np.asarray(labels)
    if len(labels) != len(paths):
        raise DataError(f"Expected the lengths of `labels` to match the number of files in "
                        f"the target directory. len(labels) is {len(labels)} while we found "
                        f"{len(paths)} files in directory {directory}.")
    return paths, labels, class_names


def image_dataset_from_directory(directory, labels="inferred", label_mode="int",
                                 class_names=None, color_mode="rgb", batch_size=32,
                                 image_size=(256, 256), shuffle=True, seed=None,
                                 validation_split=None, subset=None,
                                 interpolation="bilinear", follow_links=False,
                                 crop_to_aspect_ratio=False, pad_to_aspect_ratio=False,
                                 data_format=None, verbose=True):
    """Batches of ``(images, labels)`` from ``directory/<class>/*.png|jpg|...``.

    ``labels``: 'inferred' (from the subfolders), None, or a list of labels for the
    files in sorted path order. ``label_mode``: 'int', 'categorical', 'binary' or None.
    ``batch_size=None`` yields single images. ``subset``: 'training', 'validation' or
    'both' (returns ``[training, validation]``) with ``validation_split``.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"image_dataset_from_directory: directory {directory!r} "
                                f"does not exist" if not os.path.exists(directory) else
                                f"image_dataset_from_directory: {directory!r} is not a "
                                f"directory")
    if labels not in ("inferred", None) and not isinstance(labels, (list, tuple, np.ndarray)):
        raise DataError(f"`labels` argument should be a list/tuple of integer labels, of the "
                        f"same size as the number of image files in the target directory. "
                        f"If you wish to infer the labels from the subdirectory names in the "
                        f"target directory, pass `labels=\"inferred\"`. If you wish to get a "
                        f"dataset that only contains images (no labels), pass "
                        f"`labels=None`. Received: labels={labels!r}")
    if class_names and labels != "inferred":
        raise DataError(f"You can only pass `class_names` if `labels=\"inferred\"`. "
                        f"Received: labels={labels!r}, and class_names={class_names!r}")
    _image._check_choice("label_mode", label_mode, LABEL_MODES)
    _image._check_choice("color_mode", color_mode, _image.COLOR_MODES)
    _image._check_choice("interpolation", interpolation, _image.INTERPOLATIONS)
    image_size = _image._check_target_size(image_size)
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise DataError("Only one of `crop_to_aspect_ratio` and `pad_to_aspect_ratio` can "
                        "be set to True.")
    if batch_size is not None:
        batch_size = _image._positive_int("batch_size", batch_size)
    if labels is None or label_mode is None:
        labels, label_mode = None, None
    if validation_split is not None and not 0 < validation_split < 1:
        raise DataError(f"`validation_split` must be between 0 and 1, received: "
                        f"{validation_split}")
    if (validation_split or subset) and not (validation_split and subset):
        raise DataError("If `subset` is set, `validation_split` must be set, and inversely.")
    if subset not in ("training", "validation", "both", None):
        raise DataError(f'`subset` must be either "training", "validation" or "both", '
                        f"received: {subset!r}")
    if validation_split and shuffle and seed is None:
        raise DataError("If using `validation_split` and shuffling the data, you must "
                        "provide a `seed` argument, to make sure that there is no overlap "
                        "between the training and validation subset.")
    if seed is None:
        seed = int(global_rng().integers(0, 10 ** 6))
    data_format = _image._data_format(data_format)

    paths, label_ids, class_names = _index_directory(directory, labels, class_names,
                                                     follow_links)
    if label_mode == "binary" and len(class_names) != 2:
        raise DataError(f'When passing `label_mode="binary"`, there must be exactly 2 '
                        f"class_names. Received: class_names={class_names}")
    if verbose:
        if label_ids is None or labels != "inferred":
            print(f"Found {len(paths)} files.")
        else:
            print(f"Found {len(paths)} files belonging to {len(class_names)} classes.")
    if shuffle:
        # Once, with the seed, before the split: training and validation (two calls with
        # the same seed) then partition the same shuffled list.
        order = np.random.default_rng(seed).permutation(len(paths))
        paths = [paths[i] for i in order]
        if label_ids is not None:
            label_ids = label_ids[order]

    def split(which):
        if not validation_split:
            return paths, label_ids
        n_val = int(validation_split * len(paths))
        sl = slice(len(paths) - n_val, None) if which == "validation" else \
            slice(None, len(paths) - n_val)
        if verbose:
            what = "training" if which == "training" else "validation"
            print(f"Using {len(paths[sl])} files for {what}.")
        return paths[sl], None if label_ids is None else label_ids[sl]

    def make(which):
        p, lab = split(which)
        if not p:
            raise DataError(f"No images found in directory {directory!r}"
                            f"{f' for subset {which!r}' if validation_split else ''}. "
                            f"Allowed formats: {ALLOWLIST_FORMATS}")
        return ImageDataset(p, lab, class_names, label_mode=label_mode,
                            color_mode=color_mode, batch_size=batch_size,
                            image_size=image_size, shuffle=shuffle, seed=seed,
                            interpolation=interpolation,
                            crop_to_aspect_ratio=crop_to_aspect_ratio,
                            pad_to_aspect_ratio=pad_to_aspect_ratio, data_format=data_format)

    if subset == "both":
        return [make("training"), make("validation")]
    return make(subset or "training")


class ImageDataset:
    """A ``Sequence`` of image batches (what ``image_dataset_from_directory`` returns).

    ``ds[i]``: batch ``i`` of the current epoch; ``on_epoch_end()`` reshuffles (when
    shuffling); iterating runs one epoch. ``class_names``, ``file_paths`` as in Keras."""

    def __init__(self, file_paths, labels, class_names, label_mode="int", color_mode="rgb",
                 batch_size=32, image_size=(256, 256), shuffle=True, seed=0,
                 interpolation="bilinear", crop_to_aspect_ratio=False,
                 pad_to_aspect_ratio=False, data_format="channels_last", _fn=None):
        self.file_paths = list(file_paths)
        self.labels = labels
        self.class_names = list(class_names)
        self.label_mode = label_mode
        self.color_mode = color_mode
        self.batch_size = batch_size
        self.image_size = tuple(image_size)
        self.shuffle = shuffle
        self.seed = seed
        self.interpolation = interpolation
        self.crop_to_aspect_ratio = crop_to_aspect_ratio
        self.pad_to_aspect_ratio = pad_to_aspect_ratio
        self.data_format = data_format
        self._fn = _fn
        self._limit = None
        self.epoch = 0
        self._order = None

    # -- Sequence

    def __len__(self):
        n = len(self.file_paths)
        count = n if self.batch_size is None else (n + self.batch_size - 1) // self.batch_size
        return count if self._limit is None else min(count, self._limit)

    def _indices(self):
        if self._order is None:
            n = len(self.file_paths)
            self._order = (np.random.default_rng([self.seed, 1, self.epoch]).permutation(n)
                           if self.shuffle else np.arange(n))
        return self._order

    def __getitem__(self, idx):
        if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)):
            raise TypeError(f"batch index must be an integer; got {idx!r}")
        n = len(self)
        idx = int(idx) + (n if idx < 0 else 0)
        if not 0 <= idx < n:
            raise IndexError(f"batch index {idx} out of range for a dataset of {n} batches")
        order = self._indices()
        if self.batch_size is None:
            sel = order[idx:idx + 1]
        else:
            sel = order[idx * self.batch_size:(idx + 1) * self.batch_size]
        images = np.stack([self._load(self.file_paths[j]) for j in sel])
        if self.labels is None:
            batch = images
        else:
            lab = np.asarray(self.labels)[sel]
            if self.label_mode == "categorical":
                onehot = np.zeros((len(sel), len(self.class_names)), dtype="float32")
                onehot[np.arange(len(sel)), lab.astype(np.intp)] = 1.0
                lab = onehot
            elif self.label_mode == "binary":
                lab = lab.astype("float32").reshape(-1, 1)
            elif self.label_mode == "int":
                lab = lab.astype("int32")
            batch = (images, lab)
        if self.batch_size is None:
            batch = tuple(b[0] for b in batch) if isinstance(batch, tuple) else batch[0]
        if self._fn is not None:
            batch = self._fn(*batch) if isinstance(batch, tuple) else self._fn(batch)
        return batch

    def on_epoch_end(self):
        self.epoch += 1
        self._order = None

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]
        self.on_epoch_end()       # as tf.data reshuffles each iteration

    def _load(self, path):
        h, w = self.image_size
        img = _image.load_img(path, color_mode=self.color_mode,
                              target_size=None if self.pad_to_aspect_ratio else (h, w),
                              interpolation=self.interpolation,
                              keep_aspect_ratio=self.crop_to_aspect_ratio)
        x = _image.img_to_array(img)
        img.close()
        if self.pad_to_aspect_ratio:
            x = _pad_resize(x, (h, w), self.interpolation)
        if self.data_format == "channels_first":
            x = x.transpose(2, 0, 1)
        return x

    # -- the tf.data calls tutorials chain on

    def _derived(self, **changes):
        ds = object.__new__(ImageDataset)
        ds.__dict__.update(self.__dict__)
        ds.__dict__.update(changes)
        return ds

    def prefetch(self, buffer_size=None):
        """No-op (batches are read on demand); returns the dataset."""
        return self

    def cache(self, filename=""):
        """No-op; returns the dataset."""
        return self

    def take(self, count):
        """A view of the first ``count`` batches."""
        return self._derived(_limit=int(count) if count >= 0 else None)

    def map(self, map_func, num_parallel_calls=None):
        """A view whose batches go through ``map_func`` (called with the numpy batch's
        parts: ``map_func(images, labels)``)."""
        prev = self._fn
        if prev is None:
            fn = map_func
        else:
            def fn(*args):
                out = prev(*args)
                return map_func(*out) if isinstance(out, tuple) else map_func(out)
        return self._derived(_fn=fn)

    def as_numpy_iterator(self):
        return iter(self)

    def __repr__(self):
        return (f"<ImageDataset: {len(self.file_paths)} files, {len(self.class_names)} "
                f"classes, batch_size={self.batch_size}, image_size={self.image_size}>")


def _pad_resize(x, size, interpolation):
    """Resize keeping the aspect ratio, then pad with zeros to ``size`` (Keras'
    ``pad_to_aspect_ratio``)."""
    h, w = x.shape[:2]
    th, tw = size
    scale = min(th / h, tw / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    img = _image.array_to_img(x, scale=False)
    resized = _image.img_to_array(img.resize((nw, nh), _image._resample(interpolation)))
    out = np.zeros((th, tw, x.shape[2]), dtype=np.float32)
    top, left = (th - nh) // 2, (tw - nw) // 2
    out[top:top + nh, left:left + nw] = resized
    return out
