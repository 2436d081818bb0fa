"""The embedded default data, and where the real data lives.

- `synthetic_sequences`: the embedded default, generated in numpy with no
  files and no network, deterministic by seed.
- `resolve_data_dir`: the folder of the real data (`data_dir`, else
  `$TFGP_DATA_DIR`) that the other data modules read.

The real data, one module per task it serves: `speech_data` (the Free
Spoken Digit Dataset, digit strings for the CTC recogniser and their
embedded synthetic twin), `lm_data` (Penn Treebank for word-level language
modelling) and `timeseries_data` (the time-series archive's classification
problems).
"""

import os

import numpy as np

from tf_gradual_prune import checks

#: Environment variable naming the folder that holds `fsdd/` and `ptb/`.
DATA_DIR_ENV = "TFGP_DATA_DIR"


def synthetic_sequences(
    num_samples=2400,
    timesteps=40,
    features=16,
    num_classes=10,
    noise=3.0,
    test_fraction=0.25,
    seed=0,
):
    """A deterministic sequence-classification task, with no data files.

    Each class is a smooth prototype trajectory (a few sinusoids of
    class-specific frequency and phase mixed into `features` channels). Each
    sample warps its class's trajectory in time and amplitude (speaker-like
    variation) and adds Gaussian noise, so that a recurrent model must
    integrate over time to classify well.

    Args:
        num_samples: Integer >= 2. Samples in all.
        timesteps: Integer >= 2. Sequence length.
        features: Integer >= 1. Channels per step.
        num_classes: Integer >= 2.
        noise: Float >= 0. Standard deviation of the added noise.
        test_fraction: Float in (0, 1). Share held out for testing.
        seed: Integer. The same seed gives the same data.

    Returns:
        `((x_train, y_train), (x_test, y_test))`, float32 inputs of shape
        `(n, timesteps, features)` and int32 labels.
    """
    for name, value, low in (
        ("num_samples", num_samples, 2),
        ("timesteps", timesteps, 2),
        ("features", features, 1),
        ("num_classes", num_classes, 2),
    ):
        checks.check_int(name, value, low)
    if not 0 < test_fraction < 1:
        raise ValueError(
            f"`test_fraction` must be in (0, 1). Received: test_fraction={test_fraction}"
        )
    if noise < 0:
        raise ValueError(f"`noise` must be >= 0. Received: noise={noise}")
    rng = np.random.default_rng(seed)
    n_waves = 3
    freqs = rng.uniform(0.5, 3.0, size=(num_classes, n_waves))
    phases = rng.uniform(0, 2 * np.pi, size=(num_classes, n_waves))
    mixing = rng.normal(size=(num_classes, n_waves, features)) / np.sqrt(n_waves)
    labels = rng.integers(0, num_classes, size=num_samples)
    warp = rng.uniform(0.8, 1.25, size=num_samples)
    shift = rng.uniform(-0.15, 0.15, size=num_samples)
    gain = rng.uniform(0.7, 1.3, size=num_samples)
    t = np.linspace(0, 1, timesteps)
    time = (t[None, :] * warp[:, None] + shift[:, None])[:, :, None]
    waves = np.sin(
        2 * np.pi * freqs[labels][:, None, :] * time + phases[labels][:, None, :]
    )
    x = np.einsum("ntw,nwf->ntf", waves, mixing[labels]) * gain[:, None, None]
    x += rng.normal(scale=noise, size=x.shape)
    x, labels = x.astype("float32"), labels.astype("int32")
    n_test = max(1, int(round(num_samples * test_fraction)))
    return (x[n_test:], labels[n_test:]), (x[:n_test], labels[:n_test])


def resolve_data_dir(data_dir=None, subfolder=None):
    """The data folder: `data_dir`, else `$TFGP_DATA_DIR`.

    Raises:
        ValueError: if neither is given, or the folder does not exist.
    """
    path = data_dir or os.environ.get(DATA_DIR_ENV)
    if not path:
        raise ValueError(
            "No data folder: pass `data_dir` or set the environment variable "
            f"{DATA_DIR_ENV}. Received: data_dir={data_dir!r}"
        )
    if subfolder and os.path.isdir(os.path.join(path, subfolder)):
        path = os.path.join(path, subfolder)
    if not os.path.isdir(path):
        raise ValueError(
            f"The data folder does not exist. Received: data_dir={path!r}"
        )
    return path
