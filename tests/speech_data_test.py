import os

import numpy as np
import pytest

from tf_gradual_prune import datasets, speech_data


def test_missing_data_dir_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)
    with pytest.raises(ValueError, match="TFGP_DATA_DIR"):
        speech_data.fsdd_digits()
    with pytest.raises(ValueError, match="does not exist"):
        speech_data.fsdd_digits(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="No FSDD recordings"):
        speech_data.fsdd_digits(str(tmp_path))
    with pytest.raises(ValueError, match="split='random'"):
        speech_data.fsdd_digits(str(tmp_path), split="random")
    with pytest.raises(ValueError, match="max_seconds=0"):
        speech_data.fsdd_digits(str(tmp_path), max_seconds=0)
    with pytest.raises(ValueError, match="test_speaker='zed'"):
        speech_data.fsdd_digits(str(tmp_path), test_speaker="zed")


def test_undecodable_wav_names_its_path(tmp_path):
    bad = tmp_path / "3_theo_0.wav"
    bad.write_bytes(b"not a wav file at all")
    with pytest.raises(ValueError, match="3_theo_0.wav"):
        speech_data.fsdd_digits(str(tmp_path))


@pytest.mark.parametrize("split, n_test", [("speaker", 500), ("official", 300)])
def test_fsdd_real_recordings(data_dir, split, n_test):
    (x, y), (xt, yt) = speech_data.fsdd_digits(data_dir, split=split)
    assert len(x) + len(xt) == 3000 and len(xt) == n_test
    assert x.shape[1:] == (100, 40)
    assert set(np.unique(y)) == set(range(10))
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-3


def test_synthetic_digit_recordings_are_deterministic_and_complete():
    recordings = speech_data.synthetic_digit_recordings(takes=2, seed=1)
    again = speech_data.synthetic_digit_recordings(takes=2, seed=1)
    other = speech_data.synthetic_digit_recordings(takes=2, seed=2)
    assert len(recordings) == 6 * 10 * 2
    assert {r.speaker for r in recordings} == set(speech_data.SYNTHETIC_SPEAKERS)
    assert {r.digit for r in recordings} == set(range(10))
    for a, b in zip(recordings, again):
        np.testing.assert_array_equal(a.audio, b.audio)
    assert not np.array_equal(recordings[0].audio, other[0].audio)
    lengths = [len(r.audio) / 8000 for r in recordings]
    assert 0.15 < min(lengths) and max(lengths) < 1.0
    assert max(float(np.abs(r.audio).max()) for r in recordings) <= 1.0


def _constant_recordings():
    # Each recording's samples hold its digit, so the strings can be checked.
    return [speech_data.Recording(np.full(80, 0.01 * (d + 1), np.float32), d, s, t)
            for s in ("a", "b", "c") for d in range(10) for t in range(6)]


def test_digit_strings_join_recordings_with_gaps_and_transcripts():
    recordings = _constant_recordings()
    waves, texts = speech_data.digit_strings(recordings, 50, min_digits=2, max_digits=4,
                                          gap_ms=(10, 20), noise=0.0, seed=3)
    again, _ = speech_data.digit_strings(recordings, 50, min_digits=2, max_digits=4,
                                      gap_ms=(10, 20), noise=0.0, seed=3)
    assert len(waves) == len(texts) == 50
    assert {len(t.split()) for t in texts} == {2, 3, 4}
    for wave, text, same in zip(waves, texts, again):
        np.testing.assert_array_equal(wave, same)
        # Runs of non-zero samples are the recordings, in transcript order.
        values = [round(v / 0.01) - 1 for v in wave[np.r_[True, np.diff(wave) != 0]] if v]
        assert " ".join(map(str, values)) == text
        digits = len(text.split())
        assert 80 * digits + 80 * (digits - 1) <= len(wave) <= 80 * digits + 160 * (digits - 1)


