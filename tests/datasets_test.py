import os

import numpy as np
import pytest

from tf_gradual_prune import datasets


def test_synthetic_is_deterministic_and_shaped():
    (x, y), (xt, yt) = datasets.synthetic_sequences(num_samples=200, seed=3)
    (x2, y2), _ = datasets.synthetic_sequences(num_samples=200, seed=3)
    (x3, _), _ = datasets.synthetic_sequences(num_samples=200, seed=4)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, x3)
    assert x.shape == (150, 40, 16) and xt.shape == (50, 40, 16)
    assert x.dtype == np.float32 and y.dtype == np.int32
    assert set(np.unique(y)) <= set(range(10))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(num_samples=1), ValueError, "num_samples=1"),
        (dict(timesteps=2.5), TypeError, "timesteps=2.5"),
        (dict(test_fraction=1.0), ValueError, "test_fraction=1.0"),
        (dict(noise=-1), ValueError, "noise=-1"),
    ],
)
def test_synthetic_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        datasets.synthetic_sequences(**kwargs)


def test_missing_data_dir_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)
    with pytest.raises(ValueError, match="TFGP_DATA_DIR"):
        datasets.fsdd_digits()
    with pytest.raises(ValueError, match="does not exist"):
        datasets.fsdd_digits(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="No FSDD recordings"):
        datasets.fsdd_digits(str(tmp_path))
    with pytest.raises(ValueError, match="split='random'"):
        datasets.fsdd_digits(str(tmp_path), split="random")


def test_undecodable_wav_names_its_path(tmp_path):
    bad = tmp_path / "3_theo_0.wav"
    bad.write_bytes(b"not a wav file at all")
    with pytest.raises(ValueError, match="3_theo_0.wav"):
        datasets.fsdd_digits(str(tmp_path))


@pytest.mark.parametrize("split, n_test", [("speaker", 500), ("official", 300)])
def test_fsdd_real_recordings(data_dir, split, n_test):
    (x, y), (xt, yt) = datasets.fsdd_digits(data_dir, split=split)
    assert len(x) + len(xt) == 3000 and len(xt) == n_test
    assert x.shape[1:] == (100, 40)
    assert set(np.unique(y)) == set(range(10))
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-3


def test_synthetic_digit_recordings_are_deterministic_and_complete():
    recordings = datasets.synthetic_digit_recordings(takes=2, seed=1)
    again = datasets.synthetic_digit_recordings(takes=2, seed=1)
    other = datasets.synthetic_digit_recordings(takes=2, seed=2)
    assert len(recordings) == 6 * 10 * 2
    assert {r.speaker for r in recordings} == set(datasets.SYNTHETIC_SPEAKERS)
    assert {r.digit for r in recordings} == set(range(10))
    for a, b in zip(recordings, again):
        np.testing.assert_array_equal(a.audio, b.audio)
    assert not np.array_equal(recordings[0].audio, other[0].audio)
    lengths = [len(r.audio) / 8000 for r in recordings]
    assert 0.15 < min(lengths) and max(lengths) < 1.0
    assert max(float(np.abs(r.audio).max()) for r in recordings) <= 1.0


def _constant_recordings():
    # Each recording's samples hold its digit, so the strings can be checked.
    return [datasets.Recording(np.full(80, 0.01 * (d + 1), np.float32), d, s, t)
            for s in ("a", "b", "c") for d in range(10) for t in range(6)]


