import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def seed_everything():
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture(scope="session")
def data_dir():
    """`../shared/data` (or `TFGP_DATA_DIR`); skips when it is absent."""
    path = os.environ.get(
        "TFGP_DATA_DIR", os.path.join(REPO, "..", "shared", "data")
    )
    if not os.path.isdir(path):
        pytest.skip(f"needs the shared data folder, not found at {path}")
    return path


def sequence_data(n=96, steps=6, features=4, classes=3, seed=0):
    """A small learnable sequence-classification set."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, steps, features)).astype("float32")
    y = (np.argmax(x.sum(axis=1)[:, :classes], axis=1)).astype("int32")
    return x, y


def compile_model(model, lr=1e-2):
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model
