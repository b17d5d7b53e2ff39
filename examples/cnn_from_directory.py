"""A CNN trained from a directory of images with ``ImageDataGenerator.flow_from_directory``.

The Keras tutorial idiom, unchanged but for the import: ``ImageDataGenerator(rescale=1./255)``,
``flow_from_directory(..., class_mode='binary')`` and ``model.fit(train_generator,
steps_per_epoch=..., epochs=...)`` on a Conv2D → MaxPooling2D → Flatten → Dense → Dense
(sigmoid) model. The images are made up on the spot: a temporary folder with the usual
``train/<class>/*.png`` and ``validation/<class>/*.png`` layout, two classes — a horizontal
or a vertical bar of random colour, size and position on a noisy background, drawn at
48x48 and read back resized to 32x32 (``target_size``). The training generator also
flips and shifts the images at random. Prints the validation accuracy; exits with status 1
if it is below 0.9.

    python examples/cnn_from_directory.py [--epochs 8] [--target reference|cpu|cuda]
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

import graphc
from graphc.layers import Conv2D, Dense, Flatten, MaxPooling2D
from graphc.models import Sequential
from graphc.preprocessing.image import ImageDataGenerator
from graphc.utils import set_random_seed

CLASSES = ("horizontal", "vertical")  # sorted: flow_from_directory labels them 0, 1
IMAGE_SIZE = 48                      # as drawn; read back at TARGET_SIZE
TARGET_SIZE = (32, 32)
REQUIRED_ACCURACY = 0.9


def build_model():
    model = Sequential()
    model.add(Conv2D(16, (3, 3), activation="relu", input_shape=TARGET_SIZE + (3,)))
    model.add(MaxPooling2D((2, 2)))
    model.add(Flatten())
    model.add(Dense(64, activation="relu"))
    model.add(Dense(1, activation="sigmoid"))
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model


def draw_image(shape: str, rng: np.random.Generator):
    """One IMAGE_SIZE² RGB picture of ``shape``: a 'horizontal' or 'vertical' bar."""
    from PIL import Image, ImageDraw
    noise = rng.integers(0, 90, size=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    img = Image.fromarray(noise, "RGB")
    # A bar 20-36 pixels long and 5-9 thick, anywhere inside the picture, in a bright
    # colour so that it stands out of the dark noise.
    length, thick = int(rng.integers(20, 37)), int(rng.integers(5, 10))
    w, h = (length, thick) if shape == "horizontal" else (thick, length)
    left = int(rng.integers(1, IMAGE_SIZE - w))
    top = int(rng.integers(1, IMAGE_SIZE - h))
    colour = tuple(int(v) for v in rng.integers(140, 256, size=3))
    ImageDraw.Draw(img).rectangle((left, top, left + w - 1, top + h - 1), fill=colour)
    return img


def write_image_folder(root: str, n_train: int, n_validation: int, seed: int = 0):
    """``root/train/<class>/*.png`` and ``root/validation/<class>/*.png``, ``n_*`` images
    per class."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("validation", n_validation)):
        for cls in CLASSES:
            folder = os.path.join(root, split, cls)
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                draw_image(cls, rng).save(os.path.join(folder, f"{cls}_{i:04d}.png"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-per-class", type=int, default=240)
    parser.add_argument("--validation-per-class", type=int, default=60)
    parser.add_argument("--target", choices=graphc.config.KNOWN_TARGETS, default=None,
                        help="backend (default: %s)" % graphc.config.default_target())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    set_random_seed(args.seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="graphc_shapes_") as root:
        write_image_folder(root, args.train_per_class, args.validation_per_class, args.seed)

        train_datagen = ImageDataGenerator(rescale=1. / 255, horizontal_flip=True,
                                           width_shift_range=0.1, height_shift_range=0.1)
        validation_datagen = ImageDataGenerator(rescale=1. / 255)
        train_generator = train_datagen.flow_from_directory(
            os.path.join(root, "train"), target_size=TARGET_SIZE,
            batch_size=args.batch_size, class_mode="binary")
        validation_generator = validation_datagen.flow_from_directory(
            os.path.join(root, "validation"), target_size=TARGET_SIZE,
            batch_size=args.batch_size, class_mode="binary", shuffle=False)
        print(f"Classes: {train_generator.class_indices}")

        model = build_model()
        if args.target:
            model.compile(optimizer="adam", loss="binary_crossentropy",
                          metrics=["accuracy"], target=args.target)
        # The tutorials' steps_per_epoch: one pass over the training images per epoch.
        history = model.fit(train_generator,
                            steps_per_epoch=train_generator.samples // args.batch_size,
                            epochs=args.epochs, verbose=0)
        loss, accuracy = model.evaluate(validation_generator, verbose=0)
    seconds = time.perf_counter() - start

    losses = history.history["loss"]
    print(f"Training loss: {losses[0]:.4f} (first epoch) -> {losses[-1]:.4f} (last)")
    print(f"Validation loss: {loss:.4f}")
    print(f"Validation accuracy: {accuracy:.4f}")
    print(f"Total time (images written, read, trained): {seconds:.1f} s")
    if accuracy < REQUIRED_ACCURACY:
        print(f"FAILED: validation accuracy {accuracy:.4f} is below {REQUIRED_ACCURACY}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
