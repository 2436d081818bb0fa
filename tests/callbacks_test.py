import copy
import glob
import os
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import compile_model, sequence_data

from tf_gradual_prune import (
    GradualPruning,
    RampedThresholdSchedule,
    compat,
    find_prunable_weights,
    masking,
    schedules,
    sparsity_table,
)
from tf_gradual_prune.schedules import MaskUpdate

L = keras.layers

# 96 samples, batch 8: 12 optimizer steps an epoch.
X, Y = sequence_data()
BATCH = 8
STEPS_PER_EPOCH = 12


def build(kind, units=8):
    layers = {
        "lstm": lambda: [L.LSTM(units)],
        "gru": lambda: [L.GRU(units)],
        "simple_rnn": lambda: [L.SimpleRNN(units)],
        "bidirectional": lambda: [L.Bidirectional(L.LSTM(units))],
        "stacked": lambda: [
            L.RNN(L.StackedRNNCells([L.GRUCell(units), L.LSTMCell(units)]))
        ],
        "nested": lambda: [
            keras.Sequential([keras.Input(X.shape[1:]), L.Bidirectional(L.GRU(units))])
        ],
    }[kind]()
    model = keras.Sequential([keras.Input(X.shape[1:])] + layers + [L.Dense(3)])
    return compile_model(model)


KINDS = ["lstm", "gru", "simple_rnn", "bidirectional", "stacked", "nested"]


def fit(model, callbacks, epochs, **kwargs):
    return model.fit(
        X, Y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
        callbacks=callbacks, **kwargs,
    )


def zero_masks(model, weights=None):
    return {
        item.name: keras.ops.convert_to_numpy(item.variable) == 0
        for item in find_prunable_weights(model, weights=weights)
    }


@pytest.mark.parametrize("kind", KINDS)
def test_each_layer_kind_reaches_its_target(kind):
    # "uniform": every matrix at the target (the default shares it out).
    model = build(kind)
    schedule = RampedThresholdSchedule(
        begin_step=12, ramp_step=24, end_step=60, frequency=4, target_sparsity=0.8,
        allocation="uniform",
    )
    history = fit(model, [GradualPruning(schedule)], epochs=6)
    table = sparsity_table(model, weights="recurrent")
    for row in table:
        assert row["sparsity"] == pytest.approx(0.8, abs=0.02), row
    assert history.history["sparsity"][-1] == pytest.approx(table.sparsity)
    # The classifier head is not selected by default.
    assert sparsity_table(model, weights="dense").sparsity == 0.0


def reference_algorithm_1(model, theta, phi, begin, ramp, end, freq, epochs):
    """An independent Algorithm 1: plain train_on_batch plus numpy masking."""
    items = find_prunable_weights(model)
    masks = [np.ones(item.variable.shape, bool) for item in items]
    eps = 0.0
    for _ in range(epochs):
        for start in range(0, len(X), BATCH):
            model.train_on_batch(X[start:start + BATCH], Y[start:start + BATCH])
            t = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
            if begin < t < end and t % freq == 0:
                if t < ramp:
                    eps = theta * (t - begin + 1) / freq
                else:
                    eps = (theta * (ramp - begin + 1) + phi * (t - ramp + 1)) / freq
                for i, item in enumerate(items):
                    w = keras.ops.convert_to_numpy(item.variable)
                    masks[i] &= np.abs(w) >= np.float32(eps)
            for item, mask in zip(items, masks):
                w = keras.ops.convert_to_numpy(item.variable)
                item.variable.assign(np.where(mask, w, 0.0).astype(w.dtype))
    return {item.name: ~mask for item, mask in zip(items, masks)}


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn", "bidirectional"])
def test_masks_equal_an_independent_algorithm_1(kind):
    theta, phi = 0.004, 0.007
    args = dict(begin=6, ramp=20, end=40, freq=3)
    model = build(kind)
    twin = build(kind)
    twin.set_weights(model.get_weights())
    schedule = RampedThresholdSchedule(
        args["begin"], args["ramp"], args["end"], args["freq"],
        start_slope=theta, ramp_slope=phi,
    )
    fit(model, [GradualPruning(schedule)], epochs=4)
    expected = reference_algorithm_1(twin, theta, phi, epochs=4, **args)
    got = zero_masks(model)
    assert len(got) == len(expected)
    total = 0
    for (name, mask), ref in zip(got.items(), expected.values()):
        np.testing.assert_array_equal(mask, ref, err_msg=name)
        total += mask.sum()
    assert total > 0  # the test prunes something


