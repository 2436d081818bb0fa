"""The pruning callback: gradual magnitude pruning during `model.fit`."""

import contextlib
import copy
import importlib.util
import json
import os
import warnings

import keras
import numpy as np

from tf_gradual_prune import files, masking
from tf_gradual_prune.schedules import SparsitySchedule

#: What one mask entry stands for: a weight (or a block of them, see
#: `block_size`), or a whole hidden unit of a recurrent cell.
GRANULARITIES = ("weights", "units")


def _as_rule(schedule, where):
    """A pruning rule (see `schedules`): the schedule itself, or a tfmot-style
    callable wrapped in `SparsitySchedule`."""
    if callable(getattr(schedule, "update", None)) and callable(
        getattr(schedule, "init", None)
    ):
        return schedule
    if callable(schedule):
        return SparsitySchedule(schedule)
    raise TypeError(
        f"{where} must be a pruning rule (such as `RampedThresholdSchedule`, "
        "with `init` and `update`) or a sparsity schedule called as "
        "`schedule(step) -> (should_prune, sparsity)` (e.g. tfmot's "
        f"`PolynomialDecay`). Received: {schedule!r} "
        f"(of type {type(schedule).__name__})"
    )


class _MaskConstraint:
    """`W -> W * M`, as a Keras variable constraint.

    Keras' optimizers apply a variable's constraint right after its update,
    inside the compiled training step; so the mask costs one fused `where`
    per matrix and step, with no extra call from Python.

    With `steps` (step scaling, see `RampedThresholdSchedule(step_scale=...)`),
    a pair `(anchor, scale)`: the anchor holds the masked weights before the
    update, so the step just taken is `W * M - anchor`, and it is taken
    `scale` times (`scale - 1` more, so a scale of exactly 1 changes nothing).

    With a `shadow` (regrowth, see `RampedThresholdSchedule(regrow=True)`)
    the optimizer's update is also added to the dense shadow copy: the
    weights before the update were `shadow * M`, so the shadow becomes the
    new weights where `M` holds and `shadow + update` where it does not.
    """

    def __init__(self, mask, inner, shadow=None, steps=None):
        self.mask, self.inner, self.shadow, self.steps = mask, inner, shadow, steps

    def __call__(self, weights):
        if self.inner is not None:
            weights = self.inner(weights)
        # Keras passes the variable itself: its value, on every backend.
        weights = keras.ops.convert_to_tensor(weights)
        mask = self.mask.value
        kept = keras.ops.where(mask, weights, keras.ops.zeros_like(weights))
        if self.steps is not None:
            anchor, scale = self.steps
            before = keras.ops.convert_to_tensor(anchor)
            kept = kept + (keras.ops.convert_to_tensor(scale) - 1) * (kept - before)
            anchor.assign(kept)
        if self.shadow is not None:
            shadow = keras.ops.convert_to_tensor(self.shadow)
            self.shadow.assign(keras.ops.where(mask, kept, shadow + weights))
        return kept


class _CarriedState:
    """On JAX, the constraints' variables ride in the optimizer's state.

    JAX's compiled training step is a pure function of the training state
    (the model's and the optimizer's variables): any other variable a
    constraint reads is a constant of the compiled step, and what it
    assigns is lost. Keras' `optimizer.stateless_apply`, which applies the
    constraints, maps the optimizer's variables; so the masks, step anchors
    and scales and regrowth shadows are appended to the variables of the
    optimizer that applies the constraints (for a `LossScaleOptimizer`, the
    one it wraps). A mask update on the host then reaches the next step
    without compiling it again, and the anchors and shadows the constraint
    assigns are carried from step to step.

    Saving and loading do not see them: the optimizers' `save_own_variables`
    and `load_own_variables` run with them hidden, so `.keras` and weights
    files hold the optimizer's own variables only, as without the callback,
    and a checkpoint written during `fit` loads into a fresh optimizer.
    Other backends read and assign the variables themselves and need none of
    this.
    """

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.variables = []

    @classmethod
    def of(cls, model):
        """The carried state of `model`'s optimizer (made on first use)."""
        outer = optimizer = model.optimizer
        while getattr(optimizer, "inner_optimizer", None) is not None:
            optimizer = optimizer.inner_optimizer
        carried = getattr(optimizer, "_pruning_carried", None)
        if carried is None:
            carried = optimizer._pruning_carried = cls(optimizer)
        current = outer
        while current is not None:
            carried._hide_from_saving(current)
            current = getattr(current, "inner_optimizer", None)
        return carried

    def carry(self, variables):
        """Appends the `variables` not carried yet; True if any was."""
        known = {id(v) for v in self.variables}
        new = [v for v in variables if v is not None and id(v) not in known]
        self.variables += new
        self.optimizer._variables.extend(new)
        return bool(new)

    @contextlib.contextmanager
    def hidden(self):
        """The optimizer's variables without the carried ones, for a while."""
        ours = {id(v) for v in self.variables}
        store = self.optimizer._variables
        before = list(store)
        store[:] = [v for v in before if id(v) not in ours]
        try:
            yield
        finally:
            store[:] = before

    def _hide_from_saving(self, optimizer):
        for name in ("save_own_variables", "load_own_variables"):
            method = getattr(optimizer, name)
            if getattr(method, "hides", None) is self:
                continue

            def call(store, method=method):
                with self.hidden():
                    return method(store)

            call.hides = self
            setattr(optimizer, name, call)


