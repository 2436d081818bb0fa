"""The pruning callback: gradual magnitude pruning during `model.fit`."""

import copy
import importlib.util
import json
import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from tf_gradual_prune import files
from tf_gradual_prune import masking
from tf_gradual_prune.schedules import LIVE_CALIBRATIONS
from tf_gradual_prune.schedules import RampedThresholdSchedule


def _check_schedule(schedule, where):
    if isinstance(schedule, RampedThresholdSchedule) or callable(schedule):
        return schedule
    raise TypeError(
        f"{where} must be a `RampedThresholdSchedule` or a sparsity schedule "
        "called as `schedule(step) -> (should_prune, sparsity)` (e.g. tfmot's "
        f"`PolynomialDecay`). Received: {schedule!r} "
        f"(of type {type(schedule).__name__})"
    )


class _MaskConstraint:
    """`W -> W * M`, as a Keras variable constraint.

    Keras' optimizers apply a variable's constraint right after its update,
    inside the compiled training step; so the mask costs one fused `where`
    per matrix and step, with no extra call from Python.
    """

    def __init__(self, mask, inner):
        self.mask, self.inner = mask, inner

    def __call__(self, weights):
        if self.inner is not None:
            weights = self.inner(weights)
        return tf.where(self.mask, weights, tf.zeros_like(weights))


