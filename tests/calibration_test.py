"""Where a calibrated schedule lands on real speech (slow: trains GRUs)."""

import keras
import numpy as np
import pytest

from tf_gradual_prune import GradualPruning, RampedThresholdSchedule, sparsity_table, speech_data


@pytest.fixture(scope="module")
def fsdd(data_dir):
    return speech_data.fsdd_digits(data_dir, split="official")


def train(data, schedule, epochs, seed=0):
    (x, y), (xt, yt) = data
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input(x.shape[1:]), keras.layers.GRU(128), keras.layers.Dense(10)]
    )
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    callbacks = [GradualPruning(schedule)] if schedule else []
    history = model.fit(
        x, y, batch_size=64, epochs=epochs, validation_data=(xt, yt),
        callbacks=callbacks, verbose=0,
    )
    return model, history.history["val_accuracy"][-1]


@pytest.mark.slow
def test_target_0_9_lands_within_0_05_on_fsdd_with_accuracy_close_to_dense(fsdd):
    epochs = 16
    steps = int(np.ceil(len(fsdd[0][0]) / 64))
    schedule = RampedThresholdSchedule.for_training(
        epochs, steps, target_sparsity=0.9, frequency=20
    )
    _, dense_accuracy = train(fsdd, None, epochs)
    model, pruned_accuracy = train(fsdd, schedule, epochs)
    sparsity = sparsity_table(model, weights="recurrent").sparsity
    assert sparsity == pytest.approx(0.9, abs=0.05)
    assert dense_accuracy > 0.8  # the task is learnt at all
    assert pruned_accuracy > dense_accuracy - 0.08
