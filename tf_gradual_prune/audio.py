"""Audio input with tensorflow-io: decode, resample, log-mel, SpecAugment.

Import it explicitly (`from tf_gradual_prune import audio`); it needs the
audio extra (`pip install 'tf-gradual-prune[audio]'`): tensorflow-io, whose
pure-TensorFlow ops (`spectrogram`, `melscale`, `dbscale`, `freq_mask`,
`time_mask`) compute the features on every supported TensorFlow, and
soundfile and soxr. WAV files are read by this module itself. FLAC files are
decoded and other sample rates resampled by tensorflow-io's native ops where
they load (TensorFlow 2.16 and 2.17 with tensorflow-io 0.37.1), and by
soundfile and soxr where they do not (TensorFlow 2.18 and later): `backend()`
says which, chosen once per process by a tiny native decode.
"""

import csv
import errno
import importlib.util
import io
import logging
import math
import os
import re
import tempfile
import warnings

import numpy as np
import tensorflow as tf

from tf_gradual_prune import checks

_TFIO = None

#: File suffixes `AudioFeatures.decode` reads.
AUDIO_SUFFIXES = (".wav", ".flac")

#: What decodes FLAC and resamples (see `backend()`): tensorflow-io's native
#: ops, or soundfile (FLAC) with soxr (resampling).
BACKENDS = ("tensorflow-io", "soundfile")

#: `load_features(on_error="skip")` names up to this many skipped files in
#: its warning; beyond it, the warning names the file that lists them all.
SKIPPED_LISTED = 10

# WAVE format tags: the ones read, and some others by name for the error.
_WAVE_PCM, _WAVE_FLOAT, _WAVE_EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
_WAVE_OTHER = {0x0002: "MS ADPCM", 0x0006: "A-law", 0x0007: "mu-law",
               0x0011: "IMA ADPCM", 0x0031: "GSM 6.10", 0x0055: "MP3"}

_INSTALL = "pip install 'tf-gradual-prune[audio]'"

# The backend in force (`backend()` chooses it at its first call), and the
# native self-test's verdict: None before it runs, "" if the ops run, else why not.
_BACKEND = None
_NATIVE_PROBLEM = None


def require_tfio():
    """tensorflow_io, for its pure-TensorFlow feature ops.

    Where its native libraries do not load (TensorFlow >= 2.18), importing
    tensorflow-io only warns that they do not; those warnings are silenced
    here (`backend()` then picks other decoders).

    Raises:
        ImportError: if tensorflow-io is not installed (the message names
            the extra to install).
    """
    global _TFIO
    if _TFIO is None:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=UserWarning, module="tensorflow_io")
                import tensorflow_io as tfio
        except ImportError:
            raise ImportError(
                f"Audio features need tensorflow-io: {_INSTALL}"
            ) from None
        _TFIO = tfio
    return _TFIO


def _native_problem():
    """Why tensorflow-io's native audio ops cannot run here, or `None`.

    Decodes a 4-sample 16-bit WAV natively, once per process: the whole
    native library loads or none of it does.
    """
    global _NATIVE_PROBLEM
    if _NATIVE_PROBLEM is None:
        try:
            tfio = require_tfio()
        except ImportError as error:
            _NATIVE_PROBLEM = str(error)
            return _NATIVE_PROBLEM
        header = (
            b"RIFF" + (44).to_bytes(4, "little") + b"WAVEfmt "
            + (16).to_bytes(4, "little") + (1).to_bytes(2, "little")
            + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
            + (16000).to_bytes(4, "little") + (2).to_bytes(2, "little")
            + (16).to_bytes(2, "little") + b"data" + (8).to_bytes(4, "little")
        )
        try:
            tfio.audio.decode_wav(tf.constant(header + b"\0" * 8), dtype=tf.int16)
            _NATIVE_PROBLEM = ""
        except (NotImplementedError, tf.errors.OpError) as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            _NATIVE_PROBLEM = (
                f"tensorflow-io {tfio.__version__}'s native ops do not run on "
                f"TensorFlow {tf.__version__}: {reason.split(', from paths')[0]}"
            )
    return _NATIVE_PROBLEM or None