def test_masks_are_monotone_and_pruned_weights_stay_zero():
    model = build("lstm")
    schedule = RampedThresholdSchedule(
        begin_step=6, ramp_step=18, end_step=36, frequency=2, target_sparsity=0.7
    )
    snapshots = []

    def snapshot(batch, logs):
        # JAX's trainer keeps the weights outside the variables during fit.
        getattr(model, "jax_state_sync", lambda: None)()
        snapshots.append(zero_masks(model))

    record = keras.callbacks.LambdaCallback(on_train_batch_end=snapshot)
    # Adam's momentum keeps pushing pruned weights; the masks must hold.
    fit(model, [GradualPruning(schedule), record], epochs=8)
    for before, after in zip(snapshots, snapshots[1:]):
        for name in before:
            assert np.all(after[name][before[name]]), name
    at_end = snapshots[36 - 1]
    for name, mask in snapshots[-1].items():
        np.testing.assert_array_equal(mask, at_end[name])


def test_logs_and_history_record_sparsity_and_threshold():
    model = build("gru")
    schedule = RampedThresholdSchedule(
        begin_step=6, ramp_step=12, end_step=30, frequency=3, start_slope=0.01,
        ramp_slope=0.02,
    )
    batch_logs = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batch_logs.append(dict(logs))
    )
    history = fit(model, [GradualPruning(schedule), record], epochs=3)
    thresholds = history.history["threshold"]
    assert thresholds == sorted(thresholds)
    assert thresholds[-1] == pytest.approx(schedule.threshold(36))
    for step, logs in enumerate(batch_logs, start=1):
        assert logs["threshold"] == pytest.approx(schedule.threshold(step))
    assert history.history["sparsity"][0] == 0.0 or schedule.threshold(12) > 0
    assert history.history["sparsity"][-1] > 0


@pytest.mark.parametrize("factory_name", ["PolynomialDecay", "ConstantSparsity"])
def test_tfmot_sparsity_schedules_work_as_is(factory_name):
    pytest.importorskip("tensorflow_model_optimization")
    tfmot = compat.require_tfmot()  # and tf-keras matches TensorFlow
    sparsity = tfmot.sparsity.keras
    schedule = {
        "PolynomialDecay": lambda: sparsity.PolynomialDecay(
            0.0, 0.75, begin_step=6, end_step=30, frequency=3
        ),
        "ConstantSparsity": lambda: sparsity.ConstantSparsity(
            0.75, begin_step=6, frequency=3
        ),
    }[factory_name]()
    model = build("bidirectional")
    history = fit(model, [GradualPruning(schedule, weights="all")], epochs=4)
    for row in sparsity_table(model):
        kept = round(row["size"] * 0.25)
        assert row["zeros"] == row["size"] - kept, row
    assert history.history["sparsity"][-1] == pytest.approx(0.75, abs=0.01)


def test_plain_callable_sparsity_schedule_and_monotone_fraction():
    # A schedule that asks for less sparsity later: masks must not regrow.
    def schedule(step):
        step = int(step)
        if step == 12:
            return tf.constant(True), tf.constant(0.6)
        if step == 24:
            return tf.constant(True), tf.constant(0.3)
        return tf.constant(False), tf.constant(0.0)

    model = build("gru")
    fit(model, [GradualPruning(schedule)], epochs=3)
    for row in sparsity_table(model, weights="recurrent"):
        assert row["zeros"] == row["size"] - round(row["size"] * 0.4)