class _Group:
    """Run state of one schedule and the matrices it prunes."""

    def __init__(self, schedule, items, block_size=1):
        self.schedule = schedule
        self.items = items
        self.block_size = block_size
        self.by_threshold = isinstance(schedule, RampedThresholdSchedule)
        self.masks = [
            tf.Variable(
                tf.ones(item.variable.shape, tf.bool),
                trainable=False,
                name="mask",
            )
            for item in items
        ]
        self.slopes = None  # per-matrix (θ, φ) once calibrated
        self.thresholds = np.zeros(len(items))
        self.zeros = np.zeros(len(items), dtype=np.int64)
        self.sizes = np.array(
            [int(np.prod(item.variable.shape)) for item in items], dtype=np.int64
        )
        variables = [item.variable for item in items]
        masks = self.masks

        def blocks(x):
            return masking.block_magnitudes(x, block_size)

        def keep_and_count(w, m, keep_blocks):
            # Masks only lose ones: AND with the old mask, whatever the blocks say.
            keep = tf.logical_and(
                m, masking.expand_blocks(keep_blocks, block_size, w.shape[-2])
            )
            m.assign(keep)
            w.assign(tf.where(keep, w, tf.zeros_like(w)))
            return tf.size(keep) - tf.math.count_nonzero(keep, dtype=tf.int32)

        @tf.function(autograph=False)
        def prune_below(thresholds):
            zeros = []
            for i, (w, m) in enumerate(zip(variables, masks)):
                zeros.append(keep_and_count(w, m, blocks(w) >= thresholds[i]))
            return tf.stack(zeros)

        @tf.function(autograph=False)
        def prune_fraction(sparsity):
            zeros, cuts = [], []
            for w, m in zip(variables, masks):
                score = blocks(w)
                alive = blocks(tf.cast(m, w.dtype)) > 0
                # Already-pruned blocks sort first, so masks stay monotone.
                flat = tf.reshape(tf.where(alive, score, -tf.ones_like(score)), [-1])
                count = tf.size(flat)
                kept = tf.cast(
                    tf.round(tf.cast(count, tf.float32) * (1.0 - sparsity)),
                    tf.int32,
                )
                pruned_before = count - tf.math.count_nonzero(alive, dtype=tf.int32)
                n_prune = tf.maximum(count - kept, pruned_before)
                order = tf.argsort(flat, stable=True)[:n_prune]
                keep_blocks = tf.tensor_scatter_nd_update(
                    tf.ones([count], tf.bool),
                    order[:, None],
                    tf.zeros([n_prune], tf.bool),
                )
                keep_blocks = tf.reshape(keep_blocks, tf.shape(score))
                zeros.append(keep_and_count(w, m, keep_blocks))
                cuts.append(
                    tf.reduce_max(tf.concat([tf.gather(flat, order), [0.0]], axis=0))
                )
            return tf.stack(zeros), tf.stack(cuts)

        self.prune_below = prune_below
        self.prune_fraction = prune_fraction

    def restore_masks(self):
        """Masks from the weights: an all-zero block counts as pruned."""
        for item, m in zip(self.items, self.masks):
            alive = masking.block_magnitudes(item.variable, self.block_size) > 0
            m.assign(
                masking.expand_blocks(alive, self.block_size, m.shape[-2])
            )
        self.zeros = self.sizes - np.array(
            [int(tf.math.count_nonzero(m)) for m in self.masks]
        )

    def get_state(self):
        return {
            "names": [item.name for item in self.items],
            "slopes": None if self.slopes is None else [list(s) for s in self.slopes],
            "thresholds": [float(t) for t in self.thresholds],
        }

    def set_state(self, state):
        if len(state["thresholds"]) != len(self.items):
            raise ValueError(
                f"The saved state covers {len(state['thresholds'])} matrices; "
                f"the model's selection has {len(self.items)}: "
                f"{[item.name for item in self.items]}"
            )
        self.slopes = (
            None if state["slopes"] is None else [tuple(s) for s in state["slopes"]]
        )
        self.thresholds = np.asarray(state["thresholds"], dtype=np.float64)

    def _magnitudes(self, item):
        """Block magnitudes of a weight as numpy; NaN/Inf is an error."""
        values = keras.ops.convert_to_numpy(item.variable)
        if not np.all(np.isfinite(values)):
            raise ValueError(
                f"Weight {item.name!r} holds {int(np.sum(~np.isfinite(values)))} "
                "NaN or Inf values; its pruning threshold cannot be "
                "calibrated. Lower the learning rate or check the inputs."
            )
        return masking.block_magnitudes(values, self.block_size).numpy()

    def calibrate(self):
        self.slopes = [
            self.schedule.calibrate(self._magnitudes(item)) for item in self.items
        ]

    def advance(self, step, previous):
        """Updates masks for the steps in (previous, step]; True if it did."""
        schedule = self.schedule
        if not self.by_threshold:
            should_prune, sparsity = schedule(tf.constant(step, tf.int64))
            if not bool(should_prune):
                return False
            zeros, cuts = self.prune_fraction(tf.cast(sparsity, tf.float32))
            self.zeros, self.thresholds = zeros.numpy(), cuts.numpy()
            return True
        if schedule.calibration_mode == "begin" and self.slopes is None:
            # The live calibrations derive theirs at every update instead.
            if step < schedule.begin_step:
                return False
            self.calibrate()
        last = min(step, schedule.end_step - 1)
        last -= last % schedule.frequency
        if not (last > schedule.begin_step and last > previous):
            return False
        if schedule.calibration_mode in LIVE_CALIBRATIONS:
            thresholds = schedule.live_thresholds(
                step, [self._magnitudes(item) for item in self.items],
                self.thresholds)
        elif schedule.calibrated:
            thresholds = [schedule.threshold(step, *s) for s in self.slopes]
        else:
            thresholds = [schedule.threshold(step)] * len(self.items)
        self.thresholds = np.asarray(thresholds)
        self.zeros = self.prune_below(
            tf.constant(thresholds, tf.float32)
        ).numpy()
        return True


