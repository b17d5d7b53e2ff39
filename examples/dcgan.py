"""A tiny DCGAN on the bundled 8x8 digits, in the classic Keras idiom.

The generator is a Sequential of Dense -> Reshape -> Conv2DTranspose (strides 2) ->
BatchNormalization -> LeakyReLU -> Conv2DTranspose (strides 2, tanh): 2x2 -> 4x4 -> 8x8x1,
the digits scaled to [-1, 1]. The discriminator is a Sequential of strided Conv2D and
LeakyReLU ending in Dense(1, sigmoid).

The idiom the Keras tutorials teach, which this file keeps as they write it:

    discriminator.compile(...)            # trainable: D.train_on_batch updates D
    discriminator.trainable = False
    combined = Sequential([generator, discriminator])
    combined.compile(...)                 # compiled with D frozen: only G learns here

then per batch ``discriminator.train_on_batch`` on real and fake images and
``combined.train_on_batch`` on noise with "real" labels. What is trainable is fixed when a
model is compiled (Keras), so freezing D after its own compile freezes it only inside the
combined model. ``main()`` checks exactly that on every step — the discriminator's weights
are bit-identical across each ``combined.train_on_batch`` and the generator's change — and
that the losses stay finite; it prints the mean losses per epoch.

    python examples/dcgan.py [--epochs 10] [--batch-size 64]
"""
import argparse
import sys
import time

import numpy as np

from graphc.datasets import digits
from graphc.layers import (BatchNormalization, Conv2D, Conv2DTranspose, Dense, Flatten,
                           LeakyReLU, Reshape)
from graphc.models import Sequential
from graphc.optimizers import Adam
from graphc.utils import set_random_seed

LATENT_DIM = 16


def build_generator():
    return Sequential([
        Dense(2 * 2 * 32, input_shape=(LATENT_DIM,)),
        LeakyReLU(0.2),
        Reshape((2, 2, 32)),
        Conv2DTranspose(16, 4, strides=2, padding="same"),                    # 4x4
        BatchNormalization(momentum=0.8),     # as the Keras-GAN examples: tracks G fast
        LeakyReLU(0.2),
        Conv2DTranspose(1, 4, strides=2, padding="same", activation="tanh"),  # 8x8
    ], name="generator")


def build_discriminator():
    return Sequential([
        Conv2D(16, 3, strides=2, padding="same", input_shape=(8, 8, 1)),      # 4x4
        LeakyReLU(0.2),
        Conv2D(32, 3, strides=2, padding="same"),                             # 2x2
        LeakyReLU(0.2),
        Flatten(),
        Dense(1, activation="sigmoid"),
    ], name="discriminator")


def build_gan():
    """(generator, discriminator, combined), compiled in the order the idiom needs."""
    generator = build_generator()
    discriminator = build_discriminator()
    discriminator.compile(optimizer=Adam(learning_rate=2e-4, beta_1=0.5),
                          loss="binary_crossentropy", metrics=["accuracy"])
    discriminator.trainable = False
    combined = Sequential([generator, discriminator], name="combined")
    combined.compile(optimizer=Adam(learning_rate=2e-4, beta_1=0.5),
                     loss="binary_crossentropy")
    return generator, discriminator, combined


def build_model():
    """The combined model: its train graph updates the generator only."""
    return build_gan()[2]


def load_images():
    """The training digits as float32 images in [-1, 1] (tanh's range), (N, 8, 8, 1)."""
    (x_train, _), _ = digits.load_data()
    x = x_train.astype("float32") / digits.MAX_PIXEL
    return (x * 2.0 - 1.0).reshape(-1, 8, 8, 1)


def _snapshot(model):
    return [w.copy() for w in model.get_weights()]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def train(epochs, batch_size=64, seed=0, verbose=True):
    """Train the GAN; a dict of the per-epoch mean losses and the freezing checks."""
    set_random_seed(seed)
    rng = np.random.default_rng(seed)
    images = load_images()
    generator, discriminator, combined = build_gan()
    real_labels = np.ones((batch_size, 1), "float32")
    fake_labels = np.zeros((batch_size, 1), "float32")
    history = {"d_loss": [], "g_loss": []}
    d_frozen_in_combined = True   # D bit-identical across every combined.train_on_batch
    g_learns_in_combined = True   # G changed by every combined.train_on_batch
    d_learns_alone = True         # D changed by its own train_on_batch
    steps = len(images) // batch_size
    for epoch in range(epochs):
        d_losses, g_losses = [], []
        order = rng.permutation(len(images))
        for step in range(steps):
            real = images[order[step * batch_size:(step + 1) * batch_size]]
            noise = rng.standard_normal((batch_size, LATENT_DIM)).astype("float32")
            fake = generator.predict(noise, verbose=0)
            d_before = _snapshot(discriminator)
            d_real = discriminator.train_on_batch(real, real_labels)
            d_fake = discriminator.train_on_batch(fake, fake_labels)
            d_learns_alone &= not _same(d_before, _snapshot(discriminator))

            noise = rng.standard_normal((batch_size, LATENT_DIM)).astype("float32")
            d_before, g_before = _snapshot(discriminator), _snapshot(generator)
            g_loss = combined.train_on_batch(noise, real_labels)
            d_frozen_in_combined &= _same(d_before, _snapshot(discriminator))
            g_learns_in_combined &= not _same(g_before, _snapshot(generator))

            d_losses.append(0.5 * (np.ravel(d_real)[0] + np.ravel(d_fake)[0]))
            g_losses.append(float(np.ravel(g_loss)[0]))
        history["d_loss"].append(float(np.mean(d_losses)))
        history["g_loss"].append(float(np.mean(g_losses)))
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs} - d_loss: {history['d_loss'][-1]:.4f} - "
                  f"g_loss: {history['g_loss'][-1]:.4f}")
    samples = generator.predict(rng.standard_normal((16, LATENT_DIM)).astype("float32"),
                                verbose=0)
    return {"history": history, "d_frozen_in_combined": d_frozen_in_combined,
            "g_learns_in_combined": g_learns_in_combined, "d_learns_alone": d_learns_alone,
            "finite": bool(np.all(np.isfinite(history["d_loss"] + history["g_loss"]))),
            "samples": samples}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    result = train(args.epochs, args.batch_size, args.seed)
    samples = result["samples"]
    print(f"Trained {args.epochs} epochs in {time.perf_counter() - start:.1f} s")
    print(f"Generated images: shape {samples.shape[1:]}, values in "
          f"[{samples.min():.3f}, {samples.max():.3f}]")
    checks = {
        "discriminator frozen in combined.train_on_batch": result["d_frozen_in_combined"],
        "generator updated by combined.train_on_batch": result["g_learns_in_combined"],
        "discriminator updated by its own train_on_batch": result["d_learns_alone"],
        "losses finite": result["finite"],
    }
    for what, ok in checks.items():
        print(f"{what}: {'yes' if ok else 'NO'}")
    if not all(checks.values()):
        print("FAILED: " + ", ".join(w for w, ok in checks.items() if not ok),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