def test_dict_schedule_gives_groups_their_own_schedules():
    model = build("lstm")
    rnn = RampedThresholdSchedule(6, 12, 30, 3, target_sparsity=0.9)
    head = RampedThresholdSchedule(6, 12, 30, 3, target_sparsity=0.5)
    callback = GradualPruning({"recurrent": rnn, "dense": head})
    fit(model, [callback], epochs=4)
    assert sparsity_table(model, weights="recurrent").sparsity == pytest.approx(0.9, abs=0.02)
    assert sparsity_table(model, weights="dense").sparsity == pytest.approx(0.5, abs=0.05)
    assert [s for s, _ in callback.groups] == [rnn, head]


def test_reuse_across_fit_calls_continues_the_schedule():
    model = build("lstm")
    schedule = RampedThresholdSchedule(6, 12, 42, 3, target_sparsity=0.8)
    callback = GradualPruning(schedule)
    fit(model, [callback], epochs=2)
    first = sparsity_table(model, weights="recurrent").sparsity
    assert 0 < first < 0.8
    history = fit(model, [callback], epochs=2)
    assert history.history["sparsity"][-1] == pytest.approx(0.8, abs=0.02)
    # A new model with the same callback starts afresh.
    other = build("gru")
    fit(other, [callback], epochs=4)
    assert sparsity_table(other, weights="recurrent").sparsity == pytest.approx(0.8, abs=0.02)


def test_deepcopy_before_and_after_fit():
    schedule = RampedThresholdSchedule(6, 12, 30, 3, target_sparsity=0.8)
    callback = GradualPruning(schedule, weights="all")
    fresh = copy.deepcopy(callback)
    assert fresh is not callback and fresh.schedule == schedule
    fit(build("gru"), [callback], epochs=1)
    used = copy.deepcopy(callback)
    assert used.weights == "all" and used.groups == []
    model = build("gru")
    fit(model, [used], epochs=3)
    assert sparsity_table(model).sparsity == pytest.approx(0.8, abs=0.02)


