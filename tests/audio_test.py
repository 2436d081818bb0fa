import io
import logging
import os
import struct
import sys
import wave

import numpy as np
import pytest
import tensorflow as tf

pytest.importorskip("tensorflow_io")
soundfile = pytest.importorskip("soundfile")
from tf_gradual_prune import audio

TF_VERSION = tuple(int(part) for part in tf.__version__.split(".")[:2])
# Read before any test calls `set_backend`.
NATIVE = audio.backend() == "tensorflow-io"
NOT_NATIVE = f"tensorflow-io's native ops do not load on TensorFlow {tf.__version__}"


@pytest.fixture(params=audio.BACKENDS)
def each_backend(request):
    """Runs a test with each backend that can run here."""
    if request.param == "tensorflow-io" and not NATIVE:
        pytest.skip(NOT_NATIVE)
    audio.set_backend(request.param)
    yield request.param
    audio.set_backend(None)


@pytest.fixture
def restore_backend():
    yield
    audio.set_backend(None)


def write_wav(path, seconds=0.5, rate=8000, freq=440.0):
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.5 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(samples.tobytes())
    return samples.astype(np.float32) / 32768.0


def chunk(name, payload):
    """A RIFF chunk, padded to an even size."""
    return name + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) % 2)


def fmt_chunk(rate=8000, channels=1, bits=16, tag=1):
    align = channels * bits // 8
    return chunk(b"fmt ", struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits))


def riff(*chunks):
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def sine(n, rate=8000, freq=440.0):
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)


def pcm16(values):
    return (values * 32767).astype("<i2")


