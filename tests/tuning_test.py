import importlib.util
import json
import math
import os
import sys

import keras
import pytest

keras_tuner = pytest.importorskip("keras_tuner")

from conftest import sequence_data

from tf_gradual_prune import GradualPruning, RampedThresholdSchedule, sparsity_table, tuning

X, Y = sequence_data(n=96)
XV, YV = sequence_data(n=48, seed=1)
SPACE = tuning.SearchSpace(begin=(0.05, 0.15), ramp=(0.2, 0.3), end=(0.5, 0.6), frequency=(2, 3))


def build_model(hp):
    model = keras.Sequential(
        [
            keras.Input(X.shape[1:]),
            keras.layers.GRU(hp.Choice("units", [8, 12])),
            keras.layers.Dense(3),
        ]
    )
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def search(tmp_path, hypermodel, trials=3):
    tuner = keras_tuner.RandomSearch(
        hypermodel, objective=tuning.OBJECTIVE, max_trials=trials,
        directory=str(tmp_path), project_name="p", seed=3,
    )
    tuner.search(X, Y, epochs=5, batch_size=16, validation_data=(XV, YV), verbose=0)
    return tuner


def test_small_search_returns_a_schedule_that_round_trips_and_retrains(tmp_path):
    hypermodel = tuning.PrunedHyperModel(build_model, target_sparsity=0.8, space=SPACE)
    tuner = search(tmp_path, hypermodel)
    schedule = hypermodel.best_schedule(tuner)
    assert isinstance(schedule, RampedThresholdSchedule)
    assert RampedThresholdSchedule.from_config(schedule.get_config()) == schedule
    assert schedule.target_sparsity == 0.8
    assert hypermodel.total_steps == 5 * 6
    # Retraining with the returned schedule reaches the target.
    best_hp = tuner.get_best_hyperparameters(1)[0]
    model = build_model(best_hp)
    model.fit(X, Y, epochs=5, batch_size=16, verbose=0,
              callbacks=[GradualPruning(schedule)])
    assert sparsity_table(model, weights="recurrent").sparsity == pytest.approx(0.8, abs=0.02)


def test_trial_table_has_one_row_per_trial_with_sparsity(tmp_path):
    hypermodel = tuning.PrunedHyperModel(build_model, target_sparsity=0.8, space=SPACE)
    tuner = search(tmp_path, hypermodel, trials=2)
    rows = tuning.save_trials(tuner, str(tmp_path / "trials"))
    assert len(rows) == len(tuner.oracle.trials) == 2
    for row in rows:
        assert row["sparsity"] == pytest.approx(0.8, abs=0.02)
        assert 0 <= row["val_accuracy"] <= 1
        assert {"begin_fraction", "ramp_fraction", "end_fraction", "units"} <= set(row)
        # The size logged is the model's non-zero parameters at the end:
        # all of them but the 80% of the GRU's kernels that were pruned.
        units = row["units"]
        kernels = 4 * 3 * units + units * 3 * units
        total = kernels + 2 * 3 * units + units * 3 + 3
        assert row["size"] == pytest.approx(total - 0.8 * kernels, abs=0.02 * kernels)
    assert json.loads((tmp_path / "trials.json").read_text()) == rows
    assert [r["trial"] for r in rows if r["pareto"]] == [
        r["trial"] for r in sorted(tuning.pareto_front(rows), key=lambda r: r["trial"])]
    assert (tmp_path / "trials.csv").read_text().count("\n") == 3
    png = tuning.sensitivity_plot(tuner, str(tmp_path / "sensitivity.png"))
    assert os.path.getsize(png) > 5000


def test_objective_ranks_a_trial_that_misses_the_target_below():
    scorer = tuning._Score("val_accuracy", "max", 0.9, "target", 1.0)
    reached = {"val_accuracy": 0.40, "sparsity": 0.9}
    missed = {"val_accuracy": 0.99, "sparsity": 0.85}
    scorer.on_epoch_end(0, reached)
    scorer.on_epoch_end(0, missed)
    assert reached["pruning_score"] == pytest.approx(0.40)
    assert missed["pruning_score"] < reached["pruning_score"]
    lower = {"val_accuracy": 0.99, "sparsity": 0.5}
    scorer.on_epoch_end(0, lower)
    assert lower["pruning_score"] < missed["pruning_score"]
    tradeoff = tuning._Score("val_loss", "min", 0.9, "tradeoff", 2.0)
    logs = {"val_loss": 0.5, "sparsity": 0.8}
    tradeoff.on_epoch_end(0, logs)
    assert logs["pruning_score"] == pytest.approx(-0.5 + 1.6)