def test_resume_from_saved_model_continues_at_the_right_step(tmp_path):
    schedule = RampedThresholdSchedule(
        6, 12, 42, 3, start_slope=0.01, ramp_slope=0.02
    )
    model = build("lstm")
    fit(model, [GradualPruning(schedule)], epochs=2)
    saved = zero_masks(model)
    assert any(mask.any() for mask in saved.values())
    path = str(tmp_path / "mid.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert int(restored.optimizer.iterations) == 24
    history = fit(restored, [GradualPruning(schedule)], epochs=2)
    assert history.history["threshold"][-1] == pytest.approx(schedule.threshold(48))
    after = zero_masks(restored)
    assert len(after) == len(saved)
    for mask, before in zip(after.values(), saved.values()):
        assert np.all(mask[before])


def test_log_dir_without_tensorboard_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    schedule = RampedThresholdSchedule(6, 12, 30, 3, target_sparsity=0.5)
    with pytest.raises(ImportError, match=r"tf-gradual-prune\[tensorboard\]") as info:
        GradualPruning(schedule, log_dir=str(tmp_path))
    assert f"log_dir={str(tmp_path)!r}" in str(info.value)
    GradualPruning(schedule)  # without log_dir, tensorboard is not needed


def test_tensorboard_summaries_per_matrix(tmp_path):
    model = build("gru")
    schedule = RampedThresholdSchedule(6, 12, 30, 3, target_sparsity=0.5)
    fit(model, [GradualPruning(schedule, log_dir=str(tmp_path))], epochs=2)
    files = glob.glob(os.path.join(str(tmp_path), "events.out.tfevents.*"))
    assert files
    tags = set()
    for event in tf.compat.v1.train.summary_iterator(files[0]):
        tags.update(value.tag for value in event.summary.value)
    for item in find_prunable_weights(model):
        assert f"sparsity/{item.name}" in tags
        assert f"threshold/{item.name}" in tags
    assert "pruning/sparsity" in tags


def test_selection_that_matches_nothing_fails_at_train_begin():
    model = compile_model(
        keras.Sequential([keras.Input((4,)), L.Dense(3)])
    )
    schedule = RampedThresholdSchedule(1, 2, 10, 1, target_sparsity=0.5)
    with pytest.raises(ValueError, match="matches no prunable weight"):
        model.fit(
            np.zeros((8, 4)), np.zeros(8), epochs=1, verbose=0,
            callbacks=[GradualPruning(schedule)],
        )


def test_nan_weight_at_calibration_names_the_weight():
    model = build("gru")
    kernel = model.layers[0].cell.kernel
    values = keras.ops.convert_to_numpy(kernel).copy()
    values[0, 0] = np.nan
    kernel.assign(values)
    schedule = RampedThresholdSchedule(0, 2, 10, 1, target_sparsity=0.5)
    with pytest.raises(ValueError, match=f"Weight '{kernel.path}' holds"):
        fit(model, [GradualPruning(schedule)], epochs=1)


@pytest.mark.skipif(keras.backend.backend() == "torch",
                    reason="Keras' PyTorch trainer allows only steps_per_execution=1")
def test_steps_per_execution_warns():
    model = build("gru")
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=4,
    )
    schedule = RampedThresholdSchedule(4, 8, 30, 4, target_sparsity=0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(model, [GradualPruning(schedule)], epochs=2)
    assert any("steps_per_execution=4" in str(w.message) for w in caught)
    assert sparsity_table(model, weights="recurrent").sparsity > 0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(schedule=0.9), TypeError, "Received: 0.9"),
        (dict(schedule={"recurrent": "x"}), TypeError, r"`schedule\['recurrent'\]`"),
        (dict(schedule={}), ValueError, "empty dict"),
        (dict(schedule={"bias": None}), ValueError, "weights='bias'"),
        (dict(weights="bias"), ValueError, "weights='bias'"),
        (dict(log_dir=3), TypeError, "log_dir=3"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    schedule = RampedThresholdSchedule(1, 2, 10, 1, target_sparsity=0.5)
    kwargs.setdefault("schedule", schedule)
    with pytest.raises(error, match=match):
        GradualPruning(**kwargs)


def test_dict_schedule_with_weights_is_an_error():
    schedule = RampedThresholdSchedule(1, 2, 10, 1, target_sparsity=0.5)
    with pytest.raises(ValueError, match="weights='dense'"):
        GradualPruning({"recurrent": schedule}, weights="dense")


def assert_whole_blocks(values, block):
    """Every block (`(inputs, outputs)`, or an integer for `(block, 1)`) of
    the last two axes is all zero or has no zero."""
    rows, cols = block if isinstance(block, tuple) else (block, 1)
    zero = values == 0
    inputs, outputs = zero.shape[-2:]
    for start in range(0, inputs, rows):
        for first in range(0, outputs, cols):
            chunk = zero[..., start:start + rows, first:first + cols]
            assert np.all(chunk.all(axis=(-2, -1)) | ~chunk.any(axis=(-2, -1))), (start, first)


@pytest.mark.parametrize("block", [4, 16, (4, 1), (1, 8), (1, 5)])
@pytest.mark.parametrize("by", ["threshold", "fraction"])
def test_block_pruning_prunes_whole_blocks(block, by):
    pytest.importorskip("tensorflow_model_optimization")
    tfmot = compat.require_tfmot()  # and tf-keras matches TensorFlow
    model = build("lstm", units=12)  # kernels (4, 48) and (12, 48): partial blocks
    if by == "threshold":
        schedule = RampedThresholdSchedule(6, 12, 30, 3, target_sparsity=0.75)
    else:
        schedule = tfmot.sparsity.keras.ConstantSparsity(0.75, begin_step=6, frequency=3)
    fit(model, [GradualPruning(schedule, weights="all", block_size=block)], epochs=3)
    block = masking.check_block_size(block)
    for item in find_prunable_weights(model, weights="all"):
        values = keras.ops.convert_to_numpy(item.variable)
        assert_whole_blocks(values, block)
    # Three of four blocks go; whole-block counting makes it approximate.
    assert sparsity_table(model).sparsity == pytest.approx(0.75, abs=0.08)


@pytest.mark.parametrize(
    "block, error",
    [(0, ValueError), (-4, ValueError), (2.0, TypeError), ((4, 0), ValueError),
     ((4, 2, 1), TypeError), ((1, 2.5), TypeError), ("4", TypeError)],
)
def test_bad_block_size(block, error):
    schedule = RampedThresholdSchedule(1, 2, 10, 1, target_sparsity=0.5)
    with pytest.raises(error, match="block_size="):
        GradualPruning(schedule, block_size=block)


@pytest.mark.parametrize(
    "calibration, warns",
    [("begin", True), ("track", False), ("spread", False), ("geometric", False)],
)
def test_fresh_callback_after_begin_step_warns_only_for_begin_calibration(
    calibration, warns
):
    model = build("gru")
    schedule = RampedThresholdSchedule(
        6, 12, 42, 3, target_sparsity=0.5, calibration=calibration
    )
    fit(model, [GradualPruning(schedule)], epochs=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(model, [GradualPruning(schedule)], epochs=1)
    messages = [str(w.message) for w in caught if "calibrated now" in str(w.message)]
    assert bool(messages) == warns


def test_for_training_defaults_prune_a_short_fit_to_the_target():
    # 3 epochs of 10 steps, nothing set but the target: the schedule picks
    # its frequency, and the fit lands on the target.
    x, y = X[:80], Y[:80]
    model = build("bidirectional")
    schedule = RampedThresholdSchedule.for_training(3, 10, target_sparsity=0.8)
    pruning = GradualPruning(schedule)
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[pruning])
    table = sparsity_table(model, weights="recurrent")
    assert table.sparsity == pytest.approx(0.8, abs=0.01)
    assert history.history["sparsity"][-1] == pytest.approx(table.sparsity)
    # "lamp" shares the target out: every matrix pruned, none emptied.
    for row in table:
        assert 0.3 < row["sparsity"] < 0.99, row


def test_spread_calibration_cuts_the_ramp_share_at_every_update():
    model = build("lstm", units=16)
    schedule = RampedThresholdSchedule(
        6, 12, 30, 2, target_sparsity=0.9, calibration="spread", allocation="uniform"
    )
    pruning = GradualPruning(schedule)
    seen = {}

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
            seen[step] = [
                float(np.mean(keras.ops.convert_to_numpy(i.variable) == 0))
                for i in find_prunable_weights(self.model)
            ]

    fit(model, [pruning, Record()], epochs=3)
    for step, sparsities in seen.items():
        wanted = 0.9 * schedule.ramp_fraction(step)
        for value in sparsities:
            assert value == pytest.approx(wanted, abs=0.01), (step, value)


class PruneOnceAt:
    """A rule of the user's own, as in the README: one cut at one step."""

    def __init__(self, step, sparsity, count=None):
        self.begin_step, self.end_step = step - 1, step + 1
        self.step, self.sparsity, self.count = step, sparsity, count

    def init(self, magnitudes):
        return {"done": False}

    def update(self, state, step, magnitudes, since=None):
        since = step - 1 if since is None else since
        if not since < self.step <= step:
            return None, state
        count = self.count or len(magnitudes())
        return MaskUpdate("sparsity", [self.sparsity] * count), {"done": True}


def test_a_rule_of_ones_own_is_applied_and_its_state_saved():
    model = build("gru")
    callback = GradualPruning(PruneOnceAt(15, 0.75))
    history = fit(model, [callback], epochs=2)
    assert history.history["sparsity"] == [0.0, pytest.approx(0.75, abs=0.01)]
    for row in sparsity_table(model, weights="recurrent"):
        assert row["zeros"] == row["size"] - round(row["size"] * 0.25), row
    assert callback.get_state()["groups"][0]["done"] is True
    with pytest.raises(ValueError, match="returned 5 values for a group of 2"):
        fit(build("gru"), [GradualPruning(PruneOnceAt(3, 0.5, count=5))], epochs=1)
    with pytest.raises(TypeError, match="pruning rule"):
        GradualPruning(object())


def test_a_format_1_state_file_still_resumes(tmp_path):
    model = build("lstm")
    schedule = RampedThresholdSchedule(6, 12, 42, 3, target_sparsity=0.8, calibration="begin")
    callback = GradualPruning(schedule)
    fit(model, [callback], epochs=1)
    state = callback.get_state()
    old = {"format": 1, "step": state["step"], "groups": [
        {"names": g["names"], "slopes": g["slopes"], "thresholds": g["thresholds"]}
        for g in state["groups"]]}
    first = sparsity_table(model, weights="recurrent").sparsity
    other = GradualPruning(schedule)
    other.set_state(old)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(model, [other], epochs=4, initial_epoch=1)
    assert not [w for w in caught if "calibrated now" in str(w.message)]  # slopes came back
    assert other.get_state()["groups"][0]["slopes"] == state["groups"][0]["slopes"]
    assert sparsity_table(model, weights="recurrent").sparsity > first > 0


def test_regrowth_brings_pruned_weights_back_and_lands_on_the_target():
    # At 1e-2 a weight came back in 0-2 of these 42 steps, depending on the
    # initial weights; at 3e-2, 9-20 on TensorFlow and JAX (seeds 0-3).
    keras.utils.set_random_seed(0)
    model = compile_model(keras.Sequential([keras.Input(X.shape[1:]), L.GRU(8), L.Dense(3)]),
                          lr=3e-2)
    schedule = RampedThresholdSchedule(6, 12, 42, 3, target_sparsity=0.8, regrow=True,
                                       allocation="uniform")
    seen = []

    def snapshot(batch, logs):
        getattr(model, "jax_state_sync", lambda: None)()  # JAX: the weights of this step
        seen.append(zero_masks(model))

    record = keras.callbacks.LambdaCallback(on_train_batch_end=snapshot)
    fit(model, [GradualPruning(schedule), record], epochs=4)
    for row in sparsity_table(model, weights="recurrent"):
        assert row["sparsity"] == pytest.approx(0.8, abs=0.02), row
    # Some weight pruned at one update is alive again at a later one.
    came_back = sum(np.sum(before[name] & ~after[name])
                    for before, after in zip(seen, seen[1:]) for name in before)
    assert came_back > 0
    # After end_step the mask no longer changes.
    np.testing.assert_array_equal(seen[-1][next(iter(seen[-1]))],
                                  seen[41][next(iter(seen[41]))])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_step_scale_multiplies_each_step_on_a_pruned_matrix_by_its_fan_in_shrink(optimizer):
    def run(step_scale):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input(X.shape[1:]), L.LSTM(8), L.Dense(3)])
        model.compile(
            optimizer=(keras.optimizers.SGD(0.1, momentum=0.9) if optimizer == "sgd"
                       else keras.optimizers.Adam(1e-2)),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        # One mask update, after the second step.
        schedule = RampedThresholdSchedule(0, 2, 4, 2, target_sparsity=0.8,
                                           allocation="uniform", step_scale=step_scale)
        callback = GradualPruning(schedule)
        model.fit(X[:16], Y[:16], batch_size=8, shuffle=False, verbose=0, callbacks=[callback])
        before = [keras.ops.convert_to_numpy(i.variable) for i in find_prunable_weights(model)]
        model.fit(X[16:24], Y[16:24], batch_size=8, verbose=0, callbacks=[callback])
        after = [keras.ops.convert_to_numpy(i.variable) for i in find_prunable_weights(model)]
        return before, after, model

    plain_before, plain_after, _ = run(None)
    before, after, model = run("fan_in")
    for b, a, pb, pa in zip(before, after, plain_before, plain_after):
        np.testing.assert_array_equal(b, pb)  # identical until the masks hold
        mask = b != 0
        assert 0.7 < 1 - mask.mean() < 0.9
        scale = schedules.fan_in_shrink(mask)
        assert scale > 2
        np.testing.assert_allclose(a - b, scale * (pa - pb), rtol=1e-4, atol=1e-6)
        assert np.all(a[~mask] == 0)
    # When `fit` ends, steps are no longer scaled (nor masked).
    for item in find_prunable_weights(model):
        anchor, scale = item.variable.constraint.steps
        assert float(keras.ops.convert_to_numpy(scale)) == 1.0


def test_mask_updates_reuse_the_compiled_training_step():
    # The masks (and step anchors) are read by the compiled step, not baked
    # into it: on JAX they ride in the optimizer's state (`_CarriedState`).
    model = build("lstm")
    schedule = RampedThresholdSchedule(2, 6, 24, 2, target_sparsity=0.8, step_scale="fan_in")
    functions = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: functions.append(model.train_function))
    pruning = GradualPruning(schedule)
    fit(model, [pruning, record], epochs=3)
    assert sparsity_table(model, weights="recurrent").sparsity > 0.7  # 11 updates
    assert all(f is functions[0] for f in functions)
    fit(model, [record], epochs=1)  # without the callback: the same step again
    fit(model, [pruning, record], epochs=1, initial_epoch=0)  # and with it again
    assert all(f is functions[0] for f in functions)


