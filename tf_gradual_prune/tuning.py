"""keras-tuner search of the ramped-threshold schedule.

Import it explicitly (`from tf_gradual_prune import tuning`): it needs
keras-tuner and tensorboard (`pip install 'tf-gradual-prune[tuner]'`).

- `SearchSpace`: ranges for begin, ramp and end (as fractions of the
  training), φ/θ, the update frequency, and the target sparsity or the slopes.
- `PrunedHyperModel`: wraps your model-building function; its `fit` builds
  the schedule from the trial's hyperparameters and prunes with
  `GradualPruning`. Works with any keras-tuner tuner.
- The objective `pruning_score`: the validation metric, for trials whose
  final sparsity reaches the target; trials below it rank after all that
  reach it. Or a scalarisation of metric and sparsity.
- `trials_table`, `save_trials` and `sensitivity_plot` for the results, and
  `PrunedHyperModel.best_schedule(tuner)` for the winner.
"""

import csv
import importlib.util
import io
import json
import math
import os

import keras
import numpy as np

try:
    import keras_tuner
except ImportError:  # pragma: no cover - depends on the installation
    raise ImportError(
        "tf_gradual_prune.tuning needs keras-tuner: "
        "pip install 'tf-gradual-prune[tuner]'"
    ) from None
# keras-tuner imports tensorboard in every trial on the TensorFlow backend;
# TensorFlow >= 2.18 no longer installs it.
if keras.backend.backend() == "tensorflow" and importlib.util.find_spec("tensorboard") is None:
    raise ImportError(
        "tf_gradual_prune.tuning needs tensorboard, which keras-tuner imports "
        "in every trial and TensorFlow >= 2.18 no longer installs: "
        "pip install 'tf-gradual-prune[tuner]' (or pip install tensorboard)"
    )

from tf_gradual_prune import files
from tf_gradual_prune.callbacks import GRANULARITIES
from tf_gradual_prune.callbacks import GradualPruning
from tf_gradual_prune.schedules import RampedThresholdSchedule

#: The objective `PrunedHyperModel` adds to the logs.
OBJECTIVE = keras_tuner.Objective("pruning_score", direction="max")

#: Ranking offset for trials that miss the target sparsity: their score is
#: the sparsity reached minus this, below any metric value a model reaches.
MISSED_TARGET_OFFSET = 1e6

SCORING = ("target", "tradeoff")


def _pair(name, value, low=0.0, high=1.0):
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(
            f"`{name}` must be a (low, high) pair of numbers. Received: "
            f"{name}={value!r}"
        ) from None
    if not low <= lo <= hi <= high:
        raise ValueError(
            f"`{name}` must satisfy {low} <= low <= high <= {high}. Received: "
            f"{name}={value!r}"
        )
    return lo, hi


