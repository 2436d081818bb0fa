"""Audio input with tensorflow-io: decode, resample, log-mel, SpecAugment.

Import it explicitly (`from tf_gradual_prune import audio`); it needs
tensorflow-io (`pip install 'tf-gradual-prune[audio]'`), whose native audio
ops (decode, resample) load only on TensorFlow 2.16 and 2.17 with
tensorflow-io 0.37.1. `require_tfio()` checks that once and says so.
"""

import csv
import os
import warnings

import numpy as np
import tensorflow as tf

_TFIO = None

#: File suffixes `AudioFeatures.decode` reads.
AUDIO_SUFFIXES = (".wav", ".flac")


def require_tfio():
    """tensorflow_io, after checking that its native audio ops work.

    Raises:
        ImportError: if tensorflow-io is missing, or its native library does
            not load on this TensorFlow version (the message names the
            versions that work).
    """
    global _TFIO
    if _TFIO is not None:
        return _TFIO
    try:
        import tensorflow_io as tfio
    except ImportError:
        raise ImportError(
            "Audio input needs tensorflow-io: pip install 'tf-gradual-prune[audio]'"
        ) from None
    # A 4-sample 16-bit WAV, decoded natively: fails on TF >= 2.18.
    header = (
        b"RIFF" + (44).to_bytes(4, "little") + b"WAVEfmt "
        + (16).to_bytes(4, "little") + (1).to_bytes(2, "little")
        + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
        + (16000).to_bytes(4, "little") + (2).to_bytes(2, "little")
        + (16).to_bytes(2, "little") + b"data" + (8).to_bytes(4, "little")
    )
    try:
        tfio.audio.decode_wav(tf.constant(header + b"\0" * 8), dtype=tf.int16)
    except (NotImplementedError, tf.errors.OpError) as error:
        raise ImportError(
            f"tensorflow-io {tfio.__version__} cannot run its native audio ops "
            f"on TensorFlow {tf.__version__} ({error}). They work on "
            "TensorFlow 2.16/2.17 with tensorflow-io 0.37.1: install with "
            "this project's constraints.txt."
        ) from None
    _TFIO = tfio
    return tfio


