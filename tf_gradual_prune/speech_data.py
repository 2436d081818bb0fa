"""The speech task's data: spoken digits and digit strings.

- `fsdd_recordings`: the Free Spoken Digit Dataset (real speech, 6 speakers
  x 10 digits x 50 takes) as `Recording`s, from a local folder or
  downloaded once with `download_fsdd`; `synthetic_digit_recordings`, its
  embedded twin, generated in numpy with no files and no network.
- `digit_strings` joins recordings into utterances ("3 9 1") for a CTC
  recogniser; `split_recordings` holds out a speaker (or FSDD's official
  takes); `speech_digits` does all three.
- `fsdd_digits`: the recordings as fixed-length log-mel sequences, for
  sequence classification.

Every recording is decoded, and every feature computed, by
`audio.AudioFeatures`.
"""

import glob
import os

import numpy as np

from tf_gradual_prune import checks
from tf_gradual_prune.datasets import resolve_data_dir

FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")

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


def fsdd_digits(data_dir=None, split="speaker", test_speaker="yweweler",
                max_seconds=1.0, num_mel_bins=40):
    """Free Spoken Digit Dataset recordings as log-mel sequences.

    The recordings are read by `fsdd_recordings`, cut or zero-padded to
    `max_seconds`, and featurised by `audio.AudioFeatures` (the package's
    one decoder and feature pipeline) without its per-utterance
    normalisation; the features are then standardised as a whole with the
    training set's mean and deviation.

    Args:
        data_dir: String or `None`. A folder holding `recordings/` (or
            `fsdd/recordings/`); `None` reads `$TFGP_DATA_DIR`.
        split: `"speaker"` (train on five speakers, test on
            `test_speaker`) or `"official"` (takes 0-4 are the test set).
        test_speaker: One of `FSDD_SPEAKERS`, for `split="speaker"`.
        max_seconds: Float > 0. Clips are cut or zero-padded to this length.
        num_mel_bins: Integer >= 1. Mel channels.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: float32 features of shape
        `(n, frames, num_mel_bins)`, standardised with the training set's
        mean and deviation, and int32 digit labels.

    Raises:
        ValueError: for a bad `split` or `test_speaker`, a missing folder, or
            a folder without FSDD recordings; a file that cannot be decoded
            is reported with its path.
    """
    from tf_gradual_prune import audio

    checks.check_choice("split", split, ("speaker", "official"))
    checks.check_choice("test_speaker", test_speaker, FSDD_SPEAKERS)
    checks.check_float("max_seconds", max_seconds, 0.0)
    if max_seconds == 0:
        raise ValueError(f"`max_seconds` must be > 0. Received: max_seconds={max_seconds}")
    features = audio.AudioFeatures(sample_rate=8000, num_mel_bins=num_mel_bins,
                                   normalize=False)
    train, test = split_recordings(fsdd_recordings(data_dir), split, test_speaker)
    length = int(max_seconds * features.sample_rate)

    def featurised(recordings):
        clips = [np.zeros(length, np.float32) for _ in recordings]
        for clip, recording in zip(clips, recordings):
            clip[: min(length, len(recording.audio))] = recording.audio[:length]
        x = np.stack(features.extract(clips, verbose=False)).astype("float32")
        return x, np.asarray([r.digit for r in recordings], dtype="int32")

    (x, y), (x_test, y_test) = featurised(train), featurised(test)
    mean, std = x.mean(), x.std()
    return ((x - mean) / std, y), ((x_test - mean) / std, y_test)