def test_a_checkpoint_written_during_fit_holds_the_optimizer_state_as_without_pruning(
        tmp_path):
    path = str(tmp_path / "mid.keras")
    model = build("gru")
    saved = {}

    def save(epoch, logs):
        if epoch == 1:  # mid-ramp: masks, anchors and scales in force
            model.save(path)
            saved["optimizer"] = [keras.ops.convert_to_numpy(v)
                                  for v in model.optimizer.variables]
            plain = build("gru")
            plain.optimizer.build(plain.trainable_variables)
            saved["plain"] = len(plain.optimizer.variables)

    schedule = RampedThresholdSchedule(6, 12, 42, 3, target_sparsity=0.8, step_scale="fan_in")
    fit(model, [GradualPruning(schedule), keras.callbacks.LambdaCallback(on_epoch_end=save)],
        epochs=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.saving.load_model(path)
    assert not [w for w in caught if "Skipping variable loading" in str(w.message)]
    own = [keras.ops.convert_to_numpy(v) for v in loaded.optimizer.variables]
    # A fresh optimizer's variables, with the values they had at the save
    # (on JAX the masks and anchors follow them in the optimizer's list).
    assert len(own) == saved["plain"] > 2
    for got, expected in zip(own, saved["optimizer"]):
        np.testing.assert_array_equal(got, expected)


def test_erk_allocation_keeps_more_of_the_input_kernel_and_the_layer_at_target():
    model = build("bidirectional", units=16)  # kernels (4, 64), recurrent (16, 64)
    schedule = RampedThresholdSchedule(
        2, 6, 12, 2, target_sparsity=0.9, allocation="erk")
    fit(model, [GradualPruning(schedule)], epochs=3)
    table = sparsity_table(model, weights="recurrent")
    assert table.sparsity == pytest.approx(0.9, abs=0.01)
    by_kind = {}
    for row in table:
        kind = "recurrent" if "recurrent" in row["name"] else "input"
        by_kind.setdefault(kind, []).append(row["zeros"] / row["size"])
    wanted = schedules.allocate([np.ones((4, 64)), np.ones((16, 64))], 0.9, "erk")
    for kind, target in zip(("input", "recurrent"), wanted):
        assert np.allclose(by_kind[kind], target, atol=0.02), (kind, by_kind[kind], target)


def test_one_schedule_over_two_kinds_holds_its_target_for_each_kind():
    # A small LSTM and a larger Dense head: "lamp" shares the target out
    # within each kind, so the head is not pruned harder for its size.
    model = compile_model(keras.Sequential([
        keras.Input(X.shape[1:]), L.LSTM(8), L.Dense(64), L.Dense(3)]))
    schedule = RampedThresholdSchedule(2, 6, 12, 2, target_sparsity=0.8)
    pruning = GradualPruning(schedule, weights=["recurrent", "dense"])
    fit(model, [pruning], epochs=3)
    assert [[i.kind for i in items] for _, items in pruning.groups] == [
        ["recurrent", "recurrent"], ["dense", "dense"]]
    for kind in ("recurrent", "dense"):
        assert sparsity_table(model, weights=kind).sparsity == pytest.approx(0.8, abs=0.01)
    state = pruning.get_state()
    assert len(state["groups"]) == 2


def dead_units(layer):
    """Per recurrent layer: which hidden units have all-zero kernel columns."""
    cell = layer.cell
    kernel = keras.ops.convert_to_numpy(cell.kernel)
    recurrent = keras.ops.convert_to_numpy(cell.recurrent_kernel)
    both = np.concatenate([kernel, recurrent]).reshape(kernel.shape[0] + recurrent.shape[0],
                                                       -1, cell.units)
    return np.all(both == 0, axis=(0, 1))


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
def test_unit_granularity_prunes_whole_units_whose_output_is_zero(kind):
    layer = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU,
             "simple_rnn": keras.layers.SimpleRNN}[kind]
    x, y = sequence_data(n=64, steps=6, features=8)
    model = compile_model(keras.Sequential([
        keras.Input(x.shape[1:]), layer(48, return_sequences=True), layer(32),
        keras.layers.Dense(3)]))
    schedule = RampedThresholdSchedule(2, 6, 12, 2, target_sparsity=0.8)
    model.fit(x, y, batch_size=8, epochs=3, verbose=0,
              callbacks=[GradualPruning(schedule, granularity="units")])
    table = sparsity_table(model, weights="recurrent")
    assert table.sparsity == pytest.approx(0.8, abs=0.04)
    first = model.layers[0]
    dead = dead_units(first)
    assert 0 < dead.sum() < first.units
    cell = first.cell
    bias = keras.ops.convert_to_numpy(cell.bias)
    units = cell.units
    assert np.all(bias.reshape(bias.shape[:-1] + (-1, units))[..., dead] == 0)
    assert np.all(keras.ops.convert_to_numpy(cell.recurrent_kernel)[dead] == 0)
    # Live units keep their weights: no live column is all zero.
    assert not np.any(dead_units(first)[~dead])
    # A dead unit's output is exactly zero at every step, whatever the input.
    outputs = keras.ops.convert_to_numpy(first(x[:8] * 3.0))
    assert np.all(outputs[..., dead] == 0) and np.all(np.any(outputs[..., ~dead] != 0, axis=(0, 1)))