class SearchSpace:
    """Ranges searched for a `RampedThresholdSchedule`.

    Steps are fractions of the planned optimizer steps, so one space serves
    any training length. The defaults surround the paper's choices (pruning
    from the 2nd epoch, ramp at 25%, end at 50%, φ = 1.5θ-2θ, frequency 100).
    A sampled combination that is not a valid schedule (ramp before begin,
    no update step in the window) fails the trial before any training, with
    `keras_tuner.errors.FailedTrialError`.

    Args:
        begin: (low, high) fraction for `begin_step`. Defaults to
            `(0.02, 0.15)`.
        ramp: (low, high) fraction for `ramp_step`. Defaults to
            `(0.15, 0.35)`.
        end: (low, high) fraction for `end_step`. Defaults to `(0.4, 0.7)`.
        ramp_slope_ratio: (low, high) for φ/θ. Defaults to `(1.5, 2.0)`.
        frequency: Tuple of integers to choose from. Defaults to
            `(20, 50, 100)`.
        target_sparsity: `None` (the hypermodel's target, fixed) or a
            (low, high) range to search. Defaults to `None`.
        start_slope: `None`, or a (low, high) range searched on a log scale:
            then the slopes are searched directly instead of calibrating to
            a target (the sparsity reached then varies by trial).
    """

    def __init__(
        self,
        begin=(0.02, 0.15),
        ramp=(0.15, 0.35),
        end=(0.4, 0.7),
        ramp_slope_ratio=(1.5, 2.0),
        frequency=(20, 50, 100),
        target_sparsity=None,
        start_slope=None,
    ):
        self.begin = _pair("begin", begin)
        self.ramp = _pair("ramp", ramp)
        self.end = _pair("end", end)
        self.ramp_slope_ratio = _pair("ramp_slope_ratio", ramp_slope_ratio, 0.0, math.inf)
        if self.ramp_slope_ratio[0] <= 0:
            raise ValueError(
                "`ramp_slope_ratio` must be > 0. Received: "
                f"ramp_slope_ratio={ramp_slope_ratio!r}"
            )
        frequency = tuple(frequency)
        if not frequency or any(
            isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in frequency
        ):
            raise ValueError(
                "`frequency` must be a non-empty tuple of integers >= 1. "
                f"Received: frequency={frequency!r}"
            )
        self.frequency = frequency
        self.target_sparsity = (
            None if target_sparsity is None
            else _pair("target_sparsity", target_sparsity, 0.0, 0.999)
        )
        self.start_slope = (
            None if start_slope is None
            else _pair("start_slope", start_slope, 1e-12, math.inf)
        )
        if self.start_slope is not None and self.target_sparsity is not None:
            raise ValueError(
                "Search either `target_sparsity` or `start_slope`, not both. "
                f"Received: target_sparsity={target_sparsity!r}, "
                f"start_slope={start_slope!r}"
            )

    def schedule(self, hp, total_steps, target_sparsity):
        """Registers the hyperparameters in `hp`; returns the schedule.

        Raises:
            keras_tuner.errors.FailedTrialError: for an invalid combination.
        """

        def fraction(name, bounds):
            if bounds[0] == bounds[1]:
                return hp.Fixed(name, bounds[0])
            return hp.Float(name, *bounds)

        begin = fraction("begin_fraction", self.begin)
        ramp = fraction("ramp_fraction", self.ramp)
        end = fraction("end_fraction", self.end)
        ratio = fraction("ramp_slope_ratio", self.ramp_slope_ratio)
        frequency = hp.Choice("frequency", list(self.frequency))
        kwargs = dict(ramp_slope_ratio=ratio)
        if self.start_slope is not None:
            kwargs["start_slope"] = hp.Float(
                "start_slope", *self.start_slope, sampling="log"
            )
        elif self.target_sparsity is not None:
            kwargs["target_sparsity"] = hp.Float("target_sparsity", *self.target_sparsity)
        else:
            kwargs["target_sparsity"] = target_sparsity
        steps = [int(round(f * total_steps)) for f in (begin, ramp, end)]
        try:
            return RampedThresholdSchedule(*steps, frequency=frequency, **kwargs)
        except ValueError as error:
            raise keras_tuner.errors.FailedTrialError(
                f"Infeasible schedule (not trained): {error}"
            ) from None


class _Score(keras.callbacks.Callback):
    """Adds `pruning_score` to the epoch logs (see `PrunedHyperModel`)."""

    def __init__(self, metric, direction, target, scoring, weight):
        super().__init__()
        self.metric, self.direction = metric, direction
        self.target, self.scoring, self.weight = target, scoring, weight

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if self.metric not in logs:
            raise ValueError(
                f"The objective metric {self.metric!r} is not in the logs "
                f"{sorted(logs)}: pass validation data, or choose `metric`."
            )
        value = float(logs[self.metric]) * (1 if self.direction == "max" else -1)
        sparsity = float(logs.get("sparsity", 0.0))
        if self.scoring == "tradeoff":
            logs["pruning_score"] = value + self.weight * sparsity
        elif sparsity + 1e-3 >= self.target:
            logs["pruning_score"] = value
        else:
            logs["pruning_score"] = sparsity - MISSED_TARGET_OFFSET