def test_reevaluated_best_schedule_reproduces_within_its_spread(tmp_path):
    hypermodel = tuning.PrunedHyperModel(build_model, target_sparsity=0.8, space=SPACE)
    tuner = search(tmp_path, hypermodel, trials=2)
    with pytest.warns(UserWarning, match="rests on 1 training run"):
        hypermodel.best_schedule(tuner)
    assert hypermodel.best_score(tuner)["runs"] == 1
    fit_args = dict(epochs=5, batch_size=16, validation_data=(XV, YV), verbose=0)
    rows = hypermodel.reevaluate(tuner, X, Y, top=2, runs=3, **fit_args)
    assert len(rows) == 2 and rows[0]["mean_score"] >= rows[1]["mean_score"]
    for row in rows:
        assert row["seeds"] == [1, 2, 3] and len(row["values"]) == 3
        assert row["sparsity"] == pytest.approx([0.8] * 3, abs=0.02)
    # The winner's figure comes from three more runs, on seeds that chose
    # nothing; the other's from its own runs.
    assert rows[0]["confirm_seeds"] == [4, 5, 6] and "confirm_seeds" not in rows[1]
    assert rows[0]["mean"] == pytest.approx(sum(rows[0]["confirm_values"]) / 3)
    assert rows[1]["mean"] == pytest.approx(sum(rows[1]["values"]) / 3)
    score = hypermodel.best_score(tuner)
    assert score["source"] == "reevaluate" and score["runs"] == 3
    assert score["trial"] == rows[0]["trial"] and score["values"] == rows[0]["confirm_values"]
    # A 95% prediction interval from 3 runs: t(0.975, 2) = 4.303.
    half = 4.303 * score["std"] * (4 / 3) ** 0.5
    assert score["high"] - score["mean"] == pytest.approx(half)
    schedule = hypermodel.best_schedule(tuner)
    best = hypermodel.best_hyperparameters(tuner)
    assert best.values == tuner.oracle.get_trial(rows[0]["trial"]).hyperparameters.values
    assert schedule == SPACE.schedule(best.copy(), 30, 0.8)
    # Trained again from scratch with a seed none of the runs used, the
    # best schedule lands within the reported spread.
    keras.utils.set_random_seed(77)
    model = build_model(best)
    history = model.fit(X, Y, callbacks=[GradualPruning(schedule)], **fit_args)
    assert score["low"] <= history.history["val_accuracy"][-1] <= score["high"]


def test_reevaluate_warns_when_the_winners_runs_tie(tmp_path, monkeypatch):
    hypermodel = tuning.PrunedHyperModel(build_model, target_sparsity=0.8, space=SPACE)
    tuner = search(tmp_path, hypermodel, trials=1)
    tied = {"pruning_score": [0.9], "val_accuracy": [0.9], "sparsity": [0.8], "size": [1.0]}
    monkeypatch.setattr(hypermodel, "_train", lambda *args: tied)
    with pytest.warns(UserWarning, match="3 runs all scored 0.9: its interval is a single"):
        hypermodel.reevaluate(tuner, X, Y, top=1, runs=3)
    assert hypermodel.best_score(tuner)["low"] == hypermodel.best_score(tuner)["high"]


def test_hyperband_searches_a_model_that_declares_no_hyperparameter(tmp_path):
    # Hyperband samples only what `build` declared: the hypermodel declares
    # the schedule's hyperparameters there, or no trial would run.
    def fixed_model(hp):
        return build_model(keras_tuner.HyperParameters())  # declares nothing in `hp`

    # Rounds of 1 and 2 epochs: a number of updates fits every length.
    space = tuning.SearchSpace(begin=(0.05, 0.15), ramp=(0.2, 0.3), end=(0.5, 0.6),
                               updates=(2, 4))
    hypermodel = tuning.PrunedHyperModel(fixed_model, target_sparsity=0.8, space=space)
    tuner = keras_tuner.Hyperband(
        hypermodel, objective=tuning.OBJECTIVE, max_epochs=2, factor=2,
        hyperband_iterations=1, directory=str(tmp_path), project_name="hb", seed=0)
    tuner.search(X, Y, batch_size=16, validation_data=(XV, YV), verbose=0)
    rows = tuning.trials_table(tuner)
    assert len(rows) >= 3
    assert all(r["status"] == "COMPLETED" and r["size"] > 0 for r in rows)
    assert {"begin_fraction", "updates"} <= set(rows[0])


