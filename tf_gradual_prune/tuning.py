"""keras-tuner search of the ramped-threshold schedule.

Import it explicitly (`from tf_gradual_prune import tuning`): it needs
keras-tuner and tensorboard (`pip install 'tf-gradual-prune[tuner]'`).

- `SearchSpace`: ranges for begin, ramp and end (as fractions of the
  training, around the library's default timing), φ/θ, the number of mask
  updates (or their spacing), and the target sparsity or the slopes.
- `PrunedHyperModel`: wraps your model-building function; its `fit` builds
  the schedule from the trial's hyperparameters and prunes with
  `GradualPruning`. Works with any keras-tuner tuner.
- The objective `pruning_score`: the validation metric, for trials whose
  final sparsity reaches the target; trials below it rank after all that
  reach it. Or a scalarisation of metric and sparsity, or the smallest
  model whose metric reaches a floor. Every trial logs its `size`: non-zero
  parameters, the bytes or LiteRT latency of its `.tflite` export
  (`TFLiteSize`), or your own measure.
- `PrunedHyperModel.reevaluate(tuner, ...)` trains the top trials again
  with fresh seeds, so that the best schedule and its score (mean ± spread,
  `best_score`) rest on several runs rather than on the luckiest one;
  `best_schedule(tuner)` returns the winner.
- `trials_table`, `save_trials`, `sensitivity_plot`, `pareto_front` and
  `pareto_plot` for the results.
"""

import copy
import csv
import hashlib
import importlib.util
import io
import json
import math
import os
import tempfile
import warnings

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
from tf_gradual_prune.callbacks import GRANULARITIES, GradualPruning
from tf_gradual_prune.checks import check_int
from tf_gradual_prune.masking import to_numpy
from tf_gradual_prune.schedules import (
    DEFAULT_UPDATES,
    RampedThresholdSchedule,
    update_frequency,
)

#: The objective `PrunedHyperModel` adds to the logs.
OBJECTIVE = keras_tuner.Objective("pruning_score", direction="max")

#: Ranking offset for trials that miss the target sparsity: their score is
#: the sparsity reached minus this, below any metric value a model reaches.
MISSED_TARGET_OFFSET = 1e6

SCORING = ("target", "tradeoff", "smallest")

