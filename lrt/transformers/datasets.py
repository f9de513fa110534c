"""Real data that ships offline: scikit-learn's 8×8 digits and the English text of ``pydoc_data``.

Both loaders make a fixed, seeded train/validation split, so every run of the book (and every
reader's run) trains and validates on the same examples. Nothing is downloaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lrt.core.errors import LrtError
from lrt.core import checks as _checks

__all__ = ["ImageSplit", "TextSplit", "digits_split", "text_split", "text_batch", "text_windows", "unigram_cross_entropy"]


@dataclass(frozen=True)
class ImageSplit:
    """Images and labels: ``x_train`` ``(N_train, 8, 8)`` float64 in [0, 1], ``y_train`` ``(N_train,)``
    int64, and the same for validation."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    n_classes: int


@dataclass(frozen=True)
class TextSplit:
    """Character ids: ``train`` ``(n_train,)`` and ``val`` ``(n_val,)`` int64; ``vocab`` the characters
    in id order (a string)."""

    train: torch.Tensor
    val: torch.Tensor
    vocab: str

    def decode(self, ids) -> str:
        """The characters of a sequence of ids."""
        return "".join(self.vocab[int(i)] for i in ids)


def _seeded_permutation(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator()
    gen.manual_seed(seed)
    return torch.randperm(n, generator=gen)


def digits_split(*, val_fraction: float = 0.2, seed: int = 0, dtype: torch.dtype = torch.float64) -> ImageSplit:
    """scikit-learn's bundled handwritten digits (1797 images, 8×8, 10 classes), pixel values
    divided by 16, split at random (fixed ``seed``) into train and validation.

    Arguments:
        val_fraction: share of the images held out, in (0, 1) (default 0.2: 1438 train, 359 validation).
        seed: the seed of the split (an int).
        dtype: floating dtype of the images (default float64).

    Returns:
        :class:`ImageSplit`.

    >>> data = digits_split()
    >>> tuple(data.x_train.shape), tuple(data.x_val.shape), data.n_classes
    ((1438, 8, 8), (359, 8, 8), 10)

    Defined in :ref:`ch-beyond-diagonal`.
    """
    val_fraction = _checks.fraction("val_fraction", val_fraction)
    if not 0 < val_fraction < 1:
        raise LrtError(f"val_fraction: expected a number in (0, 1), got {val_fraction!r}")
    seed = _checks.positive_int("seed", seed, minimum=0)
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.as_tensor(digits.images, dtype=dtype) / 16.0
    y = torch.as_tensor(digits.target, dtype=torch.int64)
    perm = _seeded_permutation(len(y), seed)
    n_val = int(round(val_fraction * len(y)))
    val, train = perm[:n_val].sort().values, perm[n_val:].sort().values
    return ImageSplit(x[train], y[train], x[val], y[val], n_classes=10)


def _pydoc_text() -> str:
    from pydoc_data.topics import topics

    return "".join(topics[key] for key in sorted(topics))


def text_split(*, block: int = 2048, val_fraction: float = 0.1, seed: int = 0) -> TextSplit:
    """The English text of Python's help topics (``pydoc_data.topics``, about 465 000 characters, in
    sorted topic order), as character ids. The text is cut into blocks of ``block`` characters and a
    fixed random share ``val_fraction`` of the blocks (seeded) is the validation text; each part is
    the concatenation of its blocks in text order. The vocabulary is every character of the text.

    Arguments:
        block: block length in characters (≥ 64).
        val_fraction: share of blocks held out, in (0, 1).
        seed: the seed of the split.

    Returns:
        :class:`TextSplit`.

    >>> data = text_split()
    >>> len(data.vocab), data.train.numel() + data.val.numel()
    (103, 464970)

    Defined in :ref:`ch-beyond-diagonal`.
    """
    block = _checks.positive_int("block", block, minimum=64)
    val_fraction = _checks.fraction("val_fraction", val_fraction)
    if not 0 < val_fraction < 1:
        raise LrtError(f"val_fraction: expected a number in (0, 1), got {val_fraction!r}")
    seed = _checks.positive_int("seed", seed, minimum=0)
    text = _pydoc_text()
    vocab = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.int64)
    blocks = list(torch.split(ids, block))
    n_val = max(1, int(round(val_fraction * len(blocks))))
    is_val = torch.zeros(len(blocks), dtype=torch.bool)
    is_val[_seeded_permutation(len(blocks), seed)[:n_val]] = True
    train = torch.cat([b for b, v in zip(blocks, is_val) if not v])
    val = torch.cat([b for b, v in zip(blocks, is_val) if v])
    return TextSplit(train, val, vocab)


def text_batch(ids: torch.Tensor, *, context: int, batch: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of random windows of ``ids`` for next-character prediction.

    Arguments:
        ids: character ids, shape ``(n,)`` int64.
        context: window length T.
        batch: number of windows B.
        generator: a ``torch.Generator`` or an int seed (the window starts).

    Returns:
        inputs ``(B, T)`` and targets ``(B, T)`` (the inputs shifted by one character).

    >>> x, y = text_batch(torch.arange(100), context=8, batch=2, generator=0)
    >>> tuple(x.shape), bool((y == x + 1).all())
    ((2, 8), True)

    Defined in :ref:`ch-beyond-diagonal`.
    """
    context = _checks.positive_int("context", context)
    batch = _checks.positive_int("batch", batch)
    gen = _checks.generator("generator", generator)
    if ids.dim() != 1 or ids.numel() <= context + 1:
        raise LrtError(f"ids: expected a 1-D tensor longer than context + 1 = {context + 1}, got shape {tuple(ids.shape)}")
    starts = torch.randint(0, ids.numel() - context - 1, (batch,), generator=gen)
    offsets = torch.arange(context)
    x = ids[starts[:, None] + offsets]
    y = ids[starts[:, None] + offsets + 1]
    return x, y


def text_windows(ids: torch.Tensor, *, context: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` evenly spaced, non-random windows of ``ids`` (a fixed validation set).

    Returns inputs and targets, each ``(count, context)`` int64.

    >>> x, y = text_windows(torch.arange(100), context=4, count=3)
    >>> x[:, 0].tolist()
    [0, 48, 95]

    Defined in :ref:`ch-beyond-diagonal`.
    """
    context = _checks.positive_int("context", context)
    count = _checks.positive_int("count", count)
    if ids.dim() != 1 or ids.numel() <= context + 1:
        raise LrtError(f"ids: expected a 1-D tensor longer than context + 1 = {context + 1}, got shape {tuple(ids.shape)}")
    last = ids.numel() - context - 1
    starts = torch.linspace(0, last, count).round().to(torch.int64)
    offsets = torch.arange(context)
    return ids[starts[:, None] + offsets], ids[starts[:, None] + offsets + 1]


def unigram_cross_entropy(data: TextSplit) -> float:
    """The validation loss (nats per character) of the best model that ignores context: predict every
    character with its training frequency (add-one smoothed over the vocabulary).

    >>> round(unigram_cross_entropy(text_split()), 3)  # doctest: +ELLIPSIS
    3...

    Defined in :ref:`ch-beyond-diagonal`.
    """
    counts = torch.bincount(data.train, minlength=len(data.vocab)).to(torch.float64) + 1.0
    logp = torch.log(counts / counts.sum())
    return float(-logp[data.val].mean()) if data.val.numel() else math.nan