def _step_variables(variable):
    """`(anchor, scale)` for step scaling `variable` (see `_MaskConstraint`).

    Under a `tf.distribute` strategy each replica runs the constraint: the
    two are then created in the strategy's scope, so that every replica
    keeps its own anchor, and updated from the first replica's value (all
    replicas hold the same weights after the all-reduce).
    """
    strategy = getattr(variable.value, "distribute_strategy", None)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        return (
            keras.Variable(masking.to_numpy(variable), trainable=False,
                           aggregation="only_first_replica", name="step_anchor"),
            keras.Variable(np.ones((), variable.dtype), trainable=False,
                           aggregation="only_first_replica", name="step_scale"),
        )


class _Group:
    """One rule, the matrices it prunes, their masks and the rule's state."""

    def __init__(self, schedule, items, block_size=1):
        self.schedule = schedule
        self.rule = _as_rule(schedule, "`schedule`")
        self.items = items
        self.block_size = block_size
        self.masks = [
            keras.Variable(
                np.ones(item.variable.shape, bool),
                trainable=False,
                dtype="bool",
                name="mask",
            )
            for item in items
        ]
        self.sizes = np.array(
            [int(np.prod(item.variable.shape)) for item in items], dtype=np.int64
        )
        self.zeros = np.zeros(len(items), dtype=np.int64)
        # Per matrix, the threshold in force (for sparsity updates: the
        # largest magnitude the last update pruned), for logs and TensorBoard.
        self.thresholds = np.zeros(len(items))
        self.held = None  # the masks while no `fit` runs (see `release`)
        # Regrowth: a dense shadow of each matrix, which the masks are
        # computed from (the constraint adds every update to it).
        self.shadows = None
        if getattr(self.rule, "regrow", False):
            self.shadows = [
                keras.Variable(masking.to_numpy(item.variable), trainable=False,
                               name="shadow")
                for item in items
            ]
        # Step scaling: per matrix, the weights before the step and the
        # factor (see `_MaskConstraint`); embeddings are looked up, not
        # summed over, so their steps are not scaled.
        self.steps = None
        if getattr(self.rule, "step_scale", None) is not None:
            self.steps = [
                None if item.kind == "embedding" else _step_variables(item.variable)
                for item in items
            ]
        self.state = self.rule.init(
            self.magnitudes([masking.to_numpy(item.variable) for item in items])
        )

    def magnitudes(self, values):
        """What the rule sees: one array per matrix, its block magnitudes."""
        return [masking.block_magnitudes(v, self.block_size) for v in values]

    def constrained(self):
        """`(variable, mask, shadow, steps)` for every variable the group
        masks (see `_MaskConstraint`)."""
        shadows = self.shadows or [None] * len(self.items)
        steps = self.steps or [None] * len(self.items)
        return list(zip([item.variable for item in self.items], self.masks, shadows, steps))

    def sync_steps(self, released=False):
        """Points step scaling at the weights and masks in force: each
        anchor takes its matrix's weights, each scale the rule's factor for
        its mask (1 when `released`, so that training without the callback
        takes the optimizer's steps as they are)."""
        if self.steps is None:
            return
        pairs = [(item, mask, steps)
                 for item, mask, steps in zip(self.items, self.masks, self.steps) if steps]
        scales = ([1.0] * len(pairs) if released else
                  self.rule.step_scales([masking.to_numpy(mask) for _, mask, _ in pairs]))
        for (item, _, (anchor, scale)), value in zip(pairs, scales):
            anchor.assign(masking.to_numpy(item.variable))
            scale.assign(np.asarray(value, scale.dtype))

    def _values(self):
        """The weights as NumPy arrays (with regrowth: the shadows'); NaN or
        Inf is an error."""
        out = []
        sources = self.shadows or [item.variable for item in self.items]
        for item, source in zip(self.items, sources):
            values = masking.to_numpy(source)
            if not np.all(np.isfinite(values)):
                raise ValueError(
                    f"Weight {item.name!r} holds "
                    f"{int(np.sum(~np.isfinite(values)))} NaN or Inf values; "
                    "its pruning threshold cannot be calibrated. Lower the "
                    "learning rate or check the inputs."
                )
            out.append(values)
        return out

    def restore_masks(self):
        """Masks from the weights: an all-zero block counts as pruned."""
        for item, mask in zip(self.items, self.masks):
            values = masking.to_numpy(item.variable)
            alive = masking.block_magnitudes(values, self.block_size) > 0
            mask.assign(masking.expand_blocks(alive, self.block_size, values.shape))
        self.zeros = self.sizes - np.array(
            [int(np.count_nonzero(masking.to_numpy(m))) for m in self.masks]
        )

    def release(self):
        """Keeps the masks aside and sets them to ones (see `hold`)."""
        if self.held is None:
            masks = [entry[1] for entry in self.constrained()]
            self.held = [masking.to_numpy(m) for m in masks]
            for mask in masks:
                mask.assign(np.ones(mask.shape, bool))
            self.sync_steps(released=True)

    def hold(self):
        """Puts the masks kept aside by `release` back in force."""
        if self.held is not None:
            for entry, values in zip(self.constrained(), self.held):
                entry[1].assign(values)
            self.held = None

    def get_state(self):
        return {"names": [item.name for item in self.items], **self.state}

    def set_state(self, state):
        names = state.get("names", state.get("thresholds"))
        if names is not None and len(names) != len(self.items):
            raise ValueError(
                f"The saved state covers {len(names)} matrices; the model's "
                f"selection has {len(self.items)}: "
                f"{[item.name for item in self.items]}"
            )
        self.state = {k: v for k, v in state.items() if k != "names"}
        self.thresholds = np.asarray(
            self.state.get("thresholds", self.thresholds), dtype=np.float64
        )

    def advance(self, step, since, before_read):
        """Asks the rule about `step` (the previous call was about `since`)
        and applies its update; True if the masks changed.

        `before_read` is called once before the weights are first read
        (the JAX trainer keeps them outside the variables during `fit`).
        """
        read = []

        def values():
            if not read:
                before_read()
                read.append(self._values())
            return read[0]

        def magnitudes():
            return self.magnitudes(values())

        update, self.state = self.rule.update(self.state, step, magnitudes, since)
        if update is None:
            return False
        self.apply(update, values())
        self.sync_steps()
        return True

    def apply(self, update, values):
        """Applies a `MaskUpdate` to the masks and the weights (`values`, as
        NumPy arrays: the weights, or with regrowth the shadows): the new
        masks only lose ones, unless the update regrows."""
        if len(update.values) != len(self.items):
            raise ValueError(
                f"The rule {self.rule!r} returned {len(update.values)} values "
                f"for a group of {len(self.items)} matrices."
            )
        if update.regrow and self.shadows is None:
            raise ValueError(
                f"The rule {self.rule!r} asked to regrow without `regrow = True`, "
                "so no shadow weights were kept."
            )
        cuts = []
        for i, (item, mask, current) in enumerate(zip(self.items, self.masks, values)):
            # Regrowth starts from a full mask: the shadow decides alone.
            old = np.ones(current.shape, bool) if update.regrow else masking.to_numpy(mask)
            if update.kind == "threshold":
                new = masking.prune_below(current, old, update.values[i], self.block_size)
                cuts.append(update.values[i])
            else:
                new, cut = masking.prune_to_sparsity(
                    current, old, update.values[i], self.block_size)
                cuts.append(cut)
            mask.assign(new)
            item.variable.assign(np.where(new, current, np.zeros_like(current)))
            self.zeros[i] = new.size - int(np.count_nonzero(new))
        self.thresholds = np.asarray(cuts, dtype=np.float64)


