import os
import wave

import numpy as np
import pytest
import tensorflow as tf

pytest.importorskip("tensorflow_io")
from tf_gradual_prune import audio  # noqa: E402


def write_wav(path, seconds=0.5, rate=8000, freq=440.0):
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.5 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(samples.tobytes())
    return samples.astype(np.float32) / 32768.0


def test_native_ops_self_test_passes_on_the_reference_stack():
    tfio = audio.require_tfio()
    assert hasattr(tfio.audio, "decode_wav")


def test_decode_wav_resample_and_log_mel(tmp_path):
    expected = write_wav(tmp_path / "a.wav", rate=8000)
    features = audio.AudioFeatures(sample_rate=8000)
    decoded = features.decode(tmp_path / "a.wav").numpy()
    np.testing.assert_allclose(decoded, expected, atol=1e-6)
    doubled = audio.AudioFeatures(sample_rate=16000).decode(tmp_path / "a.wav")
    assert abs(int(tf.shape(doubled)[0]) - 2 * len(expected)) <= 2
    mel = features.log_mel(decoded)
    assert mel.shape[1] == 40 and 45 <= mel.shape[0] <= 55  # 10 ms hop over 0.5 s
    # 440 Hz: the energy sits in the low mel bins.
    assert int(tf.argmax(tf.reduce_mean(mel, axis=0))) < 20


def test_decode_flac_written_by_tfio(tmp_path):
    tfio = audio.require_tfio()
    expected = write_wav(tmp_path / "a.wav")
    pcm = tf.constant((expected * 32768).astype(np.int16)[:, None])
    flac = tfio.audio.encode_flac(pcm, rate=8000)
    (tmp_path / "a.flac").write_bytes(flac.numpy())
    decoded = audio.AudioFeatures().decode(tmp_path / "a.flac").numpy()
    np.testing.assert_allclose(decoded, expected, atol=1e-6)


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
    with pytest.raises(ValueError, match="normalize='yes'"):
        audio.AudioFeatures(normalize="yes")
