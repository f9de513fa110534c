"""Real data that ships offline — scikit-learn's 8×8 digits and the English text of ``pydoc_data`` —
and the reader's own: any UTF-8 text file (e.g. Wikitext-103 raw) and a CIFAR-10 directory in its
binary format (raw bytes; nothing is unpickled).

The loaders make a fixed, seeded train/validation split (CIFAR-10 keeps its own), so every run of
the book (and every reader's run) trains and validates on the same examples. Nothing is downloaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lrt.core.errors import LrtError
from lrt.core import checks as _checks

__all__ = [
    "ImageSplit",
    "TextSplit",
    "digits_split",
    "cifar10_split",
    "read_text",
    "text_split",
    "text_batch",
    "text_windows",
    "unigram_cross_entropy",
]


@dataclass(frozen=True)
class ImageSplit:
    """Images and labels: ``x_train`` ``(N_train, 8, 8)`` float64 in [0, 1] (digits) or ``(N_train, 3,
    32, 32)`` uint8 bytes (CIFAR-10, divided by 255 when a batch is drawn), ``y_train`` ``(N_train,)``
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
    val_fraction = _val_fraction(val_fraction)
    seed = _checks.positive_int("seed", seed, minimum=0)
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.as_tensor(digits.images, dtype=dtype) / 16.0
    y = torch.as_tensor(digits.target, dtype=torch.int64)
    perm = _seeded_permutation(len(y), seed)
    n_val = int(round(val_fraction * len(y)))
    val, train = perm[:n_val].sort().values, perm[n_val:].sort().values
    return ImageSplit(x[train], y[train], x[val], y[val], n_classes=10)


#: One CIFAR-10 binary record: a label byte, then the 1024 red, 1024 green and 1024 blue bytes of a
#: 32×32 image, each plane in row-major order.
CIFAR10_RECORD = 1 + 3 * 32 * 32


def _cifar10_file(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % CIFAR10_RECORD:
        raise LrtError(f"images: {str(path)!r} holds {raw.size} bytes; expected CIFAR-10 binary records of {CIFAR10_RECORD} bytes "
                       "(1 label byte + 3072 pixel bytes)")
    records = raw.reshape(-1, CIFAR10_RECORD)
    labels = records[:, 0]
    if labels.max() > 9:
        i = int(np.argmax(labels > 9))
        raise LrtError(f"images: {str(path)!r} record {i} has label byte {int(labels[i])}; expected a class 0-9 (CIFAR-10's binary format)")
    return torch.from_numpy(records[:, 1:].reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels.astype(np.int64))


def cifar10_split(directory) -> ImageSplit:
    """CIFAR-10 in its *binary* distribution format, read as raw bytes (nothing is unpickled or
    downloaded): the training images are the files ``data_batch_*.bin`` (in name order), the
    validation images ``test_batch.bin``; each file is a sequence of 3073-byte records, a label byte
    0–9 followed by the red, green and blue planes of a 32×32 image in row-major order.

    Arguments:
        directory: the folder holding the ``.bin`` files (``cifar-10-batches-bin`` once unpacked).

    Returns:
        :class:`ImageSplit` with ``uint8`` images ``(N, 3, 32, 32)``.

    Defined in :ref:`ch-beyond-diagonal`.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise LrtError(f"images: expected a directory in CIFAR-10's binary format (data_batch_*.bin, test_batch.bin), got {str(directory)!r}")
    train_files = sorted(directory.glob("data_batch_*.bin"))
    if not train_files:
        raise LrtError(f"images: no training file data_batch_*.bin in {str(directory)!r} (expected CIFAR-10's binary format)")
    test_file = directory / "test_batch.bin"
    if not test_file.is_file():
        raise LrtError(f"images: no validation file test_batch.bin in {str(directory)!r} (expected CIFAR-10's binary format)")
    parts = [_cifar10_file(f) for f in train_files]
    x_val, y_val = _cifar10_file(test_file)
    return ImageSplit(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), x_val, y_val, n_classes=10)


def _pydoc_text() -> str:
    from pydoc_data.topics import topics

    return "".join(topics[key] for key in sorted(topics))


def read_text(path) -> str:
    """The contents of the UTF-8 text file ``path``; an :class:`LrtError` naming the file if it is
    missing or not UTF-8.

    Defined in :ref:`ch-beyond-diagonal`.
    """
    path = Path(path)
    if not path.is_file():
        raise LrtError(f"text: expected an existing UTF-8 text file, got {str(path)!r} (no such file)")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise LrtError(f"text: {str(path)!r} is not UTF-8 text (byte {err.start}: {err.reason}); expected a UTF-8 file such as Wikitext-103 raw") from None


def _char_ids(text: str) -> tuple[torch.Tensor, str]:
    """Ids of the characters of ``text`` in a vocabulary of its distinct characters sorted by code
    point (as ``sorted(set(text))``), vectorised: a file of hundreds of MB takes seconds."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    present = np.flatnonzero(np.bincount(codes))
    lookup = np.zeros(int(present[-1]) + 1, dtype=np.int64)
    lookup[present] = np.arange(present.size)
    return torch.from_numpy(lookup[codes]), "".join(map(chr, present.tolist()))


def text_split(path=None, *, block: int = 2048, val_fraction: float = 0.1, seed: int = 0) -> TextSplit:
    """Character ids of a text: by default the English text of Python's help topics
    (``pydoc_data.topics``, about 465 000 characters, in sorted topic order), or the UTF-8 file
    ``path`` (e.g. Wikitext-103 raw). The text is cut into blocks of ``block`` characters and a
    fixed random share ``val_fraction`` of the blocks (seeded) is the validation text; each part is
    the concatenation of its blocks in text order. The vocabulary is every character of the text.

    Arguments:
        path: a UTF-8 text file, or None for the help topics.
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
    val_fraction = _val_fraction(val_fraction)
    seed = _checks.positive_int("seed", seed, minimum=0)
    text = _pydoc_text() if path is None else read_text(path)
    n_blocks = -(-len(text) // block)
    n_val = max(1, int(round(val_fraction * n_blocks)))
    if n_val >= n_blocks:
        where = "the help topics" if path is None else repr(str(path))
        raise LrtError(f"text: {where} has {len(text)} characters; expected at least 2 blocks of {block} characters "
                       f"with val_fraction = {val_fraction} leaving one for training")
    ids, vocab = _char_ids(text)
    is_val = torch.zeros(n_blocks, dtype=torch.bool)
    is_val[_seeded_permutation(n_blocks, seed)[:n_val]] = True
    in_val = is_val.repeat_interleave(block)[: ids.numel()]  # blocks in text order
    return TextSplit(ids[~in_val], ids[in_val], vocab)


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


def _val_fraction(value) -> float:
    """The held-out share of a split: a number strictly between 0 and 1."""
    value = _checks.fraction("val_fraction", value)
    if not 0 < value < 1:
        raise LrtError(f"val_fraction: expected a number in (0, 1), got {value!r}")
    return value
