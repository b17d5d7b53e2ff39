"""``graphc.preprocessing``: Keras' data preprocessing, under the same import paths —
``graphc.preprocessing.image`` (``ImageDataGenerator``, ``load_img``, ...),
``graphc.preprocessing.sequence`` (``pad_sequences``, ``TimeseriesGenerator``),
``graphc.preprocessing.text`` (``Tokenizer``), and ``image_dataset_from_directory``.

Everything here is numpy (+ Pillow for image files) and runs before the compiled graph: the
iterators produce the numpy batches ``fit``/``evaluate``/``predict`` consume.
"""
from graphc.preprocessing import image, sequence, text
from graphc.preprocessing.dataset import image_dataset_from_directory

__all__ = ["image", "sequence", "text", "image_dataset_from_directory"]
