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