def test_a_size_aware_search_returns_a_pareto_table(tmp_path):
    space = tuning.SearchSpace(begin=(0.05, 0.15), ramp=(0.2, 0.3), end=(0.5, 0.6),
                               frequency=(2,), target_sparsity=(0.3, 0.95))
    hypermodel = tuning.PrunedHyperModel(build_model, space=space, scoring="smallest",
                                         metric_floor=0.3)
    tuner = search(tmp_path, hypermodel, trials=3)
    rows = tuning.save_trials(tuner, str(tmp_path / "trials"))
    sizes = [r["size"] for r in rows]
    assert len(set(sizes)) == 3  # the searched sparsity sets the size
    front = tuning.pareto_front(rows)
    assert front and [r["trial"] for r in rows if r["pareto"]] == sorted(
        r["trial"] for r in front)
    # The smallest model that reaches the floor scores best.
    reached = [r for r in rows if r["val_accuracy"] >= 0.3]
    best = tuner.oracle.get_best_trials(1)[0]
    assert best.trial_id == min(reached, key=lambda r: r["size"])["trial"]
    assert os.path.getsize(tuning.pareto_plot(tuner, str(tmp_path / "front.png"))) > 5000


def test_smallest_scoring_prefers_the_smaller_model_above_the_floor():
    scorer = tuning._Score("val_loss", "min", 0.9, "smallest", 1.0,
                           metric_floor=0.5, size=lambda model: model.size)

    class Model:
        size = 1000

    scorer.set_model(Model())
    small, large, bad = ({"val_loss": 0.4, "sparsity": 0.9},
                         {"val_loss": 0.3, "sparsity": 0.9},
                         {"val_loss": 0.6, "sparsity": 0.99})
    scorer.on_epoch_end(0, small)
    Model.size = 5000
    scorer.on_epoch_end(0, large)
    Model.size = 10
    scorer.on_epoch_end(0, bad)
    assert small["size"] == 1000 and small["pruning_score"] == pytest.approx(-3.0)
    assert large["pruning_score"] < small["pruning_score"]
    assert bad["pruning_score"] < large["pruning_score"]


def test_a_final_only_size_is_measured_once_the_masks_are_final():
    calls = []

    class Size:
        final_only = True

        def __call__(self, model):
            calls.append(1)
            return 100.0

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    scorer = tuning._Score("val_accuracy", "max", 0.9, "smallest", 1.0,
                           metric_floor=0.5, size=Size(), end_step=20)
    scorer.set_model(model)
    scorer.set_params({"epochs": 5, "steps": 6})  # epochs end at steps 6, ..., 30
    logs = [{"val_accuracy": 0.8, "sparsity": 0.9} for _ in range(5)]
    for epoch in range(4):
        scorer.on_epoch_end(epoch, logs[epoch])
    # Before the last mask update (step 20) nothing is measured (NaN: the
    # logs stay lined up by epoch), and the epoch ranks below every measured
    # one, even one that misses the floor.
    assert [math.isnan(log["size"]) for log in logs[:4]] == [True, True, True, False]
    assert logs[3]["pruning_score"] == pytest.approx(-2.0)
    missed = {"val_accuracy": 0.1, "sparsity": 0.9}
    scorer.on_epoch_end(3, missed)
    assert logs[2]["pruning_score"] < missed["pruning_score"] < -1e5
    assert len(calls) == 1
    model.layers[0].kernel.assign(keras.ops.zeros((3, 2)))  # new zeros: measured again
    scorer.on_epoch_end(4, logs[4])
    assert len(calls) == 2 and logs[4]["size"] == 100.0
    # A fit that ends before the schedule does measures its last epoch.
    scorer.set_params({"epochs": 2, "steps": 6})
    last = {"val_accuracy": 0.8, "sparsity": 0.5}
    scorer.on_epoch_end(1, last)
    assert last["size"] == 100.0 and len(calls) == 2  # same masks: no new export