def backend():
    """What decodes FLAC and resamples in this process.

    `"tensorflow-io"` where its native ops run (TensorFlow 2.16 and 2.17
    with tensorflow-io 0.37.1), else `"soundfile"`: soundfile decodes FLAC
    and soxr resamples. Chosen at the first call, by decoding a tiny WAV
    natively, and kept for the process; `set_backend` overrides it. WAV
    files are read by this module on both, and the features of both agree
    (`AudioFeatures` states how closely).

    Returns:
        One of `BACKENDS`.
    """
    global _BACKEND
    if _BACKEND is None:
        _BACKEND = "soundfile" if _native_problem() else "tensorflow-io"
    return _BACKEND


def _why_soundfile():
    """Why the soundfile backend is in force, for error messages."""
    return _native_problem() or "set_backend('soundfile') chose it"


def set_backend(name):
    """Chooses what decodes FLAC and resamples, instead of `backend()`'s test.

    For comparisons (the tests check that both give the same features) and
    to reproduce features made on another TensorFlow version.

    Args:
        name: One of `BACKENDS`, or `None` to let `backend()` choose again.

    Raises:
        ValueError: if `name` is not one of `BACKENDS` or `None`.
        ImportError: for `"tensorflow-io"` where its native ops do not run
            (the message says why).
    """
    global _BACKEND
    if name is not None and name not in BACKENDS:
        raise ValueError(
            f"`name` must be one of {BACKENDS} or None. Received: name={name!r}"
        )
    if name == "tensorflow-io" and _native_problem():
        raise ImportError(
            f"Cannot use the tensorflow-io backend: {_native_problem()}. Its native "
            "ops load on TensorFlow 2.16/2.17 with tensorflow-io 0.37.1 (this "
            "project's constraints.txt); elsewhere use 'soundfile'."
        )
    _BACKEND = name


def _op_message(error):
    """A TensorFlow op error's own message, without the op's trace around it."""
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", error.message)
    return re.sub(r"\s*\[Op:[^\]]*\].*$", "", message, flags=re.S).strip()


# Traced functions, shared by every `AudioFeatures` with the same settings
# (TensorFlow warns about retracing when many instances trace their own).
_TRACED = {}


def _traced(key, make):
    """`make(*key[1:])`, made once per key."""
    if key not in _TRACED:
        _TRACED[key] = make(*key[1:])
    return _TRACED[key]


def _resampled_length(frames, rate_in, rate_out):
    """Samples after resampling `frames` samples (soxr's rounding; both
    backends give this length)."""
    return int(frames * rate_out / rate_in + 0.5)