def flac_bytes(pcm, rate):
    """16-bit FLAC of int16 samples `(frames,)` or `(frames, channels)`."""
    buffer = io.BytesIO()
    soundfile.write(buffer, pcm, rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def test_backend_is_chosen_by_the_native_self_test():
    # tensorflow-io 0.37.1's native library loads on TF 2.16/2.17 only.
    assert audio.backend() == ("tensorflow-io" if TF_VERSION <= (2, 17) else "soundfile")
    # The pure-TensorFlow feature ops work on every version.
    assert hasattr(audio.require_tfio().audio, "melscale")


def test_set_backend_checks_its_argument(restore_backend):
    with pytest.raises(ValueError, match="name='sox'"):
        audio.set_backend("sox")
    audio.set_backend("soundfile")
    assert audio.backend() == "soundfile"
    audio.set_backend(None)
    assert audio.backend() == ("tensorflow-io" if NATIVE else "soundfile")
    if not NATIVE:
        with pytest.raises(ImportError, match=f"TensorFlow {tf.__version__}"):
            audio.set_backend("tensorflow-io")


def test_decode_wav_resample_and_log_mel(tmp_path, each_backend):
    expected = write_wav(tmp_path / "a.wav", rate=8000)
    features = audio.AudioFeatures(sample_rate=8000)
    decoded = features.decode(tmp_path / "a.wav").numpy()
    np.testing.assert_allclose(decoded, expected, atol=1e-6)
    with pytest.warns(UserWarning, match="from 8000 Hz to sample_rate=16000 Hz"):
        doubled = audio.AudioFeatures(sample_rate=16000).decode(tmp_path / "a.wav")
    assert abs(int(tf.shape(doubled)[0]) - 2 * len(expected)) <= 2
    mel = features.log_mel(decoded)
    assert mel.shape[1] == 40 and 45 <= mel.shape[0] <= 55  # 10 ms hop over 0.5 s
    # 440 Hz: the energy sits in the low mel bins.
    assert int(tf.argmax(tf.reduce_mean(mel, axis=0))) < 20


def test_decode_flac(tmp_path, each_backend):
    expected = write_wav(tmp_path / "a.wav")
    (tmp_path / "a.flac").write_bytes(flac_bytes((expected * 32768).astype(np.int16), 8000))
    decoded = audio.AudioFeatures().decode(tmp_path / "a.flac").numpy()
    np.testing.assert_allclose(decoded, expected, atol=1e-6)


def test_missing_decoders_name_the_format_the_file_and_the_extra(
        tmp_path, monkeypatch, restore_backend):
    write_wav(tmp_path / "a.wav", rate=16000)
    (tmp_path / "a.flac").write_bytes(flac_bytes(pcm16(sine(400)), 8000))
    audio.set_backend("soundfile")
    monkeypatch.setitem(sys.modules, "soundfile", None)  # import fails
    monkeypatch.setitem(sys.modules, "soxr", None)
    features = audio.AudioFeatures()
    with pytest.raises(ImportError, match=r"FLAC file .*a\.flac.* needs soundfile") as info:
        features.decode(tmp_path / "a.flac")
    assert "pip install 'tf-gradual-prune[audio]'" in str(info.value)
    with pytest.raises(ImportError, match=r"Resampling .*a\.wav.* from 16000 Hz .* needs soxr"):
        features.decode(tmp_path / "a.wav")
    # Skipping bad files never hides a missing library.
    with pytest.raises(ImportError, match="soundfile"):
        audio.load_features(str(tmp_path), on_error="skip")


def test_spec_augment_masks_keep_the_shape():
    features = audio.AudioFeatures(freq_mask=8, time_mask=10)
    mel = tf.random.stateless_normal([100, 40], seed=[1, 2]) + 5.0
    tf.random.set_seed(3)
    masked = features.spec_augment(mel)
    assert masked.shape == mel.shape
    assert np.sum(masked.numpy() == 0) > 0


def test_bad_files_name_their_path_or_are_skipped_and_counted(tmp_path):
    write_wav(tmp_path / "good.wav")
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVE nonsense")
    features = audio.AudioFeatures()
    with pytest.raises(ValueError, match="bad.wav"):
        features.decode(tmp_path / "bad.wav")
    with pytest.raises(ValueError, match="bad.wav"):
        audio.load_features(str(tmp_path))
    with pytest.warns(UserWarning, match="Skipped 1 of 2"):
        out, transcripts, paths = audio.load_features(str(tmp_path), on_error="skip")
    assert [os.path.basename(p) for p in paths] == ["good.wav"]
    with pytest.raises(ValueError, match="suffix"):
        features.decode(tmp_path / "x.mp3")
    with pytest.raises(ValueError, match="on_error='ignore'"):
        audio.load_features(str(tmp_path), on_error="ignore")


def test_manifest_csv_with_relative_paths(tmp_path):
    write_wav(tmp_path / "one.wav", freq=300)
    write_wav(tmp_path / "two.wav", seconds=0.8)
    (tmp_path / "m.csv").write_text("path,transcript\none.wav,3 9\ntwo.wav,1\n")
    out, transcripts, paths = audio.load_features(str(tmp_path / "m.csv"))
    assert transcripts == ["3 9", "1"]
    assert [o.shape[1] for o in out] == [40, 40] and out[1].shape[0] > out[0].shape[0]
    (tmp_path / "bad.csv").write_text("file,text\none.wav,3\n")
    with pytest.raises(ValueError, match="columns 'path,transcript'"):
        audio.read_manifest(str(tmp_path / "bad.csv"))
    with pytest.raises(ValueError, match="No manifest or folder"):
        audio.read_manifest(str(tmp_path / "missing.csv"))


def test_feature_dataset_pads_and_buckets():
    rng = np.random.default_rng(0)
    feats = [rng.normal(size=(n, 40)).astype("float32") for n in (10, 12, 50, 55, 90)]
    labels = [[1, 2], [3], [4, 5, 6], [7], [8, 9]]
    dataset = audio.feature_dataset(feats, labels, batch_size=2, bucket_boundaries=[20, 60])
    batches = list(dataset)
    assert sum(int(x.shape[0]) for x, _ in batches) == 5
    for x, y in batches:
        assert x.shape[-1] == 40
        assert x.shape[1] in (12, 10, 55, 50, 90)  # padded to the longest in its bucket
        assert np.all((y.numpy() >= -1))
    lengths = sorted(int(x.shape[1]) for x, _ in batches)
    assert lengths[-1] == 90
    with pytest.raises(ValueError, match="differ in length"):
        audio.feature_dataset(feats, labels[:2])


def test_audio_features_bad_arguments():
    with pytest.raises(ValueError, match="sample_rate=0"):
        audio.AudioFeatures(sample_rate=0)
    with pytest.raises(ValueError, match="frame_ms=10, step_ms=20"):
        audio.AudioFeatures(frame_ms=10, step_ms=20)


def test_real_fsdd_recording(data_dir):
    path = os.path.join(data_dir, "fsdd", "recordings", "7_jackson_32.wav")
    features = audio.AudioFeatures()
    mel = features.log_mel(features.decode(path))
    assert mel.shape[1] == 40 and mel.shape[0] > 10


def test_audio_features_bad_normalize_names_the_value():
    with pytest.raises(TypeError, match="normalize='yes'"):
        audio.AudioFeatures(normalize="yes")


def test_wav_chunks_in_any_order_are_read(tmp_path):
    samples = pcm16(sine(800))
    data = chunk(b"data", samples.tobytes())
    layouts = {
        "list_first.wav": riff(chunk(b"LIST", b"INFOISFT\x05\0\0\0Lavf\0"), fmt_chunk(), data),
        "between.wav": riff(fmt_chunk(), chunk(b"fact", struct.pack("<I", 800)), data),
        "after.wav": riff(fmt_chunk(), data, chunk(b"LIST", b"odd")),  # odd size, padded
        "data_first.wav": riff(data, chunk(b"junk", b"\0" * 7), fmt_chunk()),
    }
    features = audio.AudioFeatures()
    for name, content in layouts.items():
        (tmp_path / name).write_bytes(content)
        decoded = features.decode(tmp_path / name).numpy()
        np.testing.assert_array_equal(decoded, samples.astype(np.float32) / 32768.0)
    # Python's own reader agrees about the first layout.
    with wave.open(str(tmp_path / "list_first.wav")) as f:
        assert (f.getframerate(), f.getnframes()) == (8000, 800)


@pytest.mark.parametrize("bits", [8, 16, 24, 32])
def test_pcm_sample_sizes(tmp_path, bits):
    values = sine(400)
    scale = 2 ** (bits - 1)
    ints = np.round(values * (scale - 1)).astype(np.int64)
    if bits == 8:
        payload = (ints + 128).astype("u1").tobytes()
    elif bits == 24:
        payload = b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints)
    else:
        payload = ints.astype(f"<i{bits // 8}").tobytes()
    (tmp_path / "a.wav").write_bytes(riff(fmt_chunk(bits=bits), chunk(b"data", payload)))
    decoded = audio.AudioFeatures().decode(tmp_path / "a.wav").numpy()
    np.testing.assert_allclose(decoded, ints / scale, atol=1e-7)
    assert decoded.min() < -0.45  # signed, centred: 8-bit is unsigned on disk