def test_a_search_with_a_final_only_size_records_each_final_models_size(tmp_path):
    class FinalNonzeros:  # as TFLiteSize, without the export's cost
        final_only = True

        def __call__(self, model):
            return tuning.count_nonzeros(model)

    space = tuning.SearchSpace(begin=(0.05, 0.15), ramp=(0.2, 0.3), end=(0.5, 0.6),
                               frequency=(2,), target_sparsity=(0.3, 0.95))
    # An unreachable floor: every epoch misses it, and the best epoch would
    # be the best metric's, measured or not, without the ranking.
    hypermodel = tuning.PrunedHyperModel(build_model, space=space, scoring="smallest",
                                         metric_floor=1.01, size=FinalNonzeros())
    rows = tuning.trials_table(search(tmp_path, hypermodel, trials=3))
    assert [r["size"] is not None for r in rows] == [True] * 3
    assert len({r["size"] for r in rows}) == 3 and tuning.pareto_front(rows)


def test_tflite_size_measures_the_trials_export(tmp_path):
    pytest.importorskip("ai_edge_litert")
    space = tuning.SearchSpace(begin=(0.05, 0.15), ramp=(0.2, 0.3), end=(0.5, 0.6),
                               frequency=(2,))
    exports = []

    class Counting(tuning.TFLiteSize):
        def __call__(self, model):
            exports.append(1)
            return super().__call__(model)

    hypermodel = tuning.PrunedHyperModel(build_model, target_sparsity=0.8, space=space,
                                         size=Counting("bytes"))
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    history = hypermodel.fit(hp, model, X, Y, epochs=5, batch_size=16,
                             validation_data=(XV, YV), verbose=0).history
    end = space.schedule(hp, 5 * 6, 0.8).end_step
    final_epochs = sum((epoch + 1) * 6 >= end for epoch in range(5))
    assert 0 < final_epochs < 5
    measured = [not math.isnan(size) for size in history["size"]]
    assert measured == [False] * (5 - final_epochs) + [True] * final_epochs
    assert len(exports) == 1
    # The smaller file: at 80% of GRU(8) the sparse encoding's indices
    # outweigh the zeros it drops, and the dense file is smaller.
    sparse = tuning.TFLiteSize("bytes", encoding="sparse")(model)
    dense = tuning.TFLiteSize("bytes", encoding="dense")(model)
    assert sparse != dense and history["size"][-1] == min(sparse, dense)
    latency = tuning.PrunedHyperModel(build_model, size="tflite_ms").size
    assert latency.measure == "ms" and latency(model) > 0
    assert "LiteRT ms" in latency.label


def test_tflite_size_refuses_bad_arguments_and_other_backends(monkeypatch):
    with pytest.raises(ValueError, match="measure='kb'"):
        tuning.TFLiteSize("kb")
    with pytest.raises(ValueError, match="num_threads=0"):
        tuning.TFLiteSize("ms", num_threads=0)
    with pytest.raises(ValueError, match="quantization='int8'"):
        tuning.TFLiteSize("bytes", quantization="int8")
    with pytest.raises(ValueError, match="encoding='csr'"):
        tuning.TFLiteSize("bytes", encoding="csr")
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match="backend 'jax'"):
        tuning.PrunedHyperModel(build_model, size="tflite_bytes")


def test_pareto_front_keeps_every_undominated_trade_off(tmp_path):
    rows = [{"trial": "a", "val_accuracy": 0.90, "size": 100.0},
            {"trial": "b", "val_accuracy": 0.80, "size": 50.0},
            {"trial": "c", "val_accuracy": 0.85, "size": 120.0},  # a beats it
            {"trial": "d", "val_accuracy": 0.95, "size": 400.0},
            {"trial": "e", "val_accuracy": 0.80, "size": 60.0},  # b beats it
            {"trial": "f", "val_accuracy": None, "size": 10.0}]  # failed
    front = tuning.pareto_front(rows)
    assert [r["trial"] for r in front] == ["b", "a", "d"]
    losses = [dict(r, val_loss=1 - r["val_accuracy"]) for r in rows[:5]]
    assert [r["trial"] for r in tuning.pareto_front(losses, "val_loss", "min")] == [
        "b", "a", "d"]
    png = tuning.pareto_plot(rows, str(tmp_path / "front.png"))
    assert os.path.getsize(png) > 5000