def test_digit_strings_join_recordings_with_gaps_and_transcripts():
    recordings = _constant_recordings()
    waves, texts = datasets.digit_strings(recordings, 50, min_digits=2, max_digits=4,
                                          gap_ms=(10, 20), noise=0.0, seed=3)
    again, _ = datasets.digit_strings(recordings, 50, min_digits=2, max_digits=4,
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
    train, test = datasets.split_recordings(recordings, "speaker", "b")
    assert {r.speaker for r in test} == {"b"} and "b" not in {r.speaker for r in train}
    train, test = datasets.split_recordings(recordings)  # default: last speaker
    assert {r.speaker for r in test} == {"c"}
    train, test = datasets.split_recordings(recordings, "official")
    assert {r.take for r in test} == set(range(5)) and {r.take for r in train} == {5}
    with pytest.raises(ValueError, match="test_speaker='zed'"):
        datasets.split_recordings(recordings, "speaker", "zed")
    with pytest.raises(ValueError, match="split='random'"):
        datasets.split_recordings(recordings, "random")


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
        datasets.digit_strings(_constant_recordings(), **kwargs)


def test_speech_digits_synthetic_default():
    (waves, texts), (test_waves, test_texts) = datasets.speech_digits(
        train_size=20, test_size=8, max_digits=7)
    assert len(waves) == 20 and len(test_waves) == 8
    assert all(1 <= len(t.split()) <= 7 for t in texts + test_texts)
    assert all(w.dtype == np.float32 and w.ndim == 1 for w in waves)
    with pytest.raises(ValueError, match="source='librispeech'"):
        datasets.speech_digits("librispeech")


def test_speech_digits_on_fsdd_hold_out_a_real_speaker(data_dir):
    recordings = datasets.fsdd_recordings(data_dir)
    assert len(recordings) == 3000 and recordings[0].sample_rate == 8000
    train, test = datasets.split_recordings(recordings)
    assert {r.speaker for r in test} == {"yweweler"} and len(train) == 2500
    (waves, texts), _ = datasets.speech_digits("fsdd", data_dir, train_size=10, test_size=4)
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
    folder = datasets.download_fsdd(str(cache), origin=archive.as_uri(), file_hash=digest)
    assert sorted(os.listdir(folder)) == sorted(os.path.basename(p) for p in source)
    assert str(cache) in folder
    archive.unlink()  # a second call must not need the origin
    assert datasets.download_fsdd(str(cache), origin=archive.as_uri()) == folder
    recordings = datasets.fsdd_recordings(download=True, cache_dir=str(cache),
                                          origin=archive.as_uri())
    assert len(recordings) == len(source)


def test_download_fsdd_rejects_a_wrong_hash(data_dir, tmp_path):
    archive, _ = _archive(data_dir, tmp_path, count=2)
    with pytest.raises(ValueError, match="(?i)corrupt|hash"):
        datasets.download_fsdd(str(tmp_path / "cache"), origin=archive.as_uri(),
                               file_hash="0" * 64)


def test_lm_batches_are_contiguous_streams_in_batch_order():
    ids = np.arange(1000)
    x, y = datasets.lm_batches(ids, batch_size=4, steps=10)
    per_stream = 999 // 4  # 249 -> 24 batches of 10 steps
    assert x.shape == y.shape == (24 * 4, 10)
    np.testing.assert_array_equal(y, x + 1)
    # Row r of batch k continues row r of batch k-1 (a stateful model's state fits).
    for k in range(1, 24):
        np.testing.assert_array_equal(x[4 * k: 4 * k + 4, 0], x[4 * (k - 1): 4 * k, -1] + 1)
    np.testing.assert_array_equal(x[:4, 0], np.arange(4) * per_stream)
    with pytest.raises(ValueError, match="too few"):
        datasets.lm_batches(np.arange(20), batch_size=4, steps=10)
    with pytest.raises(ValueError, match="steps=0"):
        datasets.lm_batches(ids, steps=0)


def test_ptb_from_the_shared_folder(data_dir):
    corpus = datasets.ptb(data_dir)
    assert len(corpus.vocabulary) == 10000
    # The standard word counts (with one <eos> per sentence).
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (929589, 73760, 82430)
    assert corpus.vocabulary[:3] == ["the", "<unk>", "<eos>"]
    assert corpus.words(corpus.valid[:4]) == "consumers may want to"


def test_ptb_rejects_a_damaged_copy(data_dir, tmp_path):
    import shutil

    for split in datasets.PTB_SPLITS:
        shutil.copy(os.path.join(data_dir, "ptb", f"ptb.{split}.txt"), tmp_path)
    (tmp_path / "ptb.test.txt").unlink()
    with pytest.raises(ValueError, match="No PTB file 'ptb.test.txt'"):
        datasets.ptb(str(tmp_path))
    shutil.copy(os.path.join(data_dir, "ptb", "ptb.test.txt"), tmp_path)
    with open(tmp_path / "ptb.valid.txt", "a") as f:
        f.write("one more line\n")
    with pytest.raises(ValueError, match="ptb.valid.txt.*not the reference"):
        datasets.ptb(str(tmp_path))


def test_download_ptb_verifies_and_caches(data_dir, tmp_path):
    source = os.path.join(os.path.abspath(data_dir), "ptb")
    origin = "file://" + source + "/ptb.{split}.txt"
    folder = datasets.download_ptb(str(tmp_path / "cache"), origin=origin)
    assert str(tmp_path) in folder
    corpus = datasets.ptb(download=True, cache_dir=str(tmp_path / "cache"),
                          origin="file:///nonexistent/{split}")  # served from the cache
    assert len(corpus.train) == 929589
    with pytest.raises(ValueError, match="must contain"):
        datasets.download_ptb(str(tmp_path), origin="file:///x.txt")


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(takes=0), "takes=0"), (dict(sample_rate=2000), "sample_rate=2000"),
     (dict(noise=-1.0), "noise=-1.0")],
)
def test_synthetic_digit_recordings_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        datasets.synthetic_digit_recordings(**kwargs)