def test_unit_granularity_with_a_sparsity_schedule_and_resume():
    x, y = sequence_data(n=64, steps=6, features=8)
    model = compile_model(keras.Sequential([
        keras.Input(x.shape[1:]), keras.layers.GRU(40), keras.layers.Dense(3)]))

    def half_at_step_3(step):
        return step == 3, 0.5

    callback = GradualPruning(half_at_step_3, granularity="units")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])
    # The fewest units whose removal zeroes at least half the weights.
    dead = dead_units(model.layers[0])
    gates, inputs, units = 3, 8, 40
    zeros = lambda d: gates * inputs * d + gates * (units ** 2 - (units - d) ** 2)  # noqa: E731
    size = gates * units * (inputs + units)
    assert zeros(dead.sum()) >= size / 2 > zeros(dead.sum() - 1)
    # A fresh callback takes the dead units from the weights and keeps them dead.
    fresh = GradualPruning(RampedThresholdSchedule(1, 2, 3, 1, target_sparsity=0.5),
                           granularity="units")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[fresh])
    assert np.all(dead_units(model.layers[0])[dead])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(granularity="blocks"), r"granularity='blocks'"),
        (dict(granularity="units", block_size=4), r"block_size=4"),
    ],
)
def test_unit_granularity_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GradualPruning(RampedThresholdSchedule(1, 2, 3, 1, target_sparsity=0.5), **kwargs)


def test_unit_granularity_refuses_other_kinds():
    x, y = sequence_data(n=16, steps=6, features=8)
    model = compile_model(keras.Sequential([
        keras.Input(x.shape[1:]), keras.layers.GRU(8), keras.layers.Dense(3)]))
    callback = GradualPruning(RampedThresholdSchedule(1, 2, 3, 1, target_sparsity=0.5),
                              weights="all", granularity="units")
    with pytest.raises(ValueError, match=r"also holds \['dense'\] weights"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