def test_default_space_searches_the_number_of_updates_around_the_default():
    space = tuning.SearchSpace()
    hp = keras_tuner.HyperParameters()
    schedule = space.schedule(hp, 1000, 0.9)
    assert hp.values["updates"] in tuning.SEARCH_UPDATES
    begin, end = schedule.begin_step, schedule.end_step
    assert 150 <= begin <= 350 and 550 <= end <= 800
    assert schedule.frequency == max((end - begin) // hp.values["updates"], 1)
    assert schedule.calibration is None and schedule.allocation is None  # the default's


def test_infeasible_combination_fails_the_trial_before_training():
    space = tuning.SearchSpace(begin=(0.3, 0.3), ramp=(0.2, 0.2), end=(0.6, 0.6), frequency=(2,))
    hypermodel = tuning.PrunedHyperModel(build_model, space=space)

    class Untrainable:
        def fit(self, *args, **kwargs):
            raise AssertionError("an infeasible schedule was trained")

    hp = keras_tuner.HyperParameters()
    with pytest.raises(keras_tuner.errors.FailedTrialError, match="ramp_step"):
        hypermodel.fit(hp, Untrainable(), X, Y, epochs=5, batch_size=16)


def test_space_and_hypermodel_bad_arguments():
    with pytest.raises(ValueError, match=r"begin=\(0.5, 0.2\)"):
        tuning.SearchSpace(begin=(0.5, 0.2))
    with pytest.raises(TypeError, match="end=0.5"):
        tuning.SearchSpace(end=0.5)
    with pytest.raises(ValueError, match="frequency=\\(0,\\)"):
        tuning.SearchSpace(frequency=(0,))
    with pytest.raises(ValueError, match="not both"):
        tuning.SearchSpace(target_sparsity=(0.8, 0.9), start_slope=(1e-4, 1e-2))
    with pytest.raises(ValueError, match=r"updates=\(80,\), frequency=\(10,\)"):
        tuning.SearchSpace(updates=(80,), frequency=(10,))
    with pytest.raises(ValueError, match="updates=80"):
        tuning.SearchSpace(updates=80)
    with pytest.raises(ValueError, match="metric_floor=None"):
        tuning.PrunedHyperModel(build_model, scoring="smallest")
    with pytest.raises(ValueError, match="metric_floor=0.5"):
        tuning.PrunedHyperModel(build_model, metric_floor=0.5)
    with pytest.raises(TypeError,
                       match=r"size='bytes'.*'tflite_bytes'|'tflite_bytes'.*size='bytes'"):
        tuning.PrunedHyperModel(build_model, size="bytes")
    hypermodel = tuning.PrunedHyperModel(build_model)
    hypermodel.total_steps = 10  # as after a search
    with pytest.raises(ValueError, match="runs=1"):
        hypermodel.reevaluate(None, X, Y, runs=1)
    with pytest.raises(ValueError, match="top=0"):
        hypermodel.reevaluate(None, X, Y, top=0)
    with pytest.raises(ValueError, match="direction='up'"):
        tuning.pareto_front([], direction="up")
    with pytest.raises(ValueError, match="target_sparsity=1.5"):
        tuning.PrunedHyperModel(build_model, target_sparsity=1.5)
    with pytest.raises(ValueError, match="scoring='best'"):
        tuning.PrunedHyperModel(build_model, scoring="best")
    with pytest.raises(ValueError, match="granularity='rows'"):
        tuning.PrunedHyperModel(build_model, granularity="rows")
    with pytest.raises(TypeError, match="build_model=3"):
        tuning.PrunedHyperModel(3)
    with pytest.raises(ValueError, match="No trial has run"):
        tuning.PrunedHyperModel(build_model).best_schedule(None)


def test_missing_tensorboard_is_named_at_import(monkeypatch):
    # keras-tuner imports tensorboard in every trial: say so at once.
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    spec = importlib.util.spec_from_file_location("tuning_copy", tuning.__file__)
    with pytest.raises(ImportError, match=r"needs tensorboard.*tf-gradual-prune\[tuner\]"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