def test_float_wav(tmp_path):
    values = sine(400)
    extensible = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 8000, 32000, 4, 32, 22, 32, 4) + (
        struct.pack("<H", 3) + bytes(14))  # sub-format: IEEE float
    content = riff(chunk(b"fmt ", extensible), chunk(b"data", values.astype("<f4").tobytes()))
    (tmp_path / "f.wav").write_bytes(content)
    np.testing.assert_array_equal(audio.AudioFeatures().decode(tmp_path / "f.wav").numpy(), values)


def test_stereo_is_mixed_down_to_the_mean_of_the_channels(tmp_path):
    left, right = pcm16(sine(400)), pcm16(sine(400, freq=300.0))
    interleaved = np.stack([left, right], axis=1)
    (tmp_path / "s.wav").write_bytes(
        riff(fmt_chunk(channels=2), chunk(b"data", interleaved.tobytes())))
    decoded = audio.AudioFeatures().decode(tmp_path / "s.wav").numpy()
    expected = (left.astype(np.float32) + right.astype(np.float32)) / 2 / 32768.0
    np.testing.assert_allclose(decoded, expected, atol=1e-7)


@pytest.mark.parametrize("rate", [11025, 22050])
def test_odd_rates_are_resampled_and_announced_once(tmp_path, rate, each_backend):
    for i in range(3):
        write_wav(tmp_path / f"{i}.wav", seconds=0.5 + 0.1 * i, rate=rate)
    features = audio.AudioFeatures()
    with pytest.warns(UserWarning, match=f"from {rate} Hz to sample_rate=8000 Hz") as record:
        lengths = [int(tf.shape(features.decode(tmp_path / f"{i}.wav"))[0]) for i in range(3)]
    assert len([w for w in record if "Resampling" in str(w.message)]) == 1
    for i, length in enumerate(lengths):
        assert abs(length - round((0.5 + 0.1 * i) * 8000)) <= 2
    with pytest.warns(UserWarning, match="Resampling"):  # another instance says it again
        audio.AudioFeatures().decode(tmp_path / "0.wav")