def _steps_per_epoch(args, kwargs):
    import tensorflow as tf

    if kwargs.get("steps_per_epoch"):
        return int(kwargs["steps_per_epoch"])
    x = kwargs.get("x", args[0] if args else None)
    if isinstance(x, tf.data.Dataset):
        count = int(x.cardinality())
        if count < 0:
            raise ValueError(
                "The dataset's length is unknown: pass `steps_per_epoch` to "
                "`tuner.search`."
            )
        return count
    if x is None:
        raise ValueError("No training data: pass `x` to `tuner.search`.")
    n = len(keras.tree.flatten(x)[0])
    n = int(math.floor(n * (1 - kwargs.get("validation_split", 0.0))))
    return int(math.ceil(n / (kwargs.get("batch_size") or 32)))


class PrunedHyperModel(keras_tuner.HyperModel):
    """A HyperModel that prunes with a searched `RampedThresholdSchedule`.

    `build(hp)` calls your function (which can search its own
    hyperparameters, units or learning rate, in the same run). `fit(hp,
    model, ...)` builds the schedule from `hp` and the planned training
    length, adds `GradualPruning` and the scoring callback in front of the
    tuner's callbacks, and trains.

    The score `pruning_score` (use `tuning.OBJECTIVE` as the tuner's
    objective) is, per epoch:

    - `scoring="target"` (default): the validation metric (negated if it is
      minimised) when the sparsity reached is at least `target_sparsity`;
      otherwise `sparsity - 1e6`, so that every trial that reaches the
      target ranks above every trial that does not (and those rank by
      sparsity).
    - `scoring="tradeoff"`: metric + `sparsity_weight` * sparsity.

    The sparsity reached is logged as `sparsity` beside the metric, in every
    trial's metrics.

    Args:
        build_model: Function `hp -> compiled keras.Model`.
        target_sparsity: Float in (0, 1). Defaults to `0.9`.
        metric: String, the logged metric to score. Defaults to
            `"val_accuracy"`.
        direction: `"max"` or `"min"` for `metric`. Defaults to `"max"`.
        space: A `SearchSpace`. Defaults to `SearchSpace()`.
        scoring: `"target"` or `"tradeoff"`. Defaults to `"target"`.
        sparsity_weight: Float >= 0, for `"tradeoff"`. Defaults to `1.0`.
        weights, block_size, granularity: Passed to `GradualPruning`
            (`granularity="units"` searches schedules for whole-unit
            pruning).

    Example:

    ```python
    from tf_gradual_prune import tuning

    hypermodel = tuning.PrunedHyperModel(build_model, target_sparsity=0.9)
    tuner = keras_tuner.RandomSearch(hypermodel, objective=tuning.OBJECTIVE,
                                     max_trials=10, directory="search")
    tuner.search(x, y, epochs=12, validation_data=(x_val, y_val))
    schedule = hypermodel.best_schedule(tuner)
    tuning.save_trials(tuner, "search/trials")
    tuning.sensitivity_plot(tuner, "search/sensitivity.png")
    ```
    """

    def __init__(
        self,
        build_model,
        target_sparsity=0.9,
        metric="val_accuracy",
        direction="max",
        space=None,
        scoring="target",
        sparsity_weight=1.0,
        weights=None,
        block_size=1,
        granularity="weights",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if granularity not in GRANULARITIES:
            raise ValueError(
                f"`granularity` must be one of {GRANULARITIES}. Received: "
                f"granularity={granularity!r}"
            )
        if not callable(build_model):
            raise TypeError(
                f"`build_model` must be callable. Received: build_model={build_model!r}"
            )
        if not 0 < target_sparsity < 1:
            raise ValueError(
                "`target_sparsity` must be in (0, 1). Received: "
                f"target_sparsity={target_sparsity!r}"
            )
        if direction not in ("max", "min"):
            raise ValueError(
                f"`direction` must be 'max' or 'min'. Received: direction={direction!r}"
            )
        if scoring not in SCORING:
            raise ValueError(
                f"`scoring` must be one of {SCORING}. Received: scoring={scoring!r}"
            )
        if sparsity_weight < 0:
            raise ValueError(
                f"`sparsity_weight` must be >= 0. Received: sparsity_weight={sparsity_weight!r}"
            )
        self.build_model = build_model
        self.target_sparsity = float(target_sparsity)
        self.metric, self.direction = metric, direction
        self.space = space if space is not None else SearchSpace()
        self.scoring, self.sparsity_weight = scoring, float(sparsity_weight)
        self.weights, self.block_size = weights, block_size
        self.granularity = granularity
        self.total_steps = None

    def build(self, hp):
        return self.build_model(hp)

    def fit(self, hp, model, *args, **kwargs):
        epochs = kwargs.get("epochs", 1)
        self.total_steps = epochs * _steps_per_epoch(args, kwargs)
        schedule = self.space.schedule(hp, self.total_steps, self.target_sparsity)
        pruning = GradualPruning(
            schedule, weights=self.weights, block_size=self.block_size,
            granularity=self.granularity,
        )
        score = _Score(
            self.metric, self.direction, self.target_sparsity, self.scoring,
            self.sparsity_weight,
        )
        # In front: the tuner's own callbacks must see the score.
        kwargs["callbacks"] = [pruning, score] + list(kwargs.get("callbacks", []))
        return model.fit(*args, **kwargs)

    def best_schedule(self, tuner):
        """The best trial's schedule, for the training length searched.

        Returns:
            A `RampedThresholdSchedule` (serialisable): train with
            `GradualPruning(schedule)` and the same epochs and data.
        """
        if self.total_steps is None:
            raise ValueError("No trial has run yet: call `tuner.search` first.")
        best = tuner.oracle.get_best_trials(1)
        if not best:
            raise ValueError("The tuner has no completed trial.")
        hp = best[0].hyperparameters.copy()
        return self.space.schedule(hp, self.total_steps, self.target_sparsity)


def trials_table(tuner, metric="val_accuracy"):
    """One dict per trial: hyperparameters, status, metric, sparsity, score."""
    rows = []
    for trial in sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id):
        row = {"trial": trial.trial_id, "status": str(trial.status)}
        row.update(trial.hyperparameters.values)
        for name in ("pruning_score", metric, "sparsity"):
            if trial.metrics.exists(name):
                history = trial.metrics.get_history(name)
                row[name] = float(history[-1].value[0]) if history else None
            else:
                row[name] = None
        rows.append(row)
    return rows