def test_speech_digits_bad_split_fails_before_loading():
    with pytest.raises(ValueError, match="split='random'"):
        datasets.speech_digits(split="random")
    with pytest.raises(ValueError, match="test_speaker='zed'"):
        datasets.speech_digits(test_speaker="zed", train_size=2, test_size=2)


TS_FILE = """# a comment
@problemName Tiny
@dimensions 2
@equalLength false
@classLabel true a b
@data
1,2,3:4,5,6:a
0.5,0.25:1,2:b
"""


def test_read_ts_parses_channels_lengths_and_labels(tmp_path):
    path = tmp_path / "Tiny_TRAIN.ts"
    path.write_text(TS_FILE)
    sequences, labels, classes = datasets.read_ts(str(path))
    assert classes == ["a", "b"] and labels == [0, 1]
    np.testing.assert_array_equal(sequences[0], [[1, 4], [2, 5], [3, 6]])
    assert sequences[1].shape == (2, 2) and sequences[1].dtype == np.float32


@pytest.mark.parametrize(
    "text, match",
    [
        (TS_FILE.replace("1,2,3:4,5,6:a", "1,2,3:4,5:a"), "line 7: channels of different"),
        (TS_FILE.replace(":b\n", ":c\n"), "label 'c' is not one of"),
        (TS_FILE.replace("@classLabel true a b", "@classLabel false"), "no class labels"),
        (TS_FILE.split("@data")[0] + "@data\n", "holds no sequences"),
    ],
)
def test_read_ts_errors_name_the_file_and_line(tmp_path, text, match):
    path = tmp_path / "bad.ts"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        datasets.read_ts(str(path))


def test_ts_classification_from_a_folder_and_missing_problem(tmp_path):
    (tmp_path / "Tiny").mkdir()
    for split in ("TRAIN", "TEST"):
        (tmp_path / "Tiny" / f"Tiny_{split}.ts").write_text(TS_FILE)
    (x, y), (xt, yt), classes = datasets.ts_classification("Tiny", str(tmp_path))
    assert len(x) == len(xt) == 2 and list(y) == [0, 1] and classes == ["a", "b"]
    with pytest.raises(ValueError, match="'Other'.*does not exist"):
        datasets.ts_classification("Other", str(tmp_path))


def test_japanese_vowels_from_the_files_aeon_ships():
    try:
        datasets.aeon_data_dir()
    except ValueError as error:
        pytest.skip(f"aeon's data files are not installed ({error}); .ci/run installs them")
    (x, y), (xt, yt), classes = datasets.ts_classification("JapaneseVowels")
    assert (len(x), len(xt)) == (270, 370)
    assert classes == [str(i) for i in range(1, 10)]
    assert np.bincount(y).tolist() == [30] * 9
    assert all(s.shape[1] == 12 and 7 <= len(s) <= 29 for s in x + xt)