#: Mask-update counts `SearchSpace` chooses from by default: half, once and
#: twice the default's `DEFAULT_UPDATES`.
SEARCH_UPDATES = (DEFAULT_UPDATES // 2, DEFAULT_UPDATES, 2 * DEFAULT_UPDATES)


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
    any training length. The defaults surround the library's default
    (`RampedThresholdSchedule.for_training`: begin at 30%, ramp at 45%, end
    at 70% of the steps, about 80 mask updates, "geometric" calibration,
    "lamp" allocation): begin 15-35%, ramp 35-55%, end 55-80%, φ/θ 1.5-2,
    and 40, 80 or 160 updates. The paper's choices (begin at the 2nd epoch,
    ramp at 25%, end at 50%, every 100 steps) lie outside them; give the
    ranges to search around those instead. A sampled combination that is
    not a valid schedule (ramp before begin, no update step in the window)
    fails the trial before any training, with
    `keras_tuner.errors.FailedTrialError`.

    Args:
        begin: (low, high) fraction for `begin_step`. Defaults to
            `(0.15, 0.35)`.
        ramp: (low, high) fraction for `ramp_step`. Defaults to
            `(0.35, 0.55)`.
        end: (low, high) fraction for `end_step`. Defaults to
            `(0.55, 0.8)`.
        ramp_slope_ratio: (low, high) for φ/θ. Defaults to `(1.5, 2.0)`.
        updates: Tuple of integers >= 1 to choose from: the number of mask
            updates between begin and end (the spacing is then
            `schedules.update_frequency`, so it follows the training
            length). `None` means `SEARCH_UPDATES` (40, 80, 160) unless
            `frequency` is given. Defaults to `None`.
        frequency: Tuple of integers >= 1 to choose the update spacing in
            steps from, instead of `updates`. Defaults to `None`.
        target_sparsity: `None` (the hypermodel's target, fixed) or a
            (low, high) range to search. Defaults to `None`.
        start_slope: `None`, or a (low, high) range searched on a log scale:
            then the slopes are searched directly instead of calibrating to
            a target (the sparsity reached then varies by trial).
    """

    def __init__(
        self,
        begin=(0.15, 0.35),
        ramp=(0.35, 0.55),
        end=(0.55, 0.8),
        ramp_slope_ratio=(1.5, 2.0),
        updates=None,
        frequency=None,
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
        if updates is not None and frequency is not None:
            raise ValueError(
                "Search either `updates` or `frequency`, not both. Received: "
                f"updates={updates!r}, frequency={frequency!r}"
            )
        self.frequency = None if frequency is None else _choices("frequency", frequency)
        self.updates = (
            None if frequency is not None
            else _choices("updates", SEARCH_UPDATES if updates is None else updates)
        )
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

    def register(self, hp):
        """Declares the searched hyperparameters in `hp`; returns their
        values (fractions, φ/θ, `updates` or `frequency`, and
        `target_sparsity` or `start_slope` where searched)."""

        def fraction(name, bounds):
            if bounds[0] == bounds[1]:
                return hp.Fixed(name, bounds[0])
            return hp.Float(name, *bounds)

        values = {name: fraction(name, bounds) for name, bounds in (
            ("begin_fraction", self.begin), ("ramp_fraction", self.ramp),
            ("end_fraction", self.end), ("ramp_slope_ratio", self.ramp_slope_ratio))}
        if self.frequency is not None:
            values["frequency"] = hp.Choice("frequency", list(self.frequency))
        else:
            values["updates"] = hp.Choice("updates", list(self.updates))
        if self.start_slope is not None:
            values["start_slope"] = hp.Float("start_slope", *self.start_slope, sampling="log")
        elif self.target_sparsity is not None:
            values["target_sparsity"] = hp.Float("target_sparsity", *self.target_sparsity)
        return values

    def schedule(self, hp, total_steps, target_sparsity):
        """Registers the hyperparameters in `hp`; returns the schedule.

        Raises:
            keras_tuner.errors.FailedTrialError: for an invalid combination.
        """
        values = self.register(hp)
        steps = [int(round(values[name] * total_steps))
                 for name in ("begin_fraction", "ramp_fraction", "end_fraction")]
        frequency = values.get("frequency") or update_frequency(
            steps[0], steps[2], values["updates"])
        kwargs = dict(ramp_slope_ratio=values["ramp_slope_ratio"])
        if "start_slope" in values:
            kwargs["start_slope"] = values["start_slope"]
        else:
            kwargs["target_sparsity"] = values.get("target_sparsity", target_sparsity)
        try:
            return RampedThresholdSchedule(*steps, frequency=frequency, **kwargs)
        except ValueError as error:
            raise keras_tuner.errors.FailedTrialError(
                f"Infeasible schedule (not trained): {error}"
            ) from None


def _choices(name, values):
    """A non-empty tuple of integers >= 1."""
    try:
        choices = tuple(values)
    except TypeError:
        choices = ()
    if not choices or any(
        isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in choices
    ):
        raise ValueError(
            f"`{name}` must be a non-empty tuple of integers >= 1. "
            f"Received: {name}={values!r}"
        )
    return choices


def count_nonzeros(model):
    """The non-zero parameters of `model` (every weight, pruned or not): the
    size measure `PrunedHyperModel` logs by default."""
    return int(sum(np.count_nonzero(to_numpy(w)) for w in model.weights))


#: The size measures `PrunedHyperModel(size=...)` takes by name.
SIZES = ("nonzeros", "tflite_bytes", "tflite_ms")


class TFLiteSize:
    """A model's size as an app sees it: the bytes of its `.tflite` export,
    or that export's LiteRT latency.

    A size measure for `PrunedHyperModel(size=...)` (which builds one for
    `size="tflite_bytes"` or `"tflite_ms"`), or call it on any model. Each
    call exports the model with `export.export_tflite` into a temporary
    folder (checked against Keras in LiteRT, as every export is) and
    deletes the files afterwards.

    An export takes seconds, so `PrunedHyperModel` measures it only where
    the trial's model is final (`final_only`): at the epochs after the
    schedule's last mask update, and at the last epoch of each `fit`; it
    measures again only when the masks have changed. Other epochs log
    `size` NaN (keras-tuner lines the logs up by epoch) and their
    `pruning_score` ranks below every measured epoch's, so that a trial's
    best epoch is one whose model was measured.

    Args:
        measure: `"bytes"` (the file's size) or `"ms"` (median batch-1
            LiteRT latency, `LiteRTRunner.latency_ms`, on the interpreter
            setting the export recommends). Defaults to `"bytes"`.
        input_shape: Shape without the batch that fixes the model's `None`
            dimensions, as in `export_tflite`. Defaults to `None` (the
            model's own shapes).
        quantization: `"float32"` or `"dynamic_int8"`, as in
            `export_tflite` (full-integer `"int8"` needs calibration data
            per export: not offered here). Defaults to `"float32"`.
        encoding: As in `export_tflite`, or `None`: for bytes, the smaller
            of the sparse and the dense file (the sparse encoding's indices
            outweigh the zeros it drops in small or mildly sparse
            matrices); for latency, `"auto"` (sparse only where it is not
            slower). Defaults to `None`.
        num_threads: Integer >= 1, the interpreter's threads for the
            latency. Defaults to `1`.

    Raises:
        ValueError: for a bad `measure`, `quantization`, `encoding` or
            `num_threads`, or a backend other than TensorFlow (the export
            converts a TensorFlow SavedModel).
    """

    #: `PrunedHyperModel` measures only the final model (see above).
    final_only = True
    MEASURES = ("bytes", "ms")
    QUANTIZATIONS = ("float32", "dynamic_int8")

    def __init__(self, measure="bytes", input_shape=None, quantization="float32",
                 encoding=None, num_threads=1):
        if measure not in self.MEASURES:
            raise ValueError(
                f"`measure` must be one of {self.MEASURES}. Received: measure={measure!r}"
            )
        self.num_threads = check_int("num_threads", num_threads, 1)
        backend = keras.backend.backend()
        if backend != "tensorflow":
            raise ValueError(
                f"A `.tflite` size ({measure!r}) needs the TensorFlow backend "
                f"(the export converts a TensorFlow SavedModel). Received: backend "
                f"{backend!r}. Measure size='nonzeros' here, or export from TensorFlow."
            )
        from tf_gradual_prune.export import ENCODINGS

        if quantization not in self.QUANTIZATIONS:
            raise ValueError(
                f"`quantization` must be one of {self.QUANTIZATIONS}. Received: "
                f"quantization={quantization!r}"
            )
        if encoding is not None and encoding not in ENCODINGS:
            raise ValueError(
                f"`encoding` must be None or one of {ENCODINGS}. Received: "
                f"encoding={encoding!r}"
            )
        self.measure, self.input_shape = measure, input_shape
        self.quantization = quantization
        self.encoding = encoding
        #: Axis label for plots.
        self.label = (".tflite bytes" if measure == "bytes"
                      else f"LiteRT ms (batch 1, {self.num_threads} thread(s))")

    def __call__(self, model):
        from tf_gradual_prune.export import export_tflite
        from tf_gradual_prune.runtime import LiteRTRunner

        with tempfile.TemporaryDirectory(prefix="tfgp_size_") as folder:
            report = export_tflite(
                model, os.path.join(folder, "model.tflite"),
                quantization=self.quantization, input_shape=self.input_shape,
                encoding=self.encoding or ("sparse" if self.measure == "bytes" else "auto"),
            )
            if self.measure == "bytes":
                # export_tflite converts both encodings; it reports both sizes.
                return float(report.size_bytes if self.encoding else
                             min(report.size_bytes, report.dense_size_bytes))
            runner = LiteRTRunner(report.path, num_threads=self.num_threads,
                                  delegate=report.delegate)
            sample = [np.zeros(d["shape"], d["dtype"]) for d in runner.input_details]
            return runner.latency_ms(sample)

    def __repr__(self):
        return (f"TFLiteSize(measure={self.measure!r}, input_shape={self.input_shape!r}, "
                f"quantization={self.quantization!r}, encoding={self.encoding!r}, "
                f"num_threads={self.num_threads})")


def _masks_key(model):
    """A digest of where `model`'s weights are zero: equal while no mask
    changes."""
    digest = hashlib.sha1()
    for w in model.weights:
        digest.update(np.packbits(to_numpy(w) == 0).tobytes())
    return digest.hexdigest()


class _Score(keras.callbacks.Callback):
    """Adds `size` and `pruning_score` to the epoch logs (see
    `PrunedHyperModel`)."""

    def __init__(self, metric, direction, target, scoring, weight,
                 metric_floor=None, size=count_nonzeros, end_step=0):
        super().__init__()
        self.metric, self.direction = metric, direction
        self.target, self.scoring, self.weight = target, scoring, weight
        self.metric_floor, self.size = metric_floor, size
        self.end_step = end_step
        self._measured = (None, None)  # masks key, size

    def _size(self, epoch):
        """The model's size now, or `None` where a `final_only` measure
        waits for the final model."""
        if not getattr(self.size, "final_only", False):
            return float(self.size(self.model))
        params = self.params or {}
        pruned = (epoch + 1) * (params.get("steps") or 0) >= self.end_step
        if not pruned and epoch + 1 != params.get("epochs"):
            return None
        key = _masks_key(self.model)
        if key != self._measured[0]:
            self._measured = key, float(self.size(self.model))
        return self._measured[1]

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if self.metric not in logs:
            raise ValueError(
                f"The objective metric {self.metric!r} is not in the logs "
                f"{sorted(logs)}: pass validation data, or choose `metric`."
            )
        sign = 1 if self.direction == "max" else -1
        value = float(logs[self.metric]) * sign
        sparsity = float(logs.get("sparsity", 0.0))
        size = self._size(epoch) if self.model is not None else None
        logs["size"] = math.nan if size is None else size
        if self.scoring == "tradeoff":
            logs["pruning_score"] = value + self.weight * sparsity
        elif self.scoring == "smallest":
            if size is not None and value >= self.metric_floor * sign:
                logs["pruning_score"] = -math.log10(max(size, 1e-12))
            else:
                logs["pruning_score"] = value - MISSED_TARGET_OFFSET
        elif sparsity + 1e-3 >= self.target:
            logs["pruning_score"] = value
        else:
            logs["pruning_score"] = sparsity - MISSED_TARGET_OFFSET
        if size is None and self.model is not None:
            # A model a final-only size did not measure ranks below all
            # that it did.
            logs["pruning_score"] -= 2 * MISSED_TARGET_OFFSET


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
    - `scoring="smallest"`: the smallest model whose metric reaches
      `metric_floor`: `-log10(size)` when the metric reaches the floor,
      otherwise the metric - 1e6 (below every trial that reaches it). Use
      it when the search varies the size: `SearchSpace(target_sparsity=
      (low, high))`, or units in your `build_model`.

    Every epoch logs `sparsity` (of the pruned weights) and `size` beside
    the metric: by default the model's non-zero parameters
    (`count_nonzeros`); with `size="tflite_bytes"` or `"tflite_ms"` the
    bytes or the LiteRT latency of the model's `.tflite` export
    (`TFLiteSize`, measured only once the model is final, see there); or
    what your `size` function measures (it runs at every epoch end, so keep
    it cheap). `pareto_front` and `pareto_plot` show metric against size
    over the trials.

    A search trains each trial once, and its best trial is partly the
    luckiest seed: its score does not come back when the schedule is
    trained again. `reevaluate(tuner, ...)` trains the top trials again
    with fresh seeds; `best_schedule` and `best_score` then rank by the
    mean of those runs and report its spread.

    Args:
        build_model: Function `hp -> compiled keras.Model`.
        target_sparsity: Float in (0, 1). Defaults to `0.9`.
        metric: String, the logged metric to score. Defaults to
            `"val_accuracy"`.
        direction: `"max"` or `"min"` for `metric`. Defaults to `"max"`.
        space: A `SearchSpace`. Defaults to `SearchSpace()`.
        scoring: One of `SCORING`: `"target"`, `"tradeoff"` or
            `"smallest"`. Defaults to `"target"`.
        sparsity_weight: Float >= 0, for `"tradeoff"`. Defaults to `1.0`.
        metric_floor: Float, for `"smallest"` (required there, not allowed
            otherwise): the worst metric value a model may have. Defaults
            to `None`.
        size: One of `SIZES` (`"nonzeros"`, `"tflite_bytes"`,
            `"tflite_ms"`: `TFLiteSize("bytes")` or `TFLiteSize("ms")` on
            the model's own input shapes), a `TFLiteSize`, or a function
            `model -> float` (smaller is better). Defaults to `"nonzeros"`.
        weights: Passed to `GradualPruning`.
        block_size: Passed to `GradualPruning`.
        granularity: Passed to `GradualPruning` (`"units"` searches
            schedules for whole-unit pruning).

    Example:

    ```python
    from tf_gradual_prune import tuning

    hypermodel = tuning.PrunedHyperModel(build_model, target_sparsity=0.9)
    tuner = keras_tuner.RandomSearch(hypermodel, objective=tuning.OBJECTIVE,
                                     max_trials=10, directory="search")
    tuner.search(x, y, epochs=12, validation_data=(x_val, y_val))
    hypermodel.reevaluate(tuner, x, y, epochs=12,
                          validation_data=(x_val, y_val))
    schedule = hypermodel.best_schedule(tuner)
    print(hypermodel.best_score(tuner))  # mean, std, low-high, runs
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
        metric_floor=None,
        size="nonzeros",
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
        if (metric_floor is None) != (scoring != "smallest"):
            raise ValueError(
                "`metric_floor` is required with scoring='smallest' and "
                f"allowed only there. Received: scoring={scoring!r}, "
                f"metric_floor={metric_floor!r}"
            )
        if isinstance(size, str) and size in SIZES:
            size = (count_nonzeros if size == "nonzeros"
                    else TFLiteSize("bytes" if size == "tflite_bytes" else "ms"))
        elif not callable(size):
            raise TypeError(
                f"`size` must be one of {SIZES}, a `TFLiteSize` or a function "
                f"model -> float. Received: size={size!r}"
            )
        self.build_model = build_model
        self.target_sparsity = float(target_sparsity)
        self.metric, self.direction = metric, direction
        self.space = space if space is not None else SearchSpace()
        self.scoring, self.sparsity_weight = scoring, float(sparsity_weight)
        self.metric_floor = None if metric_floor is None else float(metric_floor)
        self.size = size
        self.weights, self.block_size = weights, block_size
        self.granularity = granularity
        self.total_steps = None
        #: The rows `reevaluate` returned, best first (`None` before).
        self.reevaluation = None

    def build(self, hp):
        # The schedule's hyperparameters are declared before the model's:
        # a tuner that samples only what `build` declares (Hyperband,
        # BayesianOptimization) would otherwise see an empty space when
        # `build_model` declares none, and run no trial.
        self.space.register(hp)
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
            self.sparsity_weight, self.metric_floor, self.size, schedule.end_step,
        )
        # In front: the tuner's own callbacks must see the score.
        kwargs["callbacks"] = [pruning, score] + list(kwargs.get("callbacks", []))
        return model.fit(*args, **kwargs)

    def reevaluate(self, tuner, *args, top=3, runs=3, seed=1, **kwargs):
        """Trains the best trials again with fresh seeds, picks the winner on
        those runs and measures it on further ones.

        Give it the data and arguments you gave `tuner.search` (`x`, `y`,
        `epochs`, `validation_data`, ...). Figures are the last epoch's, as
        a user who trains the schedule again gets them (the search scores
        a trial by its best epoch).

        1. Selection: the search's `top` best trials, `runs` times each,
           run `i` from `keras.utils.set_random_seed(seed + i)` (the same
           seeds for every trial, so they compare on equal draws), ranked
           by their mean score.
        2. Confirmation (when `top > 1`): the winner `runs` more times, with
           seeds `seed + runs`, ... that chose nothing. Its figure comes
           from these runs: the best of several means is biased upwards by
           the choice itself, as the search's best trial is.

        The figure is the mean, the sample std and `low`-`high`, a 95%
        prediction interval for one more training from scratch (mean ±
        t(0.975, n - 1) · std · sqrt(1 + 1/n), normal runs assumed): where
        a user who trains the schedule again should land. With 3 runs it
        spans about ±5 std; more runs narrow it.

        Args:
            tuner: The keras-tuner tuner that searched with this hypermodel.
            *args: Passed to `fit` as in `tuner.search`.
            **kwargs: Passed to `fit` as in `tuner.search`.
            top: Integer >= 1. How many of the best trials. Defaults to 3.
            runs: Integer >= 2. Trainings per trial, and for the
                confirmation. Defaults to 3.
            seed: Integer >= 0. The first run's seed. Defaults to 1.

        Returns:
            One dict per trial, best first (also kept as
            `self.reevaluation`): `trial`, `hyperparameters`, `search_score`
            (the search's figure), `seeds` and per run `scores`, `values`
            (the metric), `sparsity`, `size`; `mean_score` (the ranking);
            for the winner after a choice among several, `confirm_seeds`
            and `confirm_values`; and `runs`, `mean`, `std`, `low`, `high`
            of the metric over the confirmation runs where there are some,
            else over the selection runs.
        """
        top = check_int("top", top, 1)
        runs = check_int("runs", runs, 2)
        seed = check_int("seed", seed, 0)
        trials = self._search_best(tuner, top)
        seeds = [seed + i for i in range(runs)]
        verbose = kwargs.get("verbose", 1)
        rows = []
        for rank, trial in enumerate(trials):
            row = {"trial": trial.trial_id,
                   "hyperparameters": dict(trial.hyperparameters.values),
                   "search_score": trial.score, "seeds": seeds,
                   "scores": [], "values": [], "sparsity": [], "size": []}
            for run, run_seed in enumerate(seeds):
                if verbose:
                    print(f"Re-evaluating trial {trial.trial_id} ({rank + 1} of "
                          f"{len(trials)}), run {run + 1} of {runs}, seed {run_seed}")
                logs = self._train(trial, run_seed, args, kwargs)
                for key, name in (("scores", "pruning_score"), ("values", self.metric),
                                  ("sparsity", "sparsity"), ("size", "size")):
                    row[key].append(float(logs[name][-1]) if name in logs else 0.0)
            row["mean_score"] = float(np.mean(row["scores"]))
            rows.append(row)
        rows.sort(key=lambda r: -r["mean_score"])
        if len(rows) > 1:
            winner = rows[0]
            winner["confirm_seeds"] = [seed + runs + i for i in range(runs)]
            winner["confirm_values"] = []
            trial = tuner.oracle.get_trial(winner["trial"])
            for run, run_seed in enumerate(winner["confirm_seeds"]):
                if verbose:
                    print(f"Confirming trial {trial.trial_id}, run {run + 1} of {runs}, "
                          f"seed {run_seed}")
                logs = self._train(trial, run_seed, args, kwargs)
                winner["confirm_values"].append(float(logs[self.metric][-1]))
        for row in rows:
            row.update(_spread(row.get("confirm_values", row["values"])))
        if rows[0]["std"] == 0:
            warnings.warn(
                f"The winner's {rows[0]['runs']} runs all scored {rows[0]['mean']:g}: "
                "its interval is a single point, which one more training rarely "
                "hits. Give `runs` more, or validate on more data (a metric over "
                "few samples takes few values).",
                stacklevel=2,
            )
        self.reevaluation = rows
        return rows

    def _train(self, trial, seed, args, kwargs):
        """One training of `trial`'s model and schedule from `seed`; its
        history."""
        keras.utils.set_random_seed(seed)
        hp = trial.hyperparameters.copy()
        model = self.build(hp)
        return self.fit(hp, model, *args, **copy.copy(kwargs)).history

    def _search_best(self, tuner, count):
        if self.total_steps is None:
            raise ValueError("No trial has run yet: call `tuner.search` first.")
        best = tuner.oracle.get_best_trials(count)
        if not best:
            raise ValueError("The tuner has no completed trial.")
        return best

    def best_score(self, tuner):
        """The best trial's figure and how many runs back it.

        After `reevaluate`: the metric's mean, sample std, `low`-`high` (a
        95% prediction interval for one more training) and per-run values,
        over the winner's confirmation runs (see `reevaluate`). Before: the
        search's own figure for the best trial, from one run (or the mean
        of the tuner's `executions_per_trial`), with no spread.

        Returns:
            A dict: `trial`, `metric`, `mean`, `std`, `low`, `high`,
            `values`, `runs`, `source` (`"reevaluate"` or `"search"`).
        """
        if self.reevaluation:
            row = self.reevaluation[0]
            return {"trial": row["trial"], "metric": self.metric,
                    **{k: row[k] for k in ("mean", "std", "low", "high", "runs")},
                    "values": row.get("confirm_values", row["values"]),
                    "source": "reevaluate"}
        trial = self._search_best(tuner, 1)[0]
        history = (trial.metrics.get_history(self.metric)
                   if trial.metrics.exists(self.metric) else [])
        value = float(history[-1].value[0]) if history else None
        return {"trial": trial.trial_id, "metric": self.metric, "mean": value,
                "std": None, "low": None, "high": None,
                "values": [] if value is None else [value],
                "runs": getattr(tuner, "executions_per_trial", 1),
                "source": "search"}

    def best_hyperparameters(self, tuner):
        """The winning trial's `HyperParameters` (your model's and the
        schedule's): after `reevaluate`, the trial with the best mean over
        its runs, which need not be `tuner.get_best_hyperparameters()`'s;
        before, the search's best trial, with a warning that its figure
        rests on one run (see `best_score`). Build the model to train
        again from these."""
        if self.reevaluation:
            trial = tuner.oracle.get_trial(self.reevaluation[0]["trial"])
        else:
            trial = self._search_best(tuner, 1)[0]
            runs = getattr(tuner, "executions_per_trial", 1)
            warnings.warn(
                f"The best trial's score rests on {runs} training run(s) and "
                "is partly the luckiest seed: call `hypermodel.reevaluate("
                "tuner, <the search's fit arguments>)` to train the top "
                "trials again with fresh seeds, and `best_score(tuner)` for "
                "the spread.",
                stacklevel=3,
            )
        return trial.hyperparameters.copy()

    def best_schedule(self, tuner):
        """The winning trial's schedule (see `best_hyperparameters`), for
        the training length searched.

        Returns:
            A `RampedThresholdSchedule` (serialisable): train with
            `GradualPruning(schedule)` and the same epochs and data.
        """
        hp = self.best_hyperparameters(tuner)
        return self.space.schedule(hp, self.total_steps, self.target_sparsity)


#: Student's t, 97.5% quantile, by degrees of freedom (a larger count
#: uses the nearest smaller one listed: a wider interval).
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365,
         8: 2.306, 9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000}


def _spread(values):
    """`runs`, `mean`, sample `std` and the 95% prediction interval
    `low`-`high` for one more draw, of two or more values."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    t = _T975[max(df for df in _T975 if df <= n - 1)]
    mean, std = float(values.mean()), float(values.std(ddof=1))
    half = t * std * math.sqrt(1 + 1 / n)
    return {"runs": n, "mean": mean, "std": std, "low": mean - half, "high": mean + half}


def trials_table(tuner, metric="val_accuracy", direction="max"):
    """One dict per trial: hyperparameters, status, the last epoch's score,
    metric, sparsity and size, and `pareto` (whether the trial is on the
    front of metric against size, see `pareto_front`)."""
    rows = []
    for trial in sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id):
        row = {"trial": trial.trial_id, "status": str(trial.status)}
        row.update(trial.hyperparameters.values)
        for name in ("pruning_score", metric, "sparsity", "size"):
            history = trial.metrics.get_history(name) if trial.metrics.exists(name) else []
            value = float(history[-1].value[0]) if history else math.nan
            row[name] = None if math.isnan(value) else value  # NaN: not measured
        rows.append(row)
    front = {id(r) for r in pareto_front(rows, metric, direction)}
    for row in rows:
        row["pareto"] = id(row) in front
    return rows


def save_trials(tuner, prefix, metric="val_accuracy", direction="max"):
    """Writes `prefix.csv` and `prefix.json` of `trials_table`; returns it."""
    rows = trials_table(tuner, metric, direction)
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
    skip = {"trial", "status", "pruning_score", metric, "sparsity", "size", "pareto"}
    names = []
    for row in rows:
        names += [k for k, v in row.items() if k not in skip and k not in names
                  and isinstance(v, (int, float)) and not isinstance(v, bool)]
    names.append("sparsity")
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
    met = np.array([r["pruning_score"] is not None
                    and r["pruning_score"] > -MISSED_TARGET_OFFSET / 2 for r in rows])
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


def _rows(trials, metric):
    return trials if isinstance(trials, list) else trials_table(trials, metric)


def pareto_front(trials, metric="val_accuracy", direction="max"):
    """The trials that no other trial beats on both metric and size.

    A trial is on the front when no other trial has a size no larger and a
    metric no worse, one of them strictly. keras-tuner's own multi-objective
    search adds the objectives into one number; the front keeps every
    trade-off instead, for you to choose from.

    Args:
        trials: A tuner, or the rows of `trials_table` / `save_trials`.
        metric: The metric. Defaults to `"val_accuracy"`.
        direction: `"max"` or `"min"` for `metric`. Defaults to `"max"`.

    Returns:
        The rows on the front, smallest size first.
    """
    if direction not in ("max", "min"):
        raise ValueError(
            f"`direction` must be 'max' or 'min'. Received: direction={direction!r}"
        )
    sign = 1 if direction == "max" else -1
    rows = [r for r in _rows(trials, metric)
            if r.get(metric) is not None and r.get("size") is not None]

    def beats(a, b):
        better = sign * a[metric], -a["size"]
        worse = sign * b[metric], -b["size"]
        return all(x >= y for x, y in zip(better, worse)) and better != worse

    front = [r for r in rows if not any(beats(o, r) for o in rows)]
    return sorted(front, key=lambda r: (r["size"], -sign * r[metric]))


def pareto_plot(trials, path, metric="val_accuracy", direction="max", size_label=None):
    """Metric against size for every trial, the Pareto front joined.

    Args:
        trials: A tuner, or the rows of `trials_table` / `save_trials`.
        path: PNG path.
        metric: The metric on the vertical axis. Defaults to
            `"val_accuracy"`.
        direction: `"max"` or `"min"` for `metric`. Defaults to `"max"`.
        size_label: The horizontal axis' label. Defaults to `None`: what
            the tuner's `PrunedHyperModel` measures (non-zero parameters,
            `.tflite` bytes, LiteRT ms), else "size".

    Returns:
        `path`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in _rows(trials, metric)
            if r.get(metric) is not None and r.get("size") is not None]
    if not rows:
        raise ValueError("No completed trial with the metric and a size to plot.")
    front = pareto_front(rows, metric, direction)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.scatter([r["size"] for r in rows], [r[metric] for r in rows],
               color="tab:gray", label="trial")
    ax.plot([r["size"] for r in front], [r[metric] for r in front], "o-",
            color="tab:blue", drawstyle="steps-post", label="Pareto front")
    for r in front:
        ax.annotate(str(r["trial"]), (r["size"], r[metric]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    if size_label is None:
        size = getattr(getattr(trials, "hypermodel", None), "size", None)
        size_label = ("non-zero parameters" if size is count_nonzeros
                      else getattr(size, "label", "size"))
    ax.set(xlabel=size_label, ylabel=metric)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return files.save_figure(fig, path)