def save_trials(tuner, prefix, metric="val_accuracy"):
    """Writes `prefix.csv` and `prefix.json` of `trials_table`; returns it."""
    rows = trials_table(tuner, metric)
    columns = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    folder = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(folder, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    files.write_atomic(prefix + ".csv", buffer.getvalue())
    files.write_atomic(prefix + ".json", json.dumps(rows, indent=2))
    return rows


def sensitivity_plot(trials, path, metric="val_accuracy"):
    """Metric against each searched hyperparameter, and against sparsity.

    Args:
        trials: A tuner, or the rows of `trials_table` / `save_trials`
            (so a saved table can be plotted again).
        path: PNG path.
        metric: The metric on the vertical axes.

    Trials that missed the target are drawn hollow. Returns `path`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = trials if isinstance(trials, list) else trials_table(trials, metric)
    rows = [r for r in rows if r.get(metric) is not None]
    if not rows:
        raise ValueError("No completed trial with the metric to plot.")
    skip = {"trial", "status", "pruning_score", metric, "sparsity"}
    names = []
    for row in rows:
        names += [k for k, v in row.items() if k not in skip and k not in names
                  and isinstance(v, (int, float)) and not isinstance(v, bool)]
    names.append("sparsity")
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
    met = np.array([r["pruning_score"] is not None and r["pruning_score"] > -MISSED_TARGET_OFFSET / 2
                    for r in rows])
    y = np.array([r[metric] for r in rows], dtype=float)
    for ax, name in zip(axes[0], names):
        x = np.array([r.get(name, np.nan) for r in rows], dtype=float)
        ax.scatter(x[met], y[met], color="tab:blue", label="reached target")
        ax.scatter(x[~met], y[~met], facecolors="none", edgecolors="tab:red",
                   label="missed target")
        ax.ticklabel_format(useOffset=False, axis="x")
        ax.set(xlabel=name, ylabel=metric)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return files.save_figure(fig, path)