class AudioFeatures:
    """Decoding and log-mel features of speech, with tensorflow-io.

    `decode(path)` reads a WAV or FLAC file as mono float32 in [-1, 1] at
    `sample_rate` (resampling with `tfio.audio.resample` when the file's rate
    differs). `log_mel(audio)` computes `tfio.audio.spectrogram` ->
    `melscale` -> `dbscale`, shape `(frames, num_mel_bins)`, then (with
    `normalize`) standardises each mel bin over the utterance (cepstral
    mean and variance normalisation, which removes much of the speaker and
    channel); `extract(waves)` does it for a list with a progress bar; and
    `spec_augment(features)` applies `freq_mask` and `time_mask`.

    Args:
        sample_rate: Integer, Hz. Defaults to `8000`.
        num_mel_bins: Integer. Defaults to `40`.
        frame_ms, step_ms: Window and hop in milliseconds. Defaults to
            `25` and `10`.
        top_db: Float. Dynamic range kept by `dbscale`. Defaults to `80`.
        freq_mask, time_mask: Integers, SpecAugment's largest mask widths
            (mel bins, frames). Defaults to `8` and `10`.
        normalize: Boolean. Standardise each mel bin per utterance.
            Defaults to `True`.
    """

    def __init__(self, sample_rate=8000, num_mel_bins=40, frame_ms=25, step_ms=10,
                 top_db=80.0, freq_mask=8, time_mask=10, normalize=True):
        for name, value in (("sample_rate", sample_rate), ("num_mel_bins", num_mel_bins),
                            ("frame_ms", frame_ms), ("step_ms", step_ms)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1. Received: {name}={value!r}")
        if step_ms > frame_ms:
            raise ValueError(
                f"`step_ms` must be <= `frame_ms`. Received: frame_ms={frame_ms}, step_ms={step_ms}"
            )
        self.sample_rate, self.num_mel_bins = int(sample_rate), int(num_mel_bins)
        self.frame_ms, self.step_ms = int(frame_ms), int(step_ms)
        self.top_db, self.freq_mask, self.time_mask = float(top_db), int(freq_mask), int(time_mask)
        if not isinstance(normalize, bool):
            raise ValueError(f"`normalize` must be True or False. Received: normalize={normalize!r}")
        self.normalize = normalize
        self._log_mel = None

    def get_config(self):
        return {
            "sample_rate": self.sample_rate, "num_mel_bins": self.num_mel_bins,
            "frame_ms": self.frame_ms, "step_ms": self.step_ms, "top_db": self.top_db,
            "freq_mask": self.freq_mask, "time_mask": self.time_mask,
            "normalize": self.normalize,
        }

    @property
    def window(self):
        return self.sample_rate * self.frame_ms // 1000

    @property
    def stride(self):
        return self.sample_rate * self.step_ms // 1000

    def decode(self, path):
        """Mono float32 samples of a WAV/FLAC file at `sample_rate`.

        Raises:
            ValueError: naming the path, if the file is missing, has another
                suffix, or cannot be decoded.
        """
        tfio = require_tfio()
        path = os.fspath(path)
        suffix = os.path.splitext(path)[1].lower()
        if suffix not in AUDIO_SUFFIXES:
            raise ValueError(
                f"Cannot read {path!r}: the suffix must be one of {AUDIO_SUFFIXES}."
            )
        try:
            raw = tf.io.read_file(path)
            if suffix == ".wav":
                samples = tfio.audio.decode_wav(raw, dtype=tf.int16)
                rate = int.from_bytes(raw.numpy()[24:28], "little")
            else:
                tensor = tfio.audio.AudioIOTensor(path, dtype=tf.int16)
                samples, rate = tensor.to_tensor(), int(tensor.rate)
        except (tf.errors.OpError, ValueError, NotImplementedError) as error:
            message = getattr(error, "message", str(error))
            raise ValueError(f"Cannot decode {path!r}: {message}") from None
        audio = tf.reduce_mean(tf.cast(samples, tf.float32), axis=-1) / 32768.0
        if rate != self.sample_rate:
            audio = tfio.audio.resample(audio, rate_in=rate, rate_out=self.sample_rate)
        return audio

    def log_mel(self, audio):
        """Log-mel features `(frames, num_mel_bins)` of a 1-D waveform."""
        if self._log_mel is None:
            tfio = require_tfio()
            nfft = 1 << (self.window - 1).bit_length()

            @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
            def compute(wave):
                spectrum = tfio.audio.spectrogram(wave, nfft=nfft, window=self.window,
                                                  stride=self.stride)
                mel = tfio.audio.melscale(spectrum, rate=self.sample_rate,
                                          mels=self.num_mel_bins, fmin=20,
                                          fmax=self.sample_rate // 2)
                mel = tfio.audio.dbscale(mel, top_db=self.top_db)
                if self.normalize:
                    mean, variance = tf.nn.moments(mel, axes=[0], keepdims=True)
                    mel = (mel - mean) / tf.sqrt(variance + 1e-3)
                return mel

            self._log_mel = compute
        return self._log_mel(tf.cast(audio, tf.float32))

    def extract(self, waves, verbose=True):
        """`log_mel` of each waveform in a list, as float32 numpy arrays.

        Args:
            waves: List of 1-D float arrays at `sample_rate`.
            verbose: Boolean. Show a progress bar.
        """
        import keras

        bar = keras.utils.Progbar(len(waves), unit_name="clip") if verbose else None
        out = []
        for i, wave in enumerate(waves):
            out.append(self.log_mel(wave).numpy())
            if bar is not None and ((i + 1) % 100 == 0 or i + 1 == len(waves)):
                bar.update(i + 1)
        return out

    def spec_augment(self, features):
        """One frequency and one time mask (Park et al. 2019), for training."""
        tfio = require_tfio()
        if self.freq_mask:
            features = tfio.audio.freq_mask(features, param=self.freq_mask)
        if self.time_mask:
            features = tfio.audio.time_mask(features, param=self.time_mask)
        return features


def read_manifest(source):
    """`(paths, transcripts)` from a manifest CSV or a folder.

    Args:
        source: A CSV file with a header row `path,transcript` (relative
            paths are relative to the CSV's folder), or a folder of
            WAV/FLAC files (transcripts are then empty strings).

    Raises:
        ValueError: for a missing source, a CSV without those columns, or
            a folder without audio files.
    """
    source = os.fspath(source)
    if os.path.isdir(source):
        paths = sorted(
            os.path.join(source, name) for name in os.listdir(source)
            if name.lower().endswith(AUDIO_SUFFIXES)
        )
        if not paths:
            raise ValueError(f"No {AUDIO_SUFFIXES} files in the folder {source!r}.")
        return paths, [""] * len(paths)
    if not os.path.isfile(source):
        raise ValueError(f"No manifest or folder at {source!r}.")
    folder = os.path.dirname(os.path.abspath(source))
    with open(source, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"path", "transcript"} <= set(reader.fieldnames):
            raise ValueError(
                f"The manifest {source!r} needs the columns 'path,transcript'. "
                f"Received columns: {reader.fieldnames}"
            )
        rows = list(reader)
    paths = [row["path"] if os.path.isabs(row["path"]) else os.path.join(folder, row["path"])
             for row in rows]
    return paths, [row["transcript"] for row in rows]


def load_features(source, features=None, on_error="raise"):
    """Decodes every file of a manifest or folder into log-mel features.

    Args:
        source: See `read_manifest`.
        features: An `AudioFeatures`. Defaults to `AudioFeatures()`.
        on_error: `"raise"` (a file that cannot be decoded fails with its
            path) or `"skip"` (it is left out and counted in a warning).

    Returns:
        `(feature_list, transcripts, paths)` for the files decoded.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"`on_error` must be 'raise' or 'skip'. Received: on_error={on_error!r}")
    features = features or AudioFeatures()
    paths, transcripts = read_manifest(source)
    out, kept_transcripts, kept_paths, skipped = [], [], [], []
    for path, transcript in zip(paths, transcripts):
        try:
            out.append(features.log_mel(features.decode(path)).numpy())
        except ValueError:
            if on_error == "raise":
                raise
            skipped.append(path)
            continue
        kept_transcripts.append(transcript)
        kept_paths.append(path)
    if skipped:
        warnings.warn(
            f"Skipped {len(skipped)} of {len(paths)} files that could not be decoded, "
            f"e.g. {skipped[0]!r}.",
            stacklevel=2,
        )
    return out, kept_transcripts, kept_paths


def feature_dataset(feature_list, labels, batch_size=32, bucket_boundaries=None,
                    augment=None, shuffle_seed=None):
    """A padded, length-bucketed `tf.data.Dataset` of `(features, labels)`.

    Args:
        feature_list: List of `(frames, bins)` arrays.
        labels: List of 1-D integer label sequences (e.g. CTC targets), or
            of integers for classification.
        batch_size: Integer >= 1.
        bucket_boundaries: List of frame counts; sequences are batched with
            others of similar length. `None`: quartiles of the lengths.
        augment: An `AudioFeatures` whose `spec_augment` is applied per
            example (training only), or `None`.
        shuffle_seed: Integer or `None` (no shuffling).

    Returns:
        A dataset of `(features, labels)`; features are padded with zeros,
        sequence labels with -1.
    """
    if len(feature_list) != len(labels):
        raise ValueError(
            f"`feature_list` and `labels` differ in length: {len(feature_list)} vs {len(labels)}."
        )
    if not feature_list:
        raise ValueError("`feature_list` is empty.")
    lengths = np.array([len(f) for f in feature_list])
    if bucket_boundaries is None:
        bucket_boundaries = sorted({int(q) for q in np.quantile(lengths, [0.25, 0.5, 0.75])} - {0})
    sequence_labels = np.ndim(labels[0]) == 1
    bins = feature_list[0].shape[-1]

    def generate():
        for f, label in zip(feature_list, labels):
            yield f.astype(np.float32), np.asarray(label, np.int32)

    label_spec = tf.TensorSpec([None] if sequence_labels else [], tf.int32)
    dataset = tf.data.Dataset.from_generator(
        generate, output_signature=(tf.TensorSpec([None, bins], tf.float32), label_spec)
    )
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(feature_list), seed=shuffle_seed)
    if augment is not None:
        dataset = dataset.map(lambda f, y: (augment.spec_augment(f), y))
    return dataset.bucket_by_sequence_length(
        lambda f, y: tf.shape(f)[0],
        bucket_boundaries=list(bucket_boundaries),
        bucket_batch_sizes=[batch_size] * (len(bucket_boundaries) + 1),
        padded_shapes=([None, bins], [None] if sequence_labels else []),
        padding_values=(0.0, -1 if sequence_labels else 0),
    ).prefetch(tf.data.AUTOTUNE)
