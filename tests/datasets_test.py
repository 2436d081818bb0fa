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
