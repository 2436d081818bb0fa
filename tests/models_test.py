import keras
import numpy as np
import pytest

from tf_gradual_prune import GradualPruning
from tf_gradual_prune import RampedThresholdSchedule
from tf_gradual_prune import find_prunable_weights
from tf_gradual_prune import models


def test_greedy_decode_merges_repeats_and_drops_blanks():
    # classes 0..2, blank = 3
    frames = [0, 0, 3, 0, 1, 1, 3, 3, 2]
    logits = np.eye(4)[frames][None]
    assert models.greedy_decode(logits) == [[0, 0, 1, 2]]
    assert models.greedy_decode(logits, lengths=[4]) == [[0, 0]]


@pytest.mark.parametrize(
    "a, b, distance", [("", "", 0), ("abc", "abc", 0), ("abc", "abd", 1),
                       ("3 9 1", "3 1", 2), ([1, 2, 3], [], 3)],
)
def test_edit_distance(a, b, distance):
    assert models.edit_distance(a, b) == distance


def test_error_rate():
    assert models.error_rate(["3 9", "1"], ["3 9", "7"]) == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="2 hypotheses for 1"):
        models.error_rate(["a", "b"], ["a"])


def test_speech_model_learns_a_toy_ctc_task_and_prunes_its_bigrus():
    rng = np.random.default_rng(0)
    # Each label is a 6-frame burst on its own feature channel.
    x = np.zeros((64, 60, 8), "float32")
    y = -np.ones((64, 3), "int32")
    for i in range(64):
        labels = rng.integers(0, 4, size=rng.integers(1, 4))
        for k, label in enumerate(labels):
            x[i, 6 + 18 * k: 12 + 18 * k, label] = 1.0
            x[i, :, 7] += 0.01  # no frame is all zeros inside the clip
            y[i, k] = label
    keras.utils.set_random_seed(0)
    model = models.speech_model(8, 4, units=16, layers=1, conv_filters=16)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    schedule = RampedThresholdSchedule(40, 80, 160, 5, target_sparsity=0.5)
    history = model.fit(x, y, batch_size=16, epochs=60, verbose=0,
                        callbacks=[GradualPruning(schedule)])
    assert history.history["loss"][-1] < history.history["loss"][0] / 3
    names = [item.name for item in find_prunable_weights(model)]
    assert sum("forward" in n for n in names) == 2 and sum("backward" in n for n in names) == 2
    hyp = model.decode(x[:16])
    refs = [[int(v) for v in row if v >= 0] for row in y[:16]]
    assert models.error_rate(hyp, refs) < 0.5


def test_speech_model_bad_arguments():
    with pytest.raises(ValueError, match="rnn='transformer'"):
        models.speech_model(40, 10, rnn="transformer")
    with pytest.raises(ValueError, match="units=0"):
        models.speech_model(40, 10, units=0)