def test_split_recordings_by_speaker_and_official():
    recordings = _constant_recordings()
    train, test = speech_data.split_recordings(recordings, "speaker", "b")
    assert {r.speaker for r in test} == {"b"} and "b" not in {r.speaker for r in train}
    train, test = speech_data.split_recordings(recordings)  # default: last speaker
    assert {r.speaker for r in test} == {"c"}
    train, test = speech_data.split_recordings(recordings, "official")
    assert {r.take for r in test} == set(range(5)) and {r.take for r in train} == {5}
    with pytest.raises(ValueError, match="test_speaker='zed'"):
        speech_data.split_recordings(recordings, "speaker", "zed")
    with pytest.raises(ValueError, match="split='random'"):
        speech_data.split_recordings(recordings, "random")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(count=0), "count=0"),
        (dict(count=5, min_digits=3, max_digits=2), "min_digits=3, max_digits=2"),
        (dict(count=5, gap_ms=(30, 10)), r"gap_ms=\(30, 10\)"),
        (dict(count=5, noise=-0.1), "noise=-0.1"),
    ],
)
def test_digit_strings_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        speech_data.digit_strings(_constant_recordings(), **kwargs)


def test_speech_digits_synthetic_default():
    (waves, texts), (test_waves, test_texts) = speech_data.speech_digits(
        train_size=20, test_size=8, max_digits=7)
    assert len(waves) == 20 and len(test_waves) == 8
    assert all(1 <= len(t.split()) <= 7 for t in texts + test_texts)
    assert all(w.dtype == np.float32 and w.ndim == 1 for w in waves)
    with pytest.raises(ValueError, match="source='librispeech'"):
        speech_data.speech_digits("librispeech")


def test_speech_digits_on_fsdd_hold_out_a_real_speaker(data_dir):
    recordings = speech_data.fsdd_recordings(data_dir)
    assert len(recordings) == 3000 and recordings[0].sample_rate == 8000
    train, test = speech_data.split_recordings(recordings)
    assert {r.speaker for r in test} == {"yweweler"} and len(train) == 2500
    (waves, texts), _ = speech_data.speech_digits("fsdd", data_dir, train_size=10, test_size=4)
    assert len(waves) == 10 and all(len(w) > 1000 for w in waves)


def _archive(data_dir, tmp_path, count=12):
    import glob
    import tarfile

    source = sorted(glob.glob(os.path.join(data_dir, "fsdd", "recordings", "*.wav")))[:count]
    archive = tmp_path / "fsdd.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in source:
            tar.add(path, f"free-spoken-digit-dataset-1.0.10/recordings/{os.path.basename(path)}")
    return archive, source


def test_download_fsdd_unpacks_and_then_uses_the_cache(data_dir, tmp_path):
    import hashlib

    archive, source = _archive(data_dir, tmp_path)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    folder = speech_data.download_fsdd(str(cache), origin=archive.as_uri(), file_hash=digest)
    assert sorted(os.listdir(folder)) == sorted(os.path.basename(p) for p in source)
    assert str(cache) in folder
    archive.unlink()  # a second call must not need the origin
    assert speech_data.download_fsdd(str(cache), origin=archive.as_uri()) == folder
    recordings = speech_data.fsdd_recordings(download=True, cache_dir=str(cache),
                                          origin=archive.as_uri())
    assert len(recordings) == len(source)


def test_download_fsdd_rejects_a_wrong_hash(data_dir, tmp_path):
    archive, _ = _archive(data_dir, tmp_path, count=2)
    with pytest.raises(ValueError, match="(?i)corrupt|hash"):
        speech_data.download_fsdd(str(tmp_path / "cache"), origin=archive.as_uri(),
                               file_hash="0" * 64)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(takes=0), "takes=0"), (dict(sample_rate=2000), "sample_rate=2000"),
     (dict(noise=-1.0), "noise=-1.0")],
)
def test_synthetic_digit_recordings_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        speech_data.synthetic_digit_recordings(**kwargs)


def test_speech_digits_bad_split_fails_before_loading():
    with pytest.raises(ValueError, match="split='random'"):
        speech_data.speech_digits(split="random")
    with pytest.raises(ValueError, match="test_speaker='zed'"):
        speech_data.speech_digits(test_speaker="zed", train_size=2, test_size=2)
