"""Data for examples, tests and benchmarks.

- `synthetic_sequences`: the embedded default, generated in numpy with no
  files and no network, deterministic by seed.
- `fsdd_digits`: the Free Spoken Digit Dataset (real speech, 6 speakers x
  10 digits x 50 takes) from a local folder, as log-mel sequences for
  sequence classification.
"""

import glob
import os

import numpy as np

#: Environment variable naming the folder that holds `fsdd/` and `ptb/`.
DATA_DIR_ENV = "TFGP_DATA_DIR"

FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")


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
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"`{name}` must be an integer. Received: {name}={value!r}")
        if value < low:
            raise ValueError(f"`{name}` must be >= {low}. Received: {name}={value}")
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


def log_mel(audio, sample_rate, num_mel_bins=40, frame_ms=25, step_ms=10):
    """Log-mel features of a mono waveform (pure TensorFlow).

    Args:
        audio: Float tensor in [-1, 1], shape `(samples,)` or
            `(batch, samples)`.
        sample_rate: Integer, in Hz.

    Returns:
        A float32 tensor of shape `(..., frames, num_mel_bins)`.
    """
    import tensorflow as tf

    frame = int(sample_rate * frame_ms / 1000)
    step = int(sample_rate * step_ms / 1000)
    fft = 1 << (frame - 1).bit_length()
    stft = tf.signal.stft(audio, frame, step, fft, pad_end=True)
    weights = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins, fft // 2 + 1, sample_rate, 20.0, sample_rate / 2
    )
    return tf.math.log(tf.matmul(tf.abs(stft) ** 2, weights) + 1e-6)


def fsdd_digits(data_dir=None, split="speaker", test_speaker="yweweler",
                max_seconds=1.0, num_mel_bins=40):
    """Free Spoken Digit Dataset recordings as log-mel sequences.

    Args:
        data_dir: String or `None`. A folder holding `recordings/` (or
            `fsdd/recordings/`); `None` reads `$TFGP_DATA_DIR`.
        split: `"speaker"` (train on five speakers, test on
            `test_speaker`) or `"official"` (takes 0-4 are the test set).
        test_speaker: One of `FSDD_SPEAKERS`, for `split="speaker"`.
        max_seconds: Float > 0. Clips are cut or zero-padded to this length.
        num_mel_bins: Integer. Mel channels.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: float32 features of shape
        `(n, frames, num_mel_bins)`, standardised with the training set's
        mean and deviation, and int32 digit labels.

    Raises:
        ValueError: for a bad `split` or `test_speaker`, a missing folder, or
            a folder without FSDD recordings; a file that cannot be decoded
            is reported with its path.
    """
    import tensorflow as tf

    if split not in ("speaker", "official"):
        raise ValueError(
            f"`split` must be 'speaker' or 'official'. Received: split={split!r}"
        )
    if test_speaker not in FSDD_SPEAKERS:
        raise ValueError(
            f"`test_speaker` must be one of {FSDD_SPEAKERS}. Received: "
            f"test_speaker={test_speaker!r}"
        )
    root = resolve_data_dir(data_dir, "fsdd")
    if os.path.isdir(os.path.join(root, "recordings")):
        root = os.path.join(root, "recordings")
    files = sorted(glob.glob(os.path.join(root, "*_*_*.wav")))
    if not files:
        raise ValueError(
            f"No FSDD recordings ('digit_speaker_index.wav') in {root!r}."
        )
    sample_rate = 8000
    length = int(max_seconds * sample_rate)
    clips, labels, test = [], [], []
    for path in files:
        digit, speaker, index = os.path.basename(path)[:-4].split("_")
        try:
            audio, rate = tf.audio.decode_wav(tf.io.read_file(path), desired_channels=1)
        except tf.errors.OpError as error:
            raise ValueError(f"Cannot decode {path!r}: {error.message}") from None
        if int(rate) != sample_rate:
            raise ValueError(
                f"{path!r} has sample rate {int(rate)}, expected {sample_rate}."
            )
        clip = np.zeros(length, np.float32)
        audio = audio.numpy()[:length, 0]
        clip[: len(audio)] = audio
        clips.append(clip)
        labels.append(int(digit))
        test.append(
            speaker == test_speaker if split == "speaker" else int(index) < 5
        )
    # One batched transform: much faster than a call per clip.
    features = log_mel(tf.constant(np.stack(clips)), sample_rate, num_mel_bins)
    x = features.numpy().astype("float32")
    y = np.asarray(labels, dtype="int32")
    test = np.asarray(test)
    mean, std = x[~test].mean(), x[~test].std()
    x = (x - mean) / std
    return (x[~test], y[~test]), (x[test], y[test])