def _tfio_resampler(rate_in, rate_out):
    """`tfio.audio.resample` from `rate_in` to `rate_out`, without its delay.

    The op is traced once: called eagerly, its `tf.vectorized_map` traces
    anew for every file. Its resampler (Speex's) delays the output by half
    its filter and leaves that many samples of the end out; the delay is
    measured once with an impulse, the input padded and the output shifted
    back, so that both backends line up sample for sample.
    """
    tfio = require_tfio()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def resample(audio):
        return tfio.audio.resample(audio, rate_in=rate_in, rate_out=rate_out)

    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    # Tracing logs "Using a while_loop for converting IO>AudioResample": noise.
    tf_logger.setLevel(logging.ERROR)
    try:
        resample.get_concrete_function()
    finally:
        tf_logger.setLevel(level)
    # An impulse at an input sample whose output position is a whole number.
    period = rate_in // math.gcd(rate_in, rate_out)
    at = period * -(-256 // period)
    impulse = np.zeros(2 * at + 512, np.float32)
    impulse[at] = 1.0
    delay = int(np.argmax(resample(impulse).numpy())) - at * rate_out // rate_in
    padding = np.zeros(-(-(delay + 2) * rate_in // rate_out), np.float32)

    def run(audio):
        wanted = _resampled_length(len(audio), rate_in, rate_out)
        out = resample(np.concatenate([audio, padding])).numpy()
        return out[delay:delay + wanted]

    return run


def _soxr_resampler(rate_in, rate_out):
    """soxr's resampling (its default "HQ" quality) from `rate_in` to
    `rate_out`."""
    import soxr

    def run(audio):
        return soxr.resample(audio, rate_in, rate_out).astype(np.float32, copy=False)

    return run


def _log_mel_function(rate, mels, window, stride, top_db, normalize):
    """The traced log-mel computation of `AudioFeatures.log_mel`."""
    tfio = require_tfio()
    nfft = 1 << (window - 1).bit_length()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def compute(wave):
        spectrum = tfio.audio.spectrogram(wave, nfft=nfft, window=window, stride=stride)
        mel = tfio.audio.melscale(spectrum, rate=rate, mels=mels, fmin=20, fmax=rate // 2)
        mel = tfio.audio.dbscale(mel, top_db=top_db)
        if normalize:
            mean, variance = tf.nn.moments(mel, axes=[0], keepdims=True)
            mel = (mel - mean) / tf.sqrt(variance + 1e-3)
        return mel

    return compute


class _DecodeError(ValueError):
    """A file that is not audio this module reads; `reason` says why."""

    def __init__(self, path, reason):
        super().__init__(f"Cannot decode {path!r}: {reason}")
        self.reason = reason


def _wav_samples(data):
    """`(samples, rate)` of the bytes of a RIFF/WAVE file.

    Reads the `fmt ` and `data` chunks wherever they are (other chunks such
    as `LIST`, `fact` or `cue ` may come before, between or after them).
    `samples` is float32 `(frames, channels)` in [-1, 1]: integer PCM of 8
    (unsigned), 16, 24 or 32 bits, or IEEE float of 32 or 64 bits.

    Raises:
        ValueError: saying what is wrong (the caller adds the path).
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        if data[:4] in (b"RIFX", b"RF64"):
            raise ValueError(f"{data[:4].decode()} WAV files are not supported (only RIFF)")
        raise ValueError(
            f"not a WAV file: it starts with {data[:12]!r}, not b'RIFF....WAVE' "
            f"({len(data)} bytes in all)"
        )
    fmt = payload = None
    offset = 12
    while offset + 8 <= len(data) and (fmt is None or payload is None):
        chunk, size = data[offset:offset + 4], int.from_bytes(data[offset + 4:offset + 8], "little")
        start = offset + 8
        if chunk == b"data":
            if size == 0xFFFFFFFF:  # written by a stream that never knew its length
                size = len(data) - start
            if start + size > len(data):
                raise ValueError(
                    f"truncated: the data chunk declares {size} bytes, "
                    f"{len(data) - start} follow"
                )
            payload = data[start:start + size]
        elif chunk == b"fmt ":
            if size < 16 or start + size > len(data):
                raise ValueError(
                    f"the 'fmt ' chunk is {min(size, len(data) - start)} bytes long, "
                    "too short (truncated header?)"
                )
            fmt = data[start:start + size]
        elif start + size > len(data):
            raise ValueError(
                f"truncated header: the {chunk!r} chunk at byte {offset} declares "
                f"{size} bytes, {len(data) - start} follow"
            )
        offset = start + size + (size & 1)  # chunks are padded to an even size
    if fmt is None or payload is None:
        raise ValueError(
            f"no {'fmt ' if fmt is None else 'data'!r} chunk in the {len(data)} bytes "
            "(truncated or not a WAV file?)"
        )
    tag, channels, rate = (int.from_bytes(fmt[i:j], "little") for i, j in ((0, 2), (2, 4), (4, 8)))
    align, bits = int.from_bytes(fmt[12:14], "little"), int.from_bytes(fmt[14:16], "little")
    if tag == _WAVE_EXTENSIBLE and len(fmt) >= 26:
        tag = int.from_bytes(fmt[24:26], "little")  # the sub-format GUID's first field
    if tag not in (_WAVE_PCM, _WAVE_FLOAT):
        name = _WAVE_OTHER.get(tag, "unknown")
        raise ValueError(
            f"WAVE format 0x{tag:04x} ({name}) is not supported: convert it to PCM "
            "(8, 16, 24 or 32 bits) or float"
        )
    dtypes = {_WAVE_PCM: {8: "u1", 16: "<i2", 24: None, 32: "<i4"},
              _WAVE_FLOAT: {32: "<f4", 64: "<f8"}}[tag]
    if bits not in dtypes:
        raise ValueError(
            f"{bits}-bit {'PCM' if tag == _WAVE_PCM else 'float'} is not supported "
            f"(sizes read: {sorted(dtypes)} bits)"
        )
    if channels < 1 or rate < 1 or align != channels * bits // 8:
        raise ValueError(
            f"the header is inconsistent: channels={channels}, sample rate={rate}, "
            f"block align={align} for {bits}-bit samples"
        )
    if len(payload) % align:
        raise ValueError(
            f"the data chunk ({len(payload)} bytes) is not a whole number of "
            f"{align}-byte frames (truncated?)"
        )
    if not payload:
        raise ValueError("the data chunk is empty: no samples")
    if bits == 24:
        # Three bytes per sample: placed in the top of an int32, then shifted
        # back down, which sign-extends them.
        raw = np.frombuffer(payload, np.uint8).reshape(-1, 3)
        wide = np.zeros((len(raw), 4), np.uint8)
        wide[:, 1:] = raw
        values = wide.view("<i4")[:, 0] >> 8
    else:
        values = np.frombuffer(payload, dtypes[bits])
    if tag == _WAVE_FLOAT:
        values = values.astype(np.float32)
    elif bits == 8:
        values = (values.astype(np.float32) - 128.0) / 128.0
    else:
        values = values.astype(np.float32) / float(2 ** (bits - 1))
    return values.reshape(-1, channels), rate


def _flac_streaminfo(data):
    """`(rate, channels, bits, frames)` from a FLAC file's STREAMINFO block
    (`frames` is 0 where the encoder did not know the length).

    Raises:
        ValueError: saying what is wrong (the caller adds the path).
    """
    offset = 0
    if data[:3] == b"ID3" and len(data) >= 10:  # an ID3v2 tag before the stream
        offset = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(data[6:10]))
        offset += 10 if data[5] & 0x10 else 0
    if data[offset:offset + 4] != b"fLaC":
        raise ValueError(
            f"not a FLAC file: it starts with {data[offset:offset + 12]!r}, not b'fLaC' "
            f"({len(data)} bytes in all)"
        )
    header = data[offset + 4:offset + 8]
    info = data[offset + 8:offset + 8 + 34]
    if len(header) < 4 or len(info) < 34:
        raise ValueError(f"truncated header: the file ends inside STREAMINFO ({len(data)} bytes)")
    if header[0] & 0x7F != 0 or int.from_bytes(header[1:4], "big") < 34:
        raise ValueError("the first metadata block is not a STREAMINFO block")
    rate = int.from_bytes(info[10:13], "big") >> 4
    channels = ((info[12] >> 1) & 0x7) + 1
    bits = (((info[12] & 0x1) << 4) | (info[13] >> 4)) + 1
    frames = ((info[13] & 0x0F) << 32) | int.from_bytes(info[14:18], "big")
    if rate == 0:
        raise ValueError("STREAMINFO gives a sample rate of 0 Hz")
    return rate, channels, bits, frames


def _flac_samples(data, path):
    """`(samples, rate)` of the bytes of a FLAC file, decoded by the backend.

    `samples` is float32 `(frames, channels)` in [-1, 1]. Only 16-bit FLAC
    is read (tensorflow-io's decoder reads no other; soundfile is held to
    the same, so that both backends accept the same files).

    Raises:
        ValueError: saying what is wrong (the caller adds the path).
        ImportError: naming the file and the extra, if the soundfile backend
            is in force and soundfile is not installed.
    """
    rate, channels, bits, frames = _flac_streaminfo(data)
    if bits != 16:
        raise ValueError(
            f"{bits}-bit FLAC is not supported (16-bit only): convert it, e.g. to a "
            "16-bit FLAC or a WAV"
        )
    if backend() == "tensorflow-io":
        try:
            samples = require_tfio().audio.decode_flac(tf.constant(data), dtype=tf.int16).numpy()
        except tf.errors.OpError as error:
            raise ValueError(
                f"the FLAC decoder failed (a truncated or corrupt stream?): {_op_message(error)}"
            ) from None
    else:
        try:
            import soundfile
        except ImportError:
            raise ImportError(
                f"Decoding the FLAC file {path!r} needs soundfile here ({_why_soundfile()}): "
                f"{_INSTALL}, or convert the file to WAV."
            ) from None
        try:
            samples, _ = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
        except RuntimeError as error:  # soundfile's LibsndfileError
            raise ValueError(
                f"the FLAC decoder failed (a truncated or corrupt stream?): {error}"
            ) from None
    if samples.ndim != 2 or samples.shape[1] != channels:
        raise ValueError(
            f"the decoder gave shape {samples.shape} for {channels} channel(s)"
        )
    if frames and len(samples) < frames:
        raise ValueError(
            f"truncated: STREAMINFO gives {frames} samples, {len(samples)} decode"
        )
    return samples.astype(np.float32) / 32768.0, rate


class AudioFeatures:
    """Decoding and log-mel features of speech, with tensorflow-io.

    `decode(path)` reads a WAV or FLAC file as mono float32 in [-1, 1] at
    `sample_rate`: the rate and channel count come from the file's header,
    several channels are mixed down to one (their mean), and a file at
    another rate is resampled (a warning says so once per source rate).
    `log_mel(audio)` computes `tfio.audio.spectrogram` -> `melscale` ->
    `dbscale`, shape `(frames, num_mel_bins)`, then (with `normalize`)
    standardises each mel bin over the utterance (cepstral mean and
    variance normalisation, which removes much of the speaker and channel);
    `extract(waves)` does it for a list with a progress bar; and
    `spec_augment(features)` applies `freq_mask` and `time_mask`.

    FLAC decoding and resampling follow `backend()`: tensorflow-io's native
    ops (TensorFlow 2.16/2.17), or soundfile and soxr. FLAC decodes to the
    same samples on both, and WAV files at `sample_rate` give the same
    features. Resampled files differ slightly, as two resamplers do;
    measured on 300 FSDD recordings (8 kHz) read at 16 kHz, in standardised
    units (the default `normalize`): at most 0.11 in the mel bins centred
    below 3.4 kHz, 0.6 in those up to the source's 4 kHz Nyquist frequency
    (where both filters roll off), 0.009 on average over all 40 bins; the
    bins above 4 kHz hold only each resampler's residue and differ by up to
    8. tests/audio_test.py checks this where both backends run.

    Args:
        sample_rate: Integer, Hz. Defaults to `8000`.
        num_mel_bins: Integer. Defaults to `40`.
        frame_ms: Window length in milliseconds. Defaults to `25`.
        step_ms: Hop between windows in milliseconds. Defaults to `10`.
        top_db: Float. Dynamic range kept by `dbscale`. Defaults to `80`.
        freq_mask: Integer, SpecAugment's largest mask width in mel bins.
            Defaults to `8`.
        time_mask: Integer, SpecAugment's largest mask width in frames.
            Defaults to `10`.
        normalize: Boolean. Standardise each mel bin per utterance.
            Defaults to `True`.
    """

    def __init__(self, sample_rate=8000, num_mel_bins=40, frame_ms=25, step_ms=10,
                 top_db=80.0, freq_mask=8, time_mask=10, normalize=True):
        for name, value in (("sample_rate", sample_rate), ("num_mel_bins", num_mel_bins),
                            ("frame_ms", frame_ms), ("step_ms", step_ms)):
            checks.check_int(name, value, 1)
        if step_ms > frame_ms:
            raise ValueError(
                f"`step_ms` must be <= `frame_ms`. Received: frame_ms={frame_ms}, step_ms={step_ms}"
            )
        self.sample_rate, self.num_mel_bins = int(sample_rate), int(num_mel_bins)
        self.frame_ms, self.step_ms = int(frame_ms), int(step_ms)
        self.top_db, self.freq_mask, self.time_mask = float(top_db), int(freq_mask), int(time_mask)
        checks.check_bool("normalize", normalize)
        self.normalize = normalize
        self._log_mel = None
        self._resampled = set()  # source rates already announced

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

        WAV: 8-bit (unsigned), 16, 24 and 32-bit integer PCM and 32/64-bit
        float, with the `fmt ` and `data` chunks anywhere among others.
        FLAC: 16-bit. Rate and channels are read from the header (WAV's
        `fmt ` chunk, FLAC's STREAMINFO); channels are averaged into one.

        Raises:
            FileNotFoundError: naming the path, if there is no such file.
            ValueError: naming the path and what is wrong, for another
                suffix, a header that is wrong or truncated, data cut short,
                or an encoding that is not read.
            ImportError: naming the path, the format and the extra, where
                the soundfile backend is in force and soundfile (FLAC) or
                soxr (resampling) is not installed.
        """
        path = os.fspath(path)
        suffix = os.path.splitext(path)[1].lower()
        if suffix not in AUDIO_SUFFIXES:
            raise ValueError(
                f"Cannot read {path!r}: the suffix must be one of {AUDIO_SUFFIXES}."
            )
        try:
            with tf.io.gfile.GFile(path, "rb") as f:
                data = f.read()
        except tf.errors.NotFoundError:
            raise FileNotFoundError(errno.ENOENT, "No such audio file", path) from None
        except tf.errors.OpError as error:
            raise ValueError(f"Cannot read {path!r}: {_op_message(error)}") from None
        try:
            if suffix == ".wav":
                samples, rate = _wav_samples(data)
            else:
                samples, rate = _flac_samples(data, path)
        except ValueError as error:
            raise _DecodeError(path, str(error)) from None
        audio = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
        if rate != self.sample_rate:
            audio = self._resampler(rate, path)(np.ascontiguousarray(audio, np.float32))
        return tf.constant(audio, tf.float32)

    def _resampler(self, rate, path):
        """The function resampling from `rate` to `sample_rate`; the first
        time for `rate`, a warning that names `path`."""
        name = backend()
        if name == "soundfile" and importlib.util.find_spec("soxr") is None:
            raise ImportError(
                f"Resampling {path!r} from {rate} Hz to sample_rate={self.sample_rate} Hz "
                f"needs soxr here ({_why_soundfile()}): {_INSTALL}, or pass "
                f"AudioFeatures(sample_rate={rate}) to keep the file's rate."
            )
        if rate not in self._resampled:
            self._resampled.add(rate)
            warnings.warn(
                f"Resampling {path!r} from {rate} Hz to sample_rate={self.sample_rate} Hz; "
                f"other {rate} Hz files are resampled too, without a further warning. "
                f"Pass AudioFeatures(sample_rate={rate}) to keep their rate.",
                stacklevel=3,
            )
        make = _tfio_resampler if name == "tensorflow-io" else _soxr_resampler
        return _traced((f"resample with {name}", rate, self.sample_rate), make)

    def log_mel(self, audio):
        """Log-mel features `(frames, num_mel_bins)` of a 1-D waveform."""
        if self._log_mel is None:
            settings = (self.sample_rate, self.num_mel_bins, self.window, self.stride,
                        self.top_db, self.normalize)
            self._log_mel = _traced(("log_mel",) + settings, _log_mel_function)
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
        on_error: `"raise"` (a missing file raises `FileNotFoundError`, one
            that cannot be decoded `ValueError`, each naming the path) or
            `"skip"` (such files are left out, and one warning lists them
            with their reasons, missing files apart; beyond
            `SKIPPED_LISTED` files it names the first and a file that lists
            them all).

    Returns:
        `(feature_list, transcripts, paths)` for the files decoded.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"`on_error` must be 'raise' or 'skip'. Received: on_error={on_error!r}")
    features = features or AudioFeatures()
    paths, transcripts = read_manifest(source)
    out, kept_transcripts, kept_paths, missing, failed = [], [], [], [], []
    for path, transcript in zip(paths, transcripts):
        try:
            out.append(features.log_mel(features.decode(path)).numpy())
        except FileNotFoundError:
            if on_error == "raise":
                raise
            missing.append(path)
            continue
        except (ValueError, OSError) as error:
            if on_error == "raise":
                raise
            failed.append((path, getattr(error, "reason", None) or str(error)))
            continue
        kept_transcripts.append(transcript)
        kept_paths.append(path)
    if missing or failed:
        warnings.warn(_skipped_message(len(paths), missing, failed), stacklevel=2)
    return out, kept_transcripts, kept_paths


def _skipped_message(total, missing, failed):
    """The warning of `load_features(on_error="skip")`."""
    lines = [
        f"Skipped {len(missing) + len(failed)} of {total} files: {len(missing)} missing, "
        f"{len(failed)} that could not be decoded."
    ]
    many = len(missing) + len(failed) > SKIPPED_LISTED
    shown = SKIPPED_LISTED // 2 if many else SKIPPED_LISTED
    for title, rows in (("Missing:", [(p, None) for p in missing]),
                        ("Could not be decoded:", failed)):
        if rows:
            lines.append(title)
            lines += [f"  {p!r}" + (f": {why}" if why else "") for p, why in rows[:shown]]
            if len(rows) > shown:
                lines.append(f"  ... and {len(rows) - shown} more")
    if many:
        handle, listing = tempfile.mkstemp(prefix="tfgp_skipped_", suffix=".tsv")
        with os.fdopen(handle, "w") as f:
            f.write("path\tproblem\n")
            f.writelines(f"{p}\tmissing\n" for p in missing)
            f.writelines(f"{p}\t{' '.join(why.split())}\n" for p, why in failed)
        lines.append(f"All {len(missing) + len(failed)} are listed in {listing}")
    return "\n".join(lines)


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