class GradualPruning(keras.callbacks.Callback):
    """Prunes weights gradually during `fit`, by a rising magnitude threshold.

    The rule of Narang et al., "Exploring Sparsity in Recurrent Neural
    Networks" (ICLR 2017): every matrix has a binary mask; at the update
    steps of the schedule, `mask = mask AND (|W| >= threshold)`, and after
    every optimizer step `W = W * mask`, so pruned weights stay exactly zero
    whatever the optimizer's momentum does. Masks only lose ones.

    The mask is applied as a Keras variable constraint, which the optimizer
    applies right after each update inside the compiled training step (also
    in custom training loops that use a Keras optimizer); the callback
    removes it when training ends.

    By default every recurrent weight matrix is pruned: the input `kernel`
    and the `recurrent_kernel` of LSTM, GRU and SimpleRNN layers and cells,
    inside `Bidirectional` (both directions), `keras.layers.RNN(cell)`,
    `StackedRNNCells` and nested models. Biases are never pruned.

    The step is the optimizer's iteration counter (`optimizer.iterations`,
    the number of optimizer steps taken), so a model saved and reloaded
    mid-ramp continues the schedule. After the optimizer step that brings
    it to `t`, the schedule is asked about step `t`. A saved model is
    already sparse: pruned weights are stored as zeros, and a callback
    starting on such a model takes its zeros as the masks.

    Two kinds of schedule are accepted:

    - `RampedThresholdSchedule`: the paper's magnitude threshold, with
      explicit slopes or calibrated per matrix to a target sparsity.
    - a sparsity schedule with tfmot's calling convention,
      `schedule(step) -> (should_prune, sparsity)`, such as tfmot's own
      `PolynomialDecay` (Zhu & Gupta's AGP) or `ConstantSparsity`: at each
      step it says so, the smallest-magnitude weights of each matrix are
      pruned until `sparsity` of it is zero (masks still only lose ones).

    Two values are added to the logs that Keras shows and `History`
    records: `sparsity`, the pruned share of all selected weights, and
    `threshold`, the mean over matrices of the magnitude threshold in force
    (for sparsity schedules: the largest magnitude pruned at the last
    update). With `log_dir`, per-matrix sparsity and threshold are written
    for TensorBoard at every mask update.

    Args:
        schedule: A schedule (see above), or a dict mapping weight kinds
            (`"recurrent"`, `"dense"`, `"conv"`, `"embedding"`) to
            schedules, so that different groups follow different schedules
            in one `fit` (the paper tuned recurrent and fully connected
            layers separately).
        weights: String, list of strings or `None`. The kinds of matrix
            the single `schedule` prunes: any of `"recurrent"`, `"dense"`,
            `"conv"`, `"embedding"`, or `"all"`. `None` means
            `"recurrent"`. Not allowed with a dict `schedule` (its keys
            choose). Defaults to `None`.
        layers: List of layer names or layers, or `None`. Restricts pruning
            to matrices inside these layers. Defaults to `None`.
        block_size: Integer >= 1 (or tfmot's `(block, 1)`). Prune whole
            blocks of this many consecutive input weights of one output unit
            (along the kernel's input axis), scored by their largest |w|:
            thresholds and sparsity fractions then apply to blocks. 4 (float)
            and 16 (int8) match TFLite's fast sparse FULLY_CONNECTED kernels.
            If the input size is not a multiple, the last block of each
            column is shorter. Defaults to `1` (unstructured).
        log_dir: String or `None`. Folder for TensorBoard summaries (they
            need the tensorboard package, which TensorFlow >= 2.18 no
            longer installs: the `[tensorboard]` extra). Defaults to `None`.
        state_path: String or `None`. A JSON file for the callback's state
            (calibrated slopes and thresholds; see `get_state`), written at
            every epoch end and when training ends, and read when training
            starts if it exists. With it, training interrupted mid-ramp and
            resumed (from a saved `.keras` model, or with
            `keras.callbacks.BackupAndRestore`) continues exactly as if it
            had not stopped. Defaults to `None`.

    Raises:
        TypeError: if a schedule is neither kind.
        ValueError: if `weights` names an unknown kind or is combined with
            a dict `schedule`; when training starts, if the selection
            matches no weight of the model.
        ImportError: if `log_dir` is given and tensorboard is not
            installed (the message names the extra).

    Example:

    ```python
    schedule = tf_gradual_prune.RampedThresholdSchedule.for_training(
        epochs=20, steps_per_epoch=len(train_ds), target_sparsity=0.9)
    pruning = tf_gradual_prune.GradualPruning(schedule)
    history = model.fit(train_ds, epochs=20, callbacks=[pruning])
    print(history.history["sparsity"][-1])
    print(tf_gradual_prune.sparsity_table(model))
    ```
    """

    def __init__(
        self,
        schedule,
        weights=None,
        layers=None,
        block_size=1,
        log_dir=None,
        state_path=None,
    ):
        super().__init__()
        if isinstance(schedule, dict):
            if weights is not None:
                raise ValueError(
                    "With a dict `schedule` its keys choose the weights; "
                    f"leave `weights` unset. Received: weights={weights!r}, "
                    f"schedule keys={sorted(schedule)}"
                )
            if not schedule:
                raise ValueError(
                    "`schedule` is an empty dict. Received: schedule={}"
                )
            for kind, each in schedule.items():
                masking._normalise_kinds(kind)
                _check_schedule(each, f"`schedule[{kind!r}]`")
        else:
            _check_schedule(schedule, "`schedule`")
            masking._normalise_kinds(weights)
        for name, value in (("log_dir", log_dir), ("state_path", state_path)):
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise TypeError(
                    f"`{name}` must be a path or None. Received: "
                    f"{name}={value!r}"
                )
        if log_dir is not None and importlib.util.find_spec("tensorboard") is None:
            # TensorFlow >= 2.18 no longer installs it; `tf.summary` would
            # fail only at the first mask update.
            raise ImportError(
                "`log_dir` writes TensorBoard summaries, which need the "
                f"tensorboard package (TensorFlow {tf.__version__} does not "
                "install it): pip install 'tf-gradual-prune[tensorboard]' (or "
                f"pip install tensorboard). Received: log_dir={log_dir!r}"
            )
        self.schedule = schedule
        self.weights = weights
        self.layers = layers
        self.block_size = masking.check_block_size(block_size)
        self.log_dir = log_dir
        self.state_path = None if state_path is None else os.fspath(state_path)
        self._groups = None
        self._pending_state = None
        self._started = False
        self._model_seen = None
        self._writer = None

    def _group_specs(self):
        if isinstance(self.schedule, dict):
            return list(self.schedule.items())
        return [(self.weights, self.schedule)]

    @property
    def groups(self):
        """`(schedule, [PrunableWeight, ...])` per group of the last run."""
        return [(g.schedule, g.items) for g in self._groups or []]

    def _step(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_begin(self, logs=None):
        # The set-up waits for the first batch: callbacks that restore the
        # model (BackupAndRestore) run their on_train_begin in any order.
        self._started = False
        self._planned_steps = None
        params = self.params or {}
        if params.get("epochs") and params.get("steps"):
            self._planned_steps = params["epochs"] * params["steps"]

    def on_train_batch_begin(self, batch, logs=None):
        if not self._started:
            self._start()

    def _start(self):
        self._started = True
        step = self._step()
        if self._model_seen is not self.model:
            # A new model: select its weights and start fresh. The same
            # model again (a second `fit`) keeps masks and calibration.
            self._groups = [
                _Group(
                    schedule,
                    masking.find_prunable_weights(
                        self.model, weights=kinds, layers=self.layers
                    ),
                    self.block_size,
                )
                for kinds, schedule in self._group_specs()
            ]
            self._check_overlap()
            self._model_seen = self.model
            state = self._pending_state
            if state is None and self.state_path and os.path.exists(self.state_path):
                with open(self.state_path) as f:
                    state = json.load(f)
            self._pending_state = None
            for index, group in enumerate(self._groups):
                begin = getattr(group.schedule, "begin_step", 0)
                if state is not None:
                    group.set_state(state["groups"][index])
                if step > begin:
                    # Resumed mid-pruning: zeros in the weights are the mask.
                    group.restore_masks()
                    if (
                        state is None
                        and group.by_threshold
                        and group.schedule.calibration_mode == "begin"
                    ):
                        warnings.warn(
                            f"Training starts at step {step}, after "
                            f"begin_step={begin}, without the callback's "
                            "saved state (`state_path` or `set_state`): the "
                            "slopes are calibrated now, on weights that may "
                            "already be pruned.",
                            stacklevel=2,
                        )
        self._install_constraints()
        self._warn_about_plan(step)
        if self.log_dir is not None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        self._previous = step - 1
        self._advance(step)

    def _install_constraints(self):
        for group in self._groups:
            for item, mask in zip(group.items, group.masks):
                current = item.variable.constraint
                if not (isinstance(current, _MaskConstraint) and current.mask is mask):
                    item.variable.constraint = _MaskConstraint(mask, current)
        # `fit` made its step function before this; trace it again with the
        # constraints in place.
        self.model.make_train_function(force=True)

    def _remove_constraints(self):
        for group in self._groups or []:
            for item, mask in zip(group.items, group.masks):
                current = item.variable.constraint
                if isinstance(current, _MaskConstraint) and current.mask is mask:
                    item.variable.constraint = current.inner
        if self.model is not None:
            self.model.make_train_function(force=True)

    def _warn_about_plan(self, step):
        spe = getattr(self.model, "steps_per_execution", 1) or 1
        if spe != 1:
            warnings.warn(
                f"steps_per_execution={spe}: masks are still applied after "
                f"every optimizer step, but updated only every {spe} steps "
                "(the schedule is asked about those steps only).",
                stacklevel=3,
            )
        if self._planned_steps is None:
            return
        initial_epoch = (self.params or {}).get("initial_epoch", 0) or 0
        planned_end = step + self._planned_steps - initial_epoch * self.params["steps"]
        for group in self._groups:
            end = getattr(group.schedule, "end_step", None)
            if end is not None and end > planned_end:
                warnings.warn(
                    f"The schedule's end_step={end} lies beyond the planned "
                    f"training, which ends at step {planned_end}: pruning "
                    "will stop short of its target.",
                    stacklevel=3,
                )

    def get_state(self):
        """The callback's run state, as a JSON-serialisable dict.

        It holds what cannot be recovered from the model: per matrix, the
        calibrated slopes and the thresholds in force. (The masks are the
        zeros of the weights, which a saved model already holds.) Give it
        back with `set_state` before `fit` to resume exactly; `state_path`
        does this through a file.
        """
        if not self._groups:
            raise ValueError("No state yet: the callback has not trained a model.")
        return {
            "format": 1,
            "step": int(self._previous),
            "groups": [group.get_state() for group in self._groups],
        }

    def set_state(self, state):
        """Restores a `get_state()` dict; applied when training starts."""
        if not isinstance(state, dict) or "groups" not in state:
            raise ValueError(
                "`state` must be a dict from `get_state()`. Received: "
                f"state={state!r}"
            )
        if len(state["groups"]) != len(self._group_specs()):
            raise ValueError(
                f"`state` has {len(state['groups'])} group(s); this callback "
                f"has {len(self._group_specs())}."
            )
        self._pending_state = state
        self._model_seen = None

    def _save_state(self):
        if self.state_path and self._groups:
            files.write_atomic(self.state_path, json.dumps(self.get_state()))

    def _check_overlap(self):
        seen = {}
        for index, group in enumerate(self._groups):
            for item in group.items:
                if item.name in seen:
                    raise ValueError(
                        f"Weight {item.name!r} is selected by two schedules "
                        f"(groups {seen[item.name]} and {index})."
                    )
                seen[item.name] = index

    def _advance(self, step):
        updated = False
        for group in self._groups:
            updated |= group.advance(step, self._previous)
        self._previous = step
        if updated and self._writer is not None:
            self._write_summaries(step)

    def on_train_batch_end(self, batch, logs=None):
        self._advance(self._step())
        if logs is not None:
            logs.update(self._summary())

    def on_epoch_end(self, epoch, logs=None):
        if not self._started:
            return
        if logs is not None:
            logs.update(self._summary())
        self._save_state()

    def on_train_end(self, logs=None):
        if self._started:
            self._save_state()
            self._remove_constraints()
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None

    def _summary(self):
        size = sum(int(g.sizes.sum()) for g in self._groups)
        zeros = sum(int(np.sum(g.zeros)) for g in self._groups)
        thresholds = np.concatenate([g.thresholds for g in self._groups])
        return {
            "sparsity": zeros / size if size else 0.0,
            "threshold": float(np.mean(thresholds)),
        }

    def _write_summaries(self, step):
        with self._writer.as_default(step=step):
            for group in self._groups:
                for item, zeros, size, threshold in zip(
                    group.items, group.zeros, group.sizes, group.thresholds
                ):
                    tf.summary.scalar(f"sparsity/{item.name}", zeros / size)
                    tf.summary.scalar(f"threshold/{item.name}", threshold)
            for key, value in self._summary().items():
                tf.summary.scalar(f"pruning/{key}", value)

    def __deepcopy__(self, memo):
        # Run state (masks, compiled functions) belongs to one model; a copy
        # (keras-tuner makes one per trial) starts from the configuration.
        return type(self)(
            schedule=copy.deepcopy(self.schedule, memo),
            weights=copy.deepcopy(self.weights, memo),
            layers=self.layers,
            block_size=self.block_size,
            log_dir=self.log_dir,
            state_path=self.state_path,
        )