class _UnitGroup(_Group):
    """A group that prunes whole hidden units of recurrent cells.

    A unit dies with its columns in the input and recurrent kernels (every
    gate), its biases and its row of the recurrent kernel, so its output
    stays exactly zero and the export can remove it (a smaller dense layer).
    The rule sees one matrix per cell (`masking.unit_magnitudes`: its
    weights scored by their units' RMS), so thresholds, calibration and
    allocation work as for weights, and a target sparsity is the share of
    the cells' weights that the dead units zero.
    """

    def __init__(self, schedule, items):
        cells = {}
        for index, item in enumerate(items):
            entry = cells.setdefault(id(item.layer), {"cell": item.layer})
            entry["kernel" if item.variable is item.layer.kernel else "recurrent"] = index
        self.cells = []
        for entry in cells.values():
            cell = entry["cell"]
            if "kernel" not in entry or "recurrent" not in entry:
                raise ValueError(
                    f"Unit pruning needs both kernels of cell {cell.name!r}; the "
                    "selection has only one of them."
                )
            units, gates = masking.cell_units(cell)
            bias = getattr(cell, "bias", None)
            entry.update(
                units=units, gates=gates, inputs=int(cell.kernel.shape[0]), bias=bias,
                bias_mask=None if bias is None else keras.Variable(
                    np.ones(bias.shape, bool), trainable=False, dtype="bool", name="mask"),
                alive=np.ones(units, bool),
            )
            self.cells.append(entry)
        super().__init__(schedule, items, block_size=1)
        if self.shadows is not None:
            raise ValueError(
                "Regrowth (`regrow=True`) is not available with "
                "granularity='units'."
            )

    def magnitudes(self, values):
        return [
            masking.unit_magnitudes(
                masking.unit_scores(values[c["kernel"]], values[c["recurrent"]], c["units"],
                                    c["alive"]),
                c["inputs"], c["gates"])
            for c in self.cells
        ]

    def constrained(self):
        return super().constrained() + [
            (c["bias"], c["bias_mask"], None, None) for c in self.cells
            if c["bias"] is not None
        ]

    def _set_alive(self, cell, alive, values=None):
        """Masks (and zeros) the cell's weights for its live units."""
        kernel, recurrent, bias = masking.unit_masks(
            alive, cell["inputs"], cell["gates"],
            None if cell["bias"] is None else tuple(cell["bias"].shape))
        cell["alive"] = alive
        for index, mask in ((cell["kernel"], kernel), (cell["recurrent"], recurrent)):
            self.masks[index].assign(mask)
            current = values[index] if values is not None else masking.to_numpy(
                self.items[index].variable)
            self.items[index].variable.assign(np.where(mask, current, 0).astype(current.dtype))
            self.zeros[index] = mask.size - int(np.count_nonzero(mask))
        if bias is not None:
            cell["bias_mask"].assign(bias)
            current = masking.to_numpy(cell["bias"])
            cell["bias"].assign(np.where(bias, current, 0).astype(current.dtype))

    def restore_masks(self):
        """A unit whose columns are all zero counts as pruned."""
        for cell in self.cells:
            scores = masking.unit_scores(self.items[cell["kernel"]].variable,
                                         self.items[cell["recurrent"]].variable,
                                         cell["units"])
            self._set_alive(cell, scores > 0)

    def set_state(self, state):
        super().set_state(state)
        self._spread_thresholds()

    def _spread_thresholds(self):
        """The rule's per-cell thresholds, per matrix (for logs)."""
        if len(self.thresholds) == len(self.cells):
            per_item = np.zeros(len(self.items))
            for cell, value in zip(self.cells, self.thresholds):
                per_item[cell["kernel"]] = per_item[cell["recurrent"]] = value
            self.thresholds = per_item

    def apply(self, update, values):
        if len(update.values) != len(self.cells):
            raise ValueError(
                f"The rule {self.rule!r} returned {len(update.values)} values "
                f"for a group of {len(self.cells)} cells."
            )
        cuts = []
        for cell, value in zip(self.cells, update.values):
            old = cell["alive"]
            scores = masking.unit_scores(values[cell["kernel"]], values[cell["recurrent"]],
                                         cell["units"], old)
            if update.kind == "threshold":
                alive = old & (scores >= value)
                cuts.append(float(value))
            else:
                alive = _units_for_sparsity(scores, old, value, cell["inputs"], cell["gates"])
                newly = old & ~alive
                cuts.append(float(scores[newly].max()) if newly.any() else 0.0)
            self._set_alive(cell, alive, values)
        self.thresholds = np.asarray(cuts, dtype=np.float64)
        self._spread_thresholds()


