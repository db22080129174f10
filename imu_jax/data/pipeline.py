"""A minimal input pipeline: seeded per-epoch shuffling, per-process slices, CIFAR augmentation.

Examples:
  >>> data = {"x": np.arange(10), "label": np.arange(10) % 2}
  >>> [b["x"].tolist() for b in batches(data, 4, seed=0, shuffle=False)]
  [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
  >>> [b["x"].tolist() for b in batches(data, 4, seed=0, shuffle=False, process_index=1,
  ...                                    process_count=2, drop_remainder=True)]
  [[1, 3], [5, 7]]
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import numpy as np


def random_crop_flip(images: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
    """Random ``pad``-padded crop back to the input size, then a random horizontal flip.

    >>> x = np.arange(2 * 4 * 4 * 1, dtype=np.float32).reshape(2, 4, 4, 1)
    >>> random_crop_flip(x, np.random.default_rng(0)).shape
    (2, 4, 4, 1)
    """
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    dy = rng.integers(0, 2 * pad + 1, size=n)
    dx = rng.integers(0, 2 * pad + 1, size=n)
    rows = dy[:, None] + np.arange(h)[None, :]
    cols = dx[:, None] + np.arange(w)[None, :]
    flip = rng.random(n) < 0.5
    cols = np.where(flip[:, None], cols[:, ::-1], cols)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def num_batches(n: int, batch_size: int, drop_remainder: bool = False) -> int:
    """Number of (global) batches per epoch.

    >>> num_batches(10, 4), num_batches(10, 4, drop_remainder=True)
    (3, 2)
    """
    return n // batch_size if drop_remainder else -(-n // batch_size)


def batches(
    arrays: dict[str, np.ndarray],
    batch_size: int,
    *,
    seed: int,
    epoch: int = 0,
    shuffle: bool = True,
    drop_remainder: bool = False,
    augment: bool = False,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Yields this process's slice of each global batch of ``batch_size`` examples.

    The order is a pure function of ``(seed, epoch)``, the same on every process; process ``i``
    of ``p`` gets rows ``i::p`` of each global batch (so ``batch_size`` must divide by ``p``).
    ``augment`` applies :func:`random_crop_flip` to ``"image"``.
    """
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    if batch_size % pc:
        raise ValueError(f"batch_size {batch_size} must be divisible by process_count {pc}.")
    n = len(next(iter(arrays.values())))
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n) if shuffle else np.arange(n)
    for b in range(num_batches(n, batch_size, drop_remainder)):
        idx = order[b * batch_size : (b + 1) * batch_size][pi::pc]
        batch = {k: v[idx] for k, v in arrays.items()}
        if augment and "image" in batch:
            aug_rng = np.random.default_rng([seed, epoch, b, pi])
            batch["image"] = random_crop_flip(batch["image"], aug_rng)
        yield batch