def test_resampled_audio_is_not_delayed(tmp_path, each_backend):
    # A click at 0.25 s stays at 0.25 s (tensorflow-io's resampler alone
    # delays it by half its filter: 4 ms at 16 kHz).
    rate = 8000
    click = np.zeros(rate // 2, np.float32)
    click[rate // 4] = 0.9
    (tmp_path / "c.wav").write_bytes(
        riff(fmt_chunk(rate=rate), chunk(b"data", pcm16(click).tobytes())))
    with pytest.warns(UserWarning, match="Resampling"):
        out = audio.AudioFeatures(sample_rate=16000).decode(tmp_path / "c.wav").numpy()
    assert len(out) == 8000
    assert int(np.argmax(np.abs(out))) == 4000


def test_resampling_many_files_does_not_retrace(tmp_path):
    # tfio's resample runs `tf.vectorized_map`, which traces a new function
    # per eager call: TensorFlow warned about retracing once per file.
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("tensorflow")
    logger.addHandler(handler)
    try:
        features = audio.AudioFeatures(sample_rate=16000)
        with pytest.warns(UserWarning, match="from 8000 Hz"):
            for i in range(8):
                write_wav(tmp_path / f"{i}.wav", seconds=0.2 + 0.01 * i)
                features.decode(tmp_path / f"{i}.wav")
    finally:
        logger.removeHandler(handler)
    assert not [m for m in messages if "retracing" in m or "while_loop" in m]


def test_bad_headers_and_data_are_value_errors_that_say_what_is_wrong(tmp_path):
    good = riff(fmt_chunk(), chunk(b"data", pcm16(sine(400)).tobytes()))
    cases = {
        "random.wav": (np.random.default_rng(0).bytes(300), "not a WAV file"),
        "empty.wav": (b"", "not a WAV file"),
        "header.wav": (good[:30], "'fmt ' chunk is .* too short"),
        "no_data.wav": (good[:44], "truncated: the data chunk declares 800 bytes, 0 follow"),
        "data.wav": (good[:-101], "truncated: the data chunk declares 800 bytes, 699 follow"),
        "rate0.wav": (riff(fmt_chunk(rate=0), chunk(b"data", b"\0\0")), "sample rate=0"),
        "mulaw.wav": (riff(fmt_chunk(tag=7, bits=8), chunk(b"data", b"\0")), "mu-law"),
        "bits12.wav": (riff(fmt_chunk(bits=12), chunk(b"data", b"\0")), "12-bit PCM"),
        "list.wav": (riff(chunk(b"LIST", b"x" * 20))[:30], "LIST.* declares 20 bytes, 10 follow"),
    }
    features = audio.AudioFeatures()
    for name, (content, match) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=match) as info:
            features.decode(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)


def test_missing_file_is_file_not_found_naming_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.wav") as info:
        audio.AudioFeatures().decode(tmp_path / "missing.wav")
    assert info.value.filename == str(tmp_path / "missing.wav")
    assert "Op" not in str(info.value)  # no TensorFlow trace


def test_flac_rate_and_channels_come_from_streaminfo(tmp_path, each_backend):
    left, right = pcm16(sine(1102, rate=11025)), pcm16(sine(1102, rate=11025, freq=300.0))
    flac = flac_bytes(np.stack([left, right], 1), 11025)
    assert audio._flac_streaminfo(flac) == (11025, 2, 16, 1102)
    (tmp_path / "s.flac").write_bytes(flac)
    with pytest.warns(UserWarning, match="from 11025 Hz"):
        decoded = audio.AudioFeatures().decode(tmp_path / "s.flac")
    assert abs(int(tf.shape(decoded)[0]) - 800) <= 2
    bad = {"random.flac": (np.random.default_rng(1).bytes(200), "not a FLAC file"),
           "header.flac": (flac[:20], "truncated header"),
           "cut.flac": (flac[: len(flac) // 2], "truncated")}
    for name, (content, match) in bad.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=match):
            audio.AudioFeatures().decode(tmp_path / name)


def test_skip_lists_every_file_with_its_reason_missing_apart(tmp_path):
    write_wav(tmp_path / "good.wav")
    (tmp_path / "random.wav").write_bytes(np.random.default_rng(0).bytes(300))
    (tmp_path / "cut.wav").write_bytes((tmp_path / "good.wav").read_bytes()[:-100])
    (tmp_path / "m.csv").write_text(
        "path,transcript\ngood.wav,a\nmissing.wav,b\nrandom.wav,c\ncut.wav,d\n")
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        audio.load_features(str(tmp_path / "m.csv"))
    with pytest.warns(UserWarning) as record:
        out, transcripts, paths = audio.load_features(str(tmp_path / "m.csv"), on_error="skip")
    assert transcripts == ["a"] and len(out) == 1
    message = str(record[0].message)
    assert message.startswith("Skipped 3 of 4 files: 1 missing, 2 that could not be decoded.")
    missing, undecodable = message.split("Could not be decoded:")
    assert "missing.wav" in missing and "random.wav" not in missing
    assert "random.wav': not a WAV file" in undecodable
    assert "cut.wav': truncated: the data chunk" in undecodable


def test_skip_beyond_the_listed_count_names_a_file_with_all(tmp_path):
    write_wav(tmp_path / "good.wav")
    for i in range(audio.SKIPPED_LISTED + 2):
        (tmp_path / f"bad{i:02d}.wav").write_bytes(b"nonsense")
    with pytest.warns(UserWarning, match="Skipped 12 of 13 files") as record:
        audio.load_features(str(tmp_path), on_error="skip")
    message = str(record[0].message)
    assert "bad00.wav" in message and "bad11.wav" not in message and "... and 7 more" in message
    listing = message.rsplit("listed in ", 1)[1].strip()
    try:
        rows = open(listing).read().splitlines()
    finally:
        os.remove(listing)
    assert len(rows) == 13 and rows[0] == "path\tproblem"
    assert all("not a WAV file" in row for row in rows[1:])


FSDD_FILES = 60  # every 50th of the 3,000 recordings: all speakers and digits


def fsdd_paths(data_dir):
    folder = os.path.join(data_dir, "fsdd", "recordings")
    return [os.path.join(folder, name) for name in sorted(os.listdir(folder))][::50]


@pytest.mark.skipif(not NATIVE, reason=f"compares with tensorflow-io: {NOT_NATIVE}")
def test_both_backends_give_the_same_features_on_fsdd(data_dir, tmp_path, restore_backend):
    paths = fsdd_paths(data_dir)
    assert len(paths) == FSDD_FILES
    flacs = []
    for path in paths[:10]:
        samples, rate = audio._wav_samples(open(path, "rb").read())
        flacs.append(tmp_path / (os.path.basename(path)[:-4] + ".flac"))
        flacs[-1].write_bytes(flac_bytes(np.round(samples * 32768).astype(np.int16), rate))
    results = {}
    for name in audio.BACKENDS:
        audio.set_backend(name)
        native, upsampled = audio.AudioFeatures(), audio.AudioFeatures(sample_rate=16000)
        with pytest.warns(UserWarning, match="from 8000 Hz to sample_rate=16000 Hz"):
            results[name] = (
                [native.log_mel(native.decode(p)).numpy() for p in paths],
                [upsampled.log_mel(upsampled.decode(p)).numpy() for p in paths],
                [native.decode(p).numpy() for p in flacs],
            )
    (same_a, up_a, flac_a), (same_b, up_b, flac_b) = results.values()
    # At the file's own rate, and from FLAC: the same numbers.
    for a, b in zip(same_a + flac_a, same_b + flac_b):
        np.testing.assert_array_equal(a, b)
    # Resampled: the tolerance `AudioFeatures` states, in standardised units,
    # in the mel bins centred below 3.4 kHz (85% of the source's Nyquist).
    mel = tf.signal.linear_to_mel_weight_matrix(40, 257, 16000, 20.0, 8000.0).numpy()
    speech = np.argmax(mel, axis=0) * 16000 / 512 < 3400
    assert speech.sum() == 28
    for a, b in zip(up_a, up_b):
        assert a.shape == b.shape
        assert np.max(np.abs(a - b)[:, speech]) <= 0.15
    assert np.mean([np.mean(np.abs(a - b)) for a, b in zip(up_a, up_b)]) <= 0.02