def _units_for_sparsity(scores, alive, sparsity, inputs, gates):
    """The live units after pruning the weakest until `sparsity` of the
    cell's weights are zero (dead units stay dead)."""
    units = scores.size
    size = gates * units * (inputs + units)
    needed = size - int(np.round(np.float32(size) * (np.float32(1.0) - np.float32(sparsity))))
    order = np.argsort(np.where(alive, scores, -1.0), kind="stable")
    for dead in range(int(np.count_nonzero(~alive)), units + 1):
        zeros = gates * inputs * dead + gates * (units * units - (units - dead) ** 2)
        if zeros >= needed:
            break
    keep = np.ones(units, bool)
    keep[order[:dead]] = False
    return alive & keep


class GradualPruning(keras.callbacks.Callback):
    """Prunes weights gradually during `fit`, by a rising magnitude threshold.

    The rule of Narang et al., "Exploring Sparsity in Recurrent Neural
    Networks" (ICLR 2017): every matrix has a binary mask; at the update
    steps of the schedule, `mask = mask AND (|W| >= threshold)`, and after
    every optimizer step `W = W * mask`, so pruned weights stay exactly zero
    whatever the optimizer's momentum does. Masks only lose ones.

    The mask is applied as a Keras variable constraint, which the optimizer
    applies right after each update inside the compiled training step (also
    in custom training loops that use a Keras optimizer). When training
    ends the masks are set aside and the constraints left in place with
    all-ones masks: training the model without the callback prunes
    nothing, and a second `fit` with it reuses the compiled training step.
    The callback runs on every Keras 3 backend (TensorFlow, JAX, PyTorch),
    with `keras.distribution` too. On JAX, whose compiled step sees only
    the model's and the optimizer's variables, the masks (and the step
    anchors and regrowth shadows) are appended to
    `model.optimizer.variables`; saving and loading do not see them, so
    `.keras` and weights files are as without the callback.

    By default every recurrent weight matrix is pruned: the input `kernel`
    and the `recurrent_kernel` of LSTM, GRU and SimpleRNN layers and cells,
    inside `Bidirectional` (both directions), `keras.layers.RNN(cell)`,
    `StackedRNNCells` and nested models. Biases are never pruned.

    The step is the optimizer's iteration counter (`optimizer.iterations`,
    the number of optimizer steps taken) when training starts, plus the
    optimizer steps taken since (one per batch, or `steps_per_execution`),
    so a model saved and reloaded mid-ramp continues the schedule. After the
    optimizer step that brings it to `t`, the schedule is asked about step
    `t`. A saved model is already sparse: pruned weights are stored as
    zeros, and a callback starting on such a model takes its zeros as the
    masks.

    The schedule is a pruning rule (see `tf_gradual_prune.schedules`): it
    decides when masks change and how much, and the callback applies it.
    Accepted:

    - `RampedThresholdSchedule`: the paper's magnitude threshold, with
      explicit slopes or calibrated to a target sparsity of its group of
      matrices (shared out among them by its `allocation`).
    - any other object with the rule protocol's `init` and `update`.
    - a sparsity schedule with tfmot's calling convention (wrapped in
      `schedules.SparsitySchedule`),
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
            `"recurrent"`. A schedule's target holds for each kind
            separately (its `allocation` shares it out among the matrices
            of one kind). Not allowed with a dict `schedule` (its keys
            choose). Defaults to `None`.
        layers: List of layer names or layers, or `None`. Restricts pruning
            to matrices inside these layers. Defaults to `None`.
        block_size: Integer >= 1, or a pair `(inputs, outputs)`. Prune
            whole blocks, scored by their largest |w|: thresholds and
            sparsity fractions then apply to blocks. An integer (tfmot's
            `(block, 1)`) is that many consecutive input weights of one
            output unit: 4 (float) and 16 (int8) match TFLite's sparse
            FULLY_CONNECTED kernels. `(1, n)` is one input read by `n`
            consecutive outputs (for a recurrent kernel, `n` dividing
            `units` keeps each block inside one gate): `export_tflite`
            stores such recurrent layers as a gather of the inputs each
            group of outputs reads and one small dense product, which runs
            on XNNPACK and is the fastest sparse layout on CPUs
            (docs/performance.md). Where a size is not a multiple, the last
            blocks are smaller. Defaults to `1` (unstructured).
        log_dir: String or `None`. Folder for TensorBoard summaries (they
            need the tensorboard package, which TensorFlow >= 2.18 no
            longer installs: the `[tensorboard]` extra). Defaults to `None`.
        granularity: `"weights"` or `"units"`. `"units"` prunes whole
            hidden units of the recurrent cells: a unit dies with its
            columns in both kernels (every gate), its biases and its row of
            the recurrent kernel, so its output is exactly zero and
            `export_tflite` removes it, leaving a smaller *dense* layer
            that runs fast on every runtime and delegate (sparse kernels
            are not needed). The schedule works unchanged: units are scored
            by the RMS of their weights, and a target sparsity is the
            share of the cells' weights that dead units zero (90% of an
            LSTM(512) over 64 inputs leaves about 143 units). Costs more
            accuracy than pruning weights at the same sparsity; for the
            recurrent kind only, with `block_size=1`. Defaults to
            `"weights"`.
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
    train_ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
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
        granularity="weights",
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
                _as_rule(each, f"`schedule[{kind!r}]`")
        else:
            _as_rule(schedule, "`schedule`")
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
            import tensorflow as tf

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
        if granularity not in GRANULARITIES:
            raise ValueError(
                f"`granularity` must be one of {GRANULARITIES}. Received: "
                f"granularity={granularity!r}"
            )
        if granularity == "units" and self.block_size != 1:
            raise ValueError(
                "`block_size` applies to granularity='weights' (units are pruned "
                f"whole). Received: granularity='units', block_size={block_size!r}"
            )
        self.granularity = granularity
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
        """`(schedule, [PrunableWeight, ...])` per group of the last run:
        one group per schedule and kind of weight it prunes."""
        return [(g.schedule, g.items) for g in self._groups or []]

    def on_train_begin(self, logs=None):
        # The set-up waits for the first batch: callbacks that restore the
        # model (BackupAndRestore) run their on_train_begin in any order.
        self._started = False
        self._batch_begin = None
        self._planned_steps = None
        params = self.params or {}
        if params.get("epochs") and params.get("steps"):
            self._planned_steps = params["epochs"] * params["steps"]

    def on_train_batch_begin(self, batch, logs=None):
        if not self._started:
            self._start()
        self._batch_begin = batch

    def _start(self):
        self._started = True
        # The step is counted from here: JAX's trainer keeps the optimizer's
        # counter outside its variable during `fit`.
        step = int(masking.to_numpy(self.model.optimizer.iterations))
        self._step = step
        if self._model_seen is not self.model:
            # A new model: select its weights and start fresh. The same
            # model again (a second `fit`) keeps masks and calibration.
            # One group per schedule and kind of weight: a schedule's
            # target holds for each kind it prunes (recurrent, dense, ...),
            # and its allocation shares it out within the kind.
            self._groups = []
            for kinds, schedule in self._group_specs():
                selected = masking.find_prunable_weights(
                    self.model, weights=kinds, layers=self.layers
                )
                by_kind = {}
                for item in selected:
                    by_kind.setdefault(item.kind, []).append(item)
                if self.granularity == "units":
                    other = sorted(set(by_kind) - {"recurrent"})
                    if other:
                        raise ValueError(
                            "granularity='units' prunes the hidden units of recurrent "
                            f"cells; the selection also holds {other} weights. Select "
                            "weights='recurrent' (or give those kinds another callback)."
                        )
                    self._groups += [_UnitGroup(schedule, selected)]
                    continue
                self._groups += [
                    _Group(schedule, items, self.block_size)
                    for items in (by_kind.values() or [selected])
                ]
            self._check_overlap()
            self._model_seen = self.model
            state = self._pending_state
            if state is None and self.state_path and os.path.exists(self.state_path):
                with open(self.state_path) as f:
                    state = json.load(f)
            self._pending_state = None
            if state is not None and len(state["groups"]) != len(self._groups):
                raise ValueError(
                    f"The saved state has {len(state['groups'])} group(s); "
                    f"this callback has {len(self._groups)} on this model (one "
                    "per schedule and kind of weight it prunes): "
                    f"{[[i.name for i in g.items] for g in self._groups]}"
                )
            for index, group in enumerate(self._groups):
                if state is not None:
                    group.set_state(state["groups"][index])
                if step > group.rule.begin_step:
                    # Resumed mid-pruning: zeros in the weights are the mask.
                    group.restore_masks()
        self._install_constraints()
        self._warn_about_plan(step)
        if self.log_dir is not None:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(self.log_dir)
        self._previous = step - 1
        self._advance(step)

    def _install_constraints(self):
        """Puts each mask on its weight as the weight's constraint, and gives
        back the masks that `on_train_end` released.

        The constraints stay on the weights between `fit` calls (with
        all-ones masks, so they change nothing), so that a second `fit`
        reuses its compiled step: it is traced again only where a
        constraint is new (on JAX: or its variables are new to the
        optimizer's state, see `_CarriedState`).
        """
        new = False
        carried = _CarriedState.of(self.model) if keras.backend.backend() == "jax" else None
        for group in self._groups:
            group.hold()
            # The weights may have changed since the last `fit` (e.g. loaded).
            group.sync_steps()
            for variable, mask, shadow, steps in group.constrained():
                if carried is not None:
                    new |= carried.carry([mask, shadow, *(steps or ())])
                current = variable.constraint
                if isinstance(current, _MaskConstraint) and current.mask is mask:
                    continue
                if isinstance(current, _MaskConstraint):
                    current = current.inner  # another run's mask
                variable.constraint = _MaskConstraint(mask, current, shadow, steps)
                new = True
        if new:
            self.model.make_train_function(force=True)

    def _release_masks(self):
        """When training ends: the masks become all ones (kept aside for the
        next `fit`), so that training without the callback is not pruned."""
        for group in self._groups or []:
            group.release()

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
            end = group.rule.end_step
            if end is not None and end > planned_end:
                warnings.warn(
                    f"The schedule's end_step={end} lies beyond the planned "
                    f"training, which ends at step {planned_end}: pruning "
                    "will stop short of its target.",
                    stacklevel=3,
                )

    def get_state(self):
        """The callback's run state, as a JSON-serialisable dict.

        It holds what cannot be recovered from the model: per group, the
        names of its matrices and its rule's state (for
        `RampedThresholdSchedule`, per matrix the calibrated slopes and the
        thresholds in force; see `schedules`). The masks are the zeros of
        the weights, which a saved model already holds. Give it back with
        `set_state` before `fit` to resume exactly; `state_path` does this
        through a file.
        """
        if not self._groups:
            raise ValueError("No state yet: the callback has not trained a model.")
        return {
            "format": 2,
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

    def _sync_weights(self):
        # The JAX trainer holds the training state outside the variables
        # during `fit`; write it back before the weights are read (the next
        # step then takes the variables, pruned, as its state).
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()

    def _advance(self, step):
        updated = False
        for group in self._groups:
            updated |= group.advance(step, self._previous, self._sync_weights)
        self._previous = step
        if updated and self._writer is not None:
            self._write_summaries(step)

    def on_train_batch_end(self, batch, logs=None):
        # One optimizer step per batch, or `steps_per_execution` of them
        # (Keras reports the first and last batch of the execution).
        begin = batch if self._batch_begin is None else self._batch_begin
        self._step += max(batch - begin + 1, 1)
        self._batch_begin = None
        self._advance(self._step)
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
            self._release_masks()
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
        import tensorflow as tf

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
            granularity=self.granularity,
        )

