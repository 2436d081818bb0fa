"""Sequence-classification problems of the time-series archive.

`ts_classification` loads a problem (`JapaneseVowels` by default) from a
folder of `.ts` files, by default the files the PyPI package aeon ships
(`aeon_data_dir`); `read_ts` reads one such file.
"""

import os

import numpy as np

#: The time-series archive's files that the PyPI package `aeon` ships in its
#: wheel (`pip install --no-deps aeon`: only the files are read, aeon itself
#: is never imported, so its numpy 2 requirement does not apply).
AEON_INSTALL = "pip install --no-deps aeon==1.6.0"


def aeon_data_dir():
    """The folder of the datasets the installed `aeon` package ships.

    Raises:
        ValueError: if `aeon` is not installed (the message says how).
    """
    import importlib.util

    spec = importlib.util.find_spec("aeon")  # finds the package, imports nothing
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        data = os.path.join(folder, "datasets", "data")
        if os.path.isdir(data):
            return data
    raise ValueError(
        "The time-series archive files come with the PyPI package aeon, which "
        f"is not installed. Install its files with `{AEON_INSTALL}`, or pass "
        "`data_dir`, a folder holding `<name>/<name>_TRAIN.ts`."
    )


def read_ts(path):
    """Reads a classification problem in the time-series archive's `.ts` format.

    Each line after `@data` is one sequence: its channels separated by `:`,
    each a comma-separated list of values, then the class label.

    Args:
        path: String. A `.ts` file with `@classLabel true ...`.

    Returns:
        `(sequences, labels, classes)`: a list of float32 arrays of shape
        `(length, channels)`, the label of each (an index into `classes`),
        and the class names in the file's order.

    Raises:
        ValueError: for a file with no class labels, no data, ragged
            channels or a label not declared, naming the file and line.
    """
    classes, sequences, labels, in_data = None, [], [], False
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                lowered = line.lower()
                if lowered.startswith("@classlabel"):
                    words = line.split()
                    if len(words) < 3 or words[1].lower() != "true":
                        raise ValueError(f"{path!r}, line {number}: no class labels "
                                         f"declared: {line!r}")
                    classes = words[2:]
                in_data = lowered == "@data"
                continue
            *channels, label = line.split(":")
            if classes is None:
                raise ValueError(f"{path!r}: data before `@classLabel true ...`.")
            if label not in classes:
                raise ValueError(f"{path!r}, line {number}: label {label!r} is not one of "
                                 f"the declared classes {classes}.")
            values = [np.array(c.split(","), dtype=np.float32) for c in channels]
            if not values or len({len(v) for v in values}) != 1:
                raise ValueError(f"{path!r}, line {number}: channels of different lengths "
                                 f"{[len(v) for v in values]}.")
            sequences.append(np.stack(values, axis=1))
            labels.append(classes.index(label))
    if not sequences:
        raise ValueError(f"{path!r} holds no sequences after `@data`.")
    return sequences, labels, classes


def ts_classification(name="JapaneseVowels", data_dir=None):
    """A sequence-classification problem of the time-series archive.

    `JapaneseVowels` (the default; Kudo et al. 1999, UCI): nine speakers say
    the vowels /ae/, each utterance 7-29 frames of 12 LPC cepstrum
    coefficients; the task is the speaker. 270 training and 370 test
    utterances.

    Args:
        name: String. The problem's folder and file name stem.
        data_dir: String or `None`: a folder holding
            `<name>/<name>_TRAIN.ts` and `_TEST.ts`; `None` means the files
            the PyPI package aeon ships (see `aeon_data_dir`).

    Returns:
        `((x_train, y_train), (x_test, y_test), classes)` with lists of
        float32 arrays `(length, channels)` and int64 label arrays.
    """
    folder = os.path.join(aeon_data_dir() if data_dir is None else data_dir, name)
    paths = [os.path.join(folder, f"{name}_{split}.ts") for split in ("TRAIN", "TEST")]
    for path in paths:
        if not os.path.exists(path):
            raise ValueError(f"No {name!r} problem in {os.path.dirname(folder)!r}: "
                             f"{path!r} does not exist.")
    (x, y, classes), (xt, yt, test_classes) = (read_ts(p) for p in paths)
    if test_classes != classes:
        raise ValueError(f"{name!r}: the test file declares classes {test_classes}, the "
                         f"training file {classes}.")
    return (x, np.array(y)), (xt, np.array(yt)), classes
