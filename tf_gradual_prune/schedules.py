"""Pruning rules: when masks change, and how much.

A *pruning rule* owns the schedule of a group of weight matrices; the
callback (`GradualPruning`) only applies what it decides. In the spirit of
optax's gradient transformations, a rule keeps no run state of its own: it is
passed in and returned, explicit and JSON-serialisable, and the callback's
`get_state` is the rules' state. A rule has

- `begin_step` (masks never change at or before it) and `end_step` (nor at
  or after it; `None` if unknown);
- `init(magnitudes) -> state`: the state before training, for the matrices
  whose block magnitudes (NumPy arrays, see `masking.block_magnitudes`) are
  given;
- `update(state, step, magnitudes, since=None) -> (update, state)`: called
  after the optimizer step that brings the iteration count to `step`, the
  previous call having been about step `since` (default `step - 1`; larger
  gaps with `steps_per_execution`). `magnitudes` is a callable that returns
  the matrices' live block magnitudes, pruned zeros included; the rule calls
  it only when it needs them. `update` is `None` when no mask changes, else a
  `MaskUpdate`.

Two rules are built in: `RampedThresholdSchedule`, the ramped magnitude
threshold of Narang et al., "Exploring Sparsity in Recurrent Neural Networks"
(ICLR 2017, arXiv:1704.05119), Algorithm 1, with our calibrations; and
`SparsitySchedule`, which turns a sparsity-fraction schedule with tfmot's
calling convention (`tfmot.sparsity.keras.PolynomialDecay`,
`ConstantSparsity`, or any callable `step -> (should_prune, sparsity)`) into a
rule. `GradualPruning` wraps such callables itself.
"""

import collections
import math
import warnings

import keras
import numpy as np

from tf_gradual_prune.checks import check_bool, check_choice, check_float, check_int

# The paper's timing (`RampedThresholdSchedule.paper`): pruning begins with
# the second epoch, the ramp at 25% and the end at 50% of the steps.
PAPER_RAMP_FRACTION = 0.25
PAPER_END_FRACTION = 0.5
PAPER_RAMP_SLOPE_RATIO = 1.5

#: Our default timing (`RampedThresholdSchedule.for_training`): begin, ramp
#: and end as fractions of the planned optimizer steps. Chosen on validation
#: data (benchmarks/trajectory.py on two held-out speakers; docs/results.md,
#: "Diagnosis"): beginning at 30% instead of 20% won on all 8 seed, speaker
#: and target pairs.
DEFAULT_TIMING = (0.3, 0.45, 0.7)

#: Mask updates that `for_training` aims for between begin and end when no
#: `frequency` is given (never more often than every step, never less often
#: than the paper's every 100 steps). Chosen on validation data
#: (benchmarks/trajectory.py, two held-out speakers): 80 small cuts instead
#: of 20 larger ones lowered the error at 90% and removed the collapse at
#: 95% (docs/results.md, "Diagnosis").
DEFAULT_UPDATES = 80
PAPER_FREQUENCY = 100
#: The fewest updates `paper` gives a run too short for the paper's spacing
#: (its rule as this library first shipped it; the paper has no such case).
PAPER_SHORT_RUN_UPDATES = 20

#: How a schedule with `target_sparsity` sets its per-matrix thresholds.
CALIBRATIONS = ("begin", "track", "spread", "geometric")

#: The calibrations that derive each update's thresholds from the live weights.
LIVE_CALIBRATIONS = ("track", "spread", "geometric")

#: The calibration of a schedule with `target_sparsity` and no `calibration`.
DEFAULT_CALIBRATION = "geometric"

#: How a schedule with `target_sparsity` shares it out among the matrices of
#: its group (see `allocate`).
ALLOCATIONS = ("uniform", "erk", "lamp")

#: The allocation of a schedule with `target_sparsity` and no `allocation`.
#: Chosen on validation data (docs/results.md, "Allocation"): on sequence
#: classifiers over a few input features, `"uniform"` starves the input
#: kernel (at 98% a 12-feature LSTM(64) keeps 61 of its 3,072 input weights).
DEFAULT_ALLOCATION = "lamp"

#: How the optimizer's steps on a pruned matrix may be scaled (see
#: `RampedThresholdSchedule(step_scale=...)`).
STEP_SCALES = ("fan_in",)

#: The step scaling of `for_training` unless told otherwise. Chosen on
#: validation data (docs/accuracy.md, "Step scaling"): on two speech
#: validation speakers it lowered the CER in all 8 seed/speaker/target pairs,
#: and at 98% on short classification runs it turned failures into models
#: near dense.
DEFAULT_STEP_SCALE = "fan_in"

#: The largest factor `step_scale="fan_in"` multiplies a step by (a matrix
#: at 99% or more sparsity is scaled as one at 99%).
MAX_STEP_SCALE = 100.0


def _latest_update(step, begin_step, end_step, frequency):
    """The update-step rule, the one place it is written: masks change at the
    multiples of `frequency` strictly between `begin_step` and `end_step`.
    Returns the most recent such step at or before `step`, or `None`."""
    last = min(step, end_step - 1) // frequency * frequency
    return last if last > begin_step else None


def fan_in_shrink(mask):
    """How much a mask has shrunk the fan-in of its matrix's live outputs.

    The last axis holds the outputs (a Keras kernel's layout), the others
    the inputs: `inputs * live outputs / non-zeros`, where an output is
    live if any of its weights is. For scattered pruning this is about
    `1 / density`; with whole units pruned, it counts only the inputs the
    surviving units lost. 1 for a full mask or an all-zero one.

    Args:
        mask: Boolean array, at least 2-D.

    Returns:
        A float >= 1.
    """
    mask = np.asarray(mask, bool)
    mask = mask.reshape(-1, mask.shape[-1])
    kept = int(np.count_nonzero(mask))
    if kept == 0:
        return 1.0
    return mask.shape[0] * int(np.count_nonzero(mask.any(axis=0))) / kept


def update_frequency(begin_step, end_step, updates):
    """The mask-update spacing that gives about `updates` updates between
    `begin_step` and `end_step`: `(end_step - begin_step) // updates`, at
    least 1 and at most the paper's `PAPER_FREQUENCY` (100)."""
    updates = check_int("updates", updates, 1)
    return min(max((end_step - begin_step) // updates, 1), PAPER_FREQUENCY)


def allocate(magnitudes, target_sparsity, allocation="uniform"):
    """Per-matrix sparsities whose weighted mean is `target_sparsity`.

    `"uniform"` (the paper): every matrix gets `target_sparsity`.
    `"erk"` (Erdős-Rényi, as in Mocanu et al. 2018 and Evci et al.'s RigL,
    ICML 2020): the share of a matrix that is *kept* is proportional to
    `sum(shape) / prod(shape)`, so small and narrow matrices (the input
    kernel of a recurrent layer over a few features) keep more of their
    weights and large square ones fewer; a matrix that would keep more than
    all of its weights stays dense and the rest share its surplus.
    `"lamp"` (Lee et al., "Layer-adaptive sparsity for the magnitude-based
    pruning", ICLR 2021): every weight is scored by its squared magnitude
    over the sum of the squares of the weights of its matrix that are at
    least as large, and the lowest-scored `target_sparsity` of the group
    is the share pruned, wherever it lies; the shares follow the live
    magnitudes. Either way the group as a whole keeps `1 -
    target_sparsity` of its weights (up to the rounding of the quantiles).
    For a recurrent layer the multiply-adds per step are the non-zeros of
    its matrices, so the inference cost is that of a uniform allocation.

    Args:
        magnitudes: List of arrays, one per matrix, its |W| (for block
            pruning: its block magnitudes). `"uniform"` and `"erk"` use
            only their shapes.
        target_sparsity: Float in [0, 1).
        allocation: One of `ALLOCATIONS`. Defaults to `"uniform"`.

    Returns:
        A list of floats in [0, 1), one per matrix.
    """
    target_sparsity = check_float("target_sparsity", target_sparsity, 0.0, 1.0)
    check_choice("allocation", allocation, ALLOCATIONS)
    shapes = [np.shape(m) for m in magnitudes]
    sizes = np.array([math.prod(s) for s in shapes], dtype=np.float64)
    if allocation == "uniform" or len(shapes) < 2 or target_sparsity == 0.0:
        return [target_sparsity] * len(shapes)
    if allocation == "lamp":
        return _lamp(magnitudes, target_sparsity, sizes)
    score = np.array([sum(s) for s in shapes], dtype=np.float64) / sizes
    kept = (1.0 - target_sparsity) * sizes.sum()
    dense = np.zeros(len(shapes), dtype=bool)
    while True:  # at most one pass per matrix: each pass makes one more dense
        scale = (kept - sizes[dense].sum()) / (score * sizes)[~dense].sum()
        density = np.where(dense, 1.0, scale * score)
        if not np.any(density[~dense] > 1.0):
            break
        dense |= density > 1.0
    return [float(1.0 - d) for d in density]


def _lamp(magnitudes, target_sparsity, sizes):
    """The `"lamp"` allocation: per-matrix shares of the globally
    lowest-scored `target_sparsity` of the weights."""
    scores = []
    for values in magnitudes:
        squares = np.sort(np.square(np.asarray(values, np.float64)).ravel())
        suffix = np.cumsum(squares[::-1])[::-1]
        scores.append(np.divide(squares, suffix, out=np.zeros_like(squares),
                                where=suffix > 0))
    pruned = int(round(target_sparsity * sizes.sum()))
    if pruned == 0:
        return [0.0] * len(sizes)
    cut = np.partition(np.concatenate(scores), pruned - 1)[pruned - 1]
    # A matrix's largest weight scores 1, so every matrix keeps at least one.
    return [float(min(np.sum(s <= cut), n - 1) / n) for s, n in zip(scores, sizes)]


#: The kinds of `MaskUpdate`.
UPDATE_KINDS = ("threshold", "sparsity")


class MaskUpdate(
    collections.namedtuple("MaskUpdate", ["kind", "values", "regrow"])
):
    """What one mask update does to each matrix of a rule's group.

    `kind="threshold"`: the blocks of matrix `i` whose magnitude is below
    `values[i]` are pruned. `kind="sparsity"`: the smallest blocks of matrix
    `i` are pruned until a share `values[i]` of it is zero. Masks only lose
    ones (a block pruned before stays pruned), unless `regrow`: then the
    mask is computed afresh from the magnitudes of the rule's dense shadow
    weights (a rule with `regrow = True`; see `RampedThresholdSchedule`), so
    a pruned block whose shadow has grown comes back.
    """

    __slots__ = ()

    def __new__(cls, kind, values, regrow=False):
        if kind not in UPDATE_KINDS:
            raise ValueError(
                f"`kind` must be one of {UPDATE_KINDS}. Received: kind={kind!r}"
            )
        return super().__new__(cls, kind, [float(v) for v in values], bool(regrow))


@keras.saving.register_keras_serializable(package="tf_gradual_prune")
class RampedThresholdSchedule:
    """The ramped magnitude threshold of Narang et al. (ICLR 2017).

    Every `frequency` optimizer steps strictly between `begin_step` and
    `end_step`, weights whose magnitude is below the threshold `eps` are
    pruned (for good: masks only lose ones). At an update step `t`:

    ```
    t <  ramp_step:  eps = θ * (t - begin_step + 1) / frequency
    t >= ramp_step:  eps = (θ * (ramp_step - begin_step + 1)
                            + φ * (t - ramp_step + 1)) / frequency
    ```

    with θ = `start_slope` and φ = `ramp_slope`. Between updates the
    threshold of the most recent update stays in force; before the first
    update it is 0 and after `end_step` it no longer changes.

    The slopes are given either explicitly, or through `target_sparsity`:
    then they are calibrated separately for each weight matrix from the
    `target_sparsity`-quantile `q` of that matrix's |W| (the paper's
    heuristic, generalised to any target and to any ratio r = φ/θ):

    ```
    θ = q * frequency / ((ramp_step - begin_step) + r * (end_step - ramp_step))
    φ = r * θ
    ```

    For r = 1.5 this is the paper's `θ = 2 q freq / (2 (ramp - begin) +
    3 (end - ramp))`, and the threshold ends close to `q`.

    How the calibrated thresholds follow the training is set by
    `calibration`:

    - `"begin"`: the paper's heuristic as it stands. θ and φ are computed
      once, at `begin_step`, from the weights of that moment, and the
      threshold follows the formula above exactly. The paper took `q` from
      a fully trained dense model; taken from weights that are still
      growing, it lands short of the target (measured on FSDD, GRU(128),
      16 epochs, target 0.9: 0.73 sparsity).
    - `"track"`: the same two-phase ramp, but at every update the slopes
      are derived again from the matrix as it is then, scaled so that the
      last update's threshold is the matrix's current
      `target_sparsity`-quantile of |W| (pruned zeros included). The
      sparsity then lands on the target (same run: 0.900).
    - `"spread"`: the ramp sets the *share* of each matrix below the
      threshold instead of the threshold's value: at an update step `t`
      the threshold is the matrix's `target_sparsity * ramp(t)`-quantile
      of |W| (pruned zeros included), where `ramp(t) = ramp_fraction(t)`
      is the formula above divided by its value at the last update (it
      rises from about 0 to exactly 1). Each update cuts about the same
      share of the whole matrix.
    - `"geometric"` (the default): the ramp sets the *logarithm of the
      share kept*: at an update step `t` the threshold is the matrix's
      `1 - (1 - target_sparsity) ** ramp(t)`-quantile of |W|. Updates with
      the same ramp increment remove the same share of the weights that
      are still alive (as prune-and-retrain's rounds do): large cuts while
      the matrix is dense, small ones near the target. The other
      calibrations remove a growing share of the survivors as the
      sparsity rises; on the speech task the largest share of a matrix's
      survivors cut in one update was 58% (the paper's rule), 29%
      ("track", 20 updates), 35% ("spread") and 13% ("geometric"), and
      the validation error followed that order; 80 geometric updates
      (4%) did better still (docs/results.md, "Diagnosis").

    With every calibration the threshold never decreases, masks only lose
    ones, and all but `"begin"` land on the target.

    The target is that of the whole group of matrices the schedule prunes
    (by default every recurrent kernel of the model). How it is shared out
    among them is set by `allocation`: the paper gives every matrix the
    same sparsity (`"uniform"`); the default, `"lamp"` (Lee et al., ICLR
    2021), ranks each weight by its squared magnitude over the sum of the
    squares of the weights of its matrix that are at least as large, and
    prunes the lowest-ranked share of the group, so that a matrix whose
    weights matter more keeps more of them. On sequence classifiers over a
    few input features `"uniform"` leaves the input kernel almost empty
    (at 98% an LSTM(64) over 12 features keeps 61 of its 3,072 input
    weights) and loses most of the accuracy; `"lamp"` kept it (validation
    error 0.074 against 0.122 uniform, dense 0.058; docs/results.md,
    "Allocation").
    `benchmarks/calibration_bench.py` measures where they land;
    `benchmarks/trajectory.py` what each does to the loss along the way.

    As a pruning rule (see the module docstring) its state is, per matrix,
    the calibrated slopes and the threshold in force; `GradualPruning`
    saves it (`state_path`) so that training resumed mid-ramp continues
    exactly.

    Calling the schedule follows tfmot's `PruningSchedule` convention:
    `schedule(step)` returns a pair of tensors `(should_update, threshold)`.
    Unlike tfmot's schedules, the second value is a magnitude threshold, not
    a sparsity fraction; for a calibrated schedule it is relative, a multiple
    of each matrix's quantile `q` (it reaches about 1 at `end_step`).

    Args:
        begin_step: Integer. The optimizer step after which the mask may
            first change (the paper's `start_itr`). With
            `calibration="begin"` the slopes are calibrated at this step.
        ramp_step: Integer. The step from which the threshold grows with
            slope `ramp_slope` (`ramp_itr`). `begin_step <= ramp_step <=
            end_step`.
        end_step: Integer. The mask changes only at steps before this one
            (`end_itr`); it is fixed afterwards.
        frequency: Integer. The mask is updated at steps that are multiples
            of `frequency` (`freq`). Defaults to `100`.
        start_slope: Float or `None`. θ, the initial slope of the threshold.
            Give it together with `ramp_slope` (or `ramp_slope_ratio`), or
            give `target_sparsity` instead. Defaults to `None`.
        ramp_slope: Float or `None`. φ, the slope after `ramp_step` (the
            paper uses 1.5θ to 2θ). Defaults to `None`.
        target_sparsity: Float in [0, 1) or `None`. Calibrate the slopes
            per weight matrix so that about this share of it is pruned.
            Defaults to `None`.
        ramp_slope_ratio: Float > 0 or `None`. φ/θ, used with
            `target_sparsity` or with `start_slope` alone. `None` means the
            paper's 1.5. Defaults to `None`.
        calibration: One of `"begin"`, `"track"`, `"spread"`,
            `"geometric"`, or `None`. With `target_sparsity`: calibrate once
            at `begin_step` (`"begin"`, the paper's heuristic), or at every
            update from the live weights, the ramp setting the threshold
            (`"track"`), the share pruned (`"spread"`) or the log of the
            share kept (`"geometric"`). `None` means `"geometric"`. Not
            allowed with explicit slopes. Defaults to `None`.
        regrow: Boolean. Opt-in, beyond the paper: pruned weights may come
            back, as in dynamic pruning with feedback (Lin et al., ICLR
            2020). The callback keeps a dense shadow copy of each matrix;
            the forward pass uses the pruned weights, every optimizer update
            is also added to the shadow (pruned entries included), and at
            each update step the mask is computed afresh from the shadow's
            magnitudes with this schedule's threshold (which still only
            grows). After `end_step` the mask is fixed. It costs one more
            copy of the pruned matrices; an exact resume restarts the
            shadow from the weights.
            Defaults to `False`.
        allocation: One of `"uniform"`, `"erk"`, `"lamp"`, or `None`. With
            `target_sparsity`: how it is shared out among the matrices of
            the group that the schedule prunes (see `allocate`): every
            matrix at the target (`"uniform"`, the paper), or the group as a
            whole at the target, each matrix keeping a share proportional to
            `sum(shape) / prod(shape)` (`"erk"`) or set by the LAMP scores
            of its live weights (`"lamp"`), so that a small input kernel
            keeps more of its weights and large recurrent kernels fewer.
            `None` means `"lamp"` (`DEFAULT_ALLOCATION`). Not allowed with
            explicit slopes. Defaults to `None`.
        step_scale: `"fan_in"` or `None`. Beyond the paper: with
            `"fan_in"`, every optimizer step on a pruned matrix is
            multiplied by how much the pruning has shrunk the fan-in of its
            live outputs (`rows * live columns / non-zeros`, about
            `1 / density`; at most `MAX_STEP_SCALE`), so that the few weights
            left to each output move its pre-activation as fast as the dense
            row did. With Adam-like optimizers, whose steps do not grow with
            the gradient, a matrix at 98% otherwise relearns about 50 times
            slower than the dense model it came from (see `docs/accuracy.md`,
            "Step scaling"). Embeddings are not scaled (a row is looked up,
            not summed over). The callback keeps one more copy of each
            matrix (the weights before the step). `None`: the optimizer's
            steps as they are (the paper). Defaults to `None`.

    Raises:
        ValueError: for steps out of order, a `frequency` with no update
            step between `begin_step` and `end_step`, negative slopes, a
            `target_sparsity` outside [0, 1), or a contradictory or missing
            choice of slopes.
        TypeError: for arguments of the wrong type.

    Example:

    ```python
    schedule = tf_gradual_prune.RampedThresholdSchedule(
        begin_step=200, ramp_step=500, end_step=1000, frequency=50,
        target_sparsity=0.9)
    model.fit(x, y, epochs=10,
              callbacks=[tf_gradual_prune.GradualPruning(schedule)])
    ```
    """

    def __init__(
        self,
        begin_step,
        ramp_step,
        end_step,
        frequency=100,
        start_slope=None,
        ramp_slope=None,
        target_sparsity=None,
        ramp_slope_ratio=None,
        calibration=None,
        regrow=False,
        allocation=None,
        step_scale=None,
    ):
        self.begin_step = check_int("begin_step", begin_step, 0)
        self.ramp_step = check_int("ramp_step", ramp_step, 0)
        self.end_step = check_int("end_step", end_step, 0)
        self.frequency = check_int("frequency", frequency, 1)
        if self.ramp_step < self.begin_step:
            raise ValueError(
                "`ramp_step` must be >= `begin_step`. Received: "
                f"begin_step={begin_step}, ramp_step={ramp_step}"
            )
        if self.end_step < self.ramp_step or self.end_step <= self.begin_step:
            raise ValueError(
                "`end_step` must be >= `ramp_step` and > `begin_step`. "
                f"Received: begin_step={begin_step}, ramp_step={ramp_step}, "
                f"end_step={end_step}"
            )
        if self.last_update_step is None:
            raise ValueError(
                "No mask update would happen: no multiple of `frequency` lies "
                "strictly between `begin_step` and `end_step`. Received: "
                f"begin_step={begin_step}, end_step={end_step}, "
                f"frequency={frequency}"
            )
        self.start_slope = check_float("start_slope", start_slope, 0.0)
        self.ramp_slope = check_float("ramp_slope", ramp_slope, 0.0)
        self.target_sparsity = check_float(
            "target_sparsity", target_sparsity, 0.0, 1.0
        )
        self.ramp_slope_ratio = check_float(
            "ramp_slope_ratio", ramp_slope_ratio, 0.0
        )
        if self.ramp_slope_ratio == 0.0:
            raise ValueError(
                "`ramp_slope_ratio` must be > 0. Received: ramp_slope_ratio=0.0"
            )
        self._check_slope_choice()
        self.calibration = self._check_option("calibration", calibration, CALIBRATIONS)
        self.allocation = self._check_option("allocation", allocation, ALLOCATIONS)
        self.regrow = check_bool("regrow", regrow)
        self.step_scale = check_choice("step_scale", step_scale, STEP_SCALES,
                                       none_allowed=True)

    def _check_option(self, name, value, allowed):
        """A choice among `allowed` (or `None`) that applies only with
        `target_sparsity`."""
        check_choice(name, value, allowed, none_allowed=True)
        if value is not None and self.target_sparsity is None:
            raise ValueError(
                f"`{name}` applies only with `target_sparsity`. Received: "
                f"{name}={value!r}, target_sparsity=None"
            )
        return value

    def _check_slope_choice(self):
        slopes = (self.start_slope, self.ramp_slope)
        received = (
            f"Received: start_slope={self.start_slope}, "
            f"ramp_slope={self.ramp_slope}, "
            f"target_sparsity={self.target_sparsity}, "
            f"ramp_slope_ratio={self.ramp_slope_ratio}"
        )
        if self.target_sparsity is not None:
            if slopes != (None, None):
                raise ValueError(
                    "Give either `target_sparsity` or the slopes "
                    f"(`start_slope`, `ramp_slope`), not both. {received}"
                )
            return
        if self.start_slope is None:
            raise ValueError(
                "Give either `target_sparsity` or `start_slope` (with "
                f"`ramp_slope` or `ramp_slope_ratio`). {received}"
            )
        if (self.ramp_slope is None) == (self.ramp_slope_ratio is None):
            raise ValueError(
                "With `start_slope`, give exactly one of `ramp_slope` and "
                f"`ramp_slope_ratio`. {received}"
            )

    @classmethod
    def for_training(
        cls,
        epochs,
        steps_per_epoch,
        target_sparsity=0.9,
        frequency=None,
        ramp_slope_ratio=None,
        calibration=None,
        allocation=None,
        step_scale="default",
    ):
        """Our default schedule for a run of known length.

        Pruning begins at 30% of all optimizer steps, the ramp at 45% and
        the end at 70% (`DEFAULT_TIMING`), so the model learns before it is
        cut and has the last 30% of the steps to recover from the last cut;
        the thresholds are calibrated with `"geometric"`, so that every
        update removes about the same share of the surviving weights; the
        target is shared out among the matrices by `"lamp"` scores, so that
        a small input kernel is not cut as deep as a large recurrent one;
        and every optimizer step on a pruned matrix is multiplied by how
        much pruning shrank its outputs' fan-in (`step_scale="fan_in"`),
        so that the few weights left relearn as fast as the dense model
        did. These choices were made on validation data, where they beat
        the paper's timing, calibration, uniform allocation and unscaled
        steps (see `docs/accuracy.md`, "Diagnosis", "Allocation" and "Step
        scaling"); `RampedThresholdSchedule.paper` gives the paper's rule.

        Without `frequency`, the mask is updated about `DEFAULT_UPDATES`
        (80) times between begin and end: `frequency = (end_step -
        begin_step) // 80`, at least 1 and at most the paper's 100 (for
        long runs, more updates than 80 at the paper's spacing; for runs
        whose window holds fewer than 80 steps, one update per step in it,
        e.g. 11 for 3 epochs of 10 steps). Many small cuts cost less than
        a few large ones: each removes about 3% of the surviving weights
        at 90%, and the model recovers from each within a few steps.

        Args:
            epochs: Integer >= 1. Planned number of epochs.
            steps_per_epoch: Integer >= 1. Optimizer steps per epoch.
            target_sparsity: Float in [0, 1). Defaults to `0.9`.
            frequency: Integer >= 1 or `None` (chosen from the length, see
                above). Defaults to `None`.
            ramp_slope_ratio: Float > 0 or `None` (the paper's 1.5).
                Defaults to `None`.
            calibration: One of `CALIBRATIONS` or `None`
                (`"geometric"`); see the class. Defaults to `None`.
            allocation: One of `ALLOCATIONS` or `None` (`"lamp"`); see the
                class. Defaults to `None`.
            step_scale: `"default"` (`DEFAULT_STEP_SCALE`), one of
                `STEP_SCALES`, or `None` (the optimizer's steps as they are);
                see the class. Defaults to `"default"`.

        Returns:
            A calibrated `RampedThresholdSchedule`.

        Raises:
            ValueError: if the run is too short for one mask update between
                begin and end (it needs at least 4 optimizer steps), or if
                the given `frequency` leaves no update step in the window.
        """
        if step_scale == "default":
            step_scale = DEFAULT_STEP_SCALE
        return cls._for_fractions(
            epochs, steps_per_epoch, DEFAULT_TIMING, DEFAULT_UPDATES,
            target_sparsity, frequency, ramp_slope_ratio, calibration,
            allocation, step_scale)

    @classmethod
    def paper(
        cls,
        epochs,
        steps_per_epoch,
        target_sparsity=0.9,
        frequency=None,
        ramp_slope_ratio=None,
        calibration="begin",
        allocation="uniform",
    ):
        """The paper's rule for a run of known length (Narang et al. 2017).

        Pruning begins at the start of the second epoch, the ramp at 25% and
        the end at 50% of all optimizer steps, φ = 1.5θ, the mask updated
        every 100 steps (every `(end_step - begin_step) // 20` steps, at
        least 1, if the run is too short for 20 updates at that spacing),
        and the slopes calibrated once at `begin_step` from
        each matrix's `target_sparsity`-quantile (`calibration="begin"`, the
        paper's heuristic; `allocation="uniform"`). The threshold then
        follows the paper's Algorithm 1 exactly (tests/schedules_test.py
        checks it against the closed form).

        Args:
            epochs: Integer >= 4 (the second epoch must begin before 25%).
            steps_per_epoch: Integer >= 1. Optimizer steps per epoch.
            target_sparsity: Float in [0, 1). Defaults to `0.9`.
            frequency: Integer >= 1 or `None` (100, or fewer steps when the
                window holds fewer than `DEFAULT_UPDATES` updates of 100).
                Defaults to `None`.
            ramp_slope_ratio: Float > 0 or `None` (1.5). Defaults to `None`.
            calibration: `"begin"` (the paper) or another of
                `CALIBRATIONS`. Defaults to `"begin"`.
            allocation: `"uniform"` (the paper) or another of
                `ALLOCATIONS`. Defaults to `"uniform"`.

        Returns:
            A calibrated `RampedThresholdSchedule`.

        Raises:
            ValueError: if the first epoch reaches 25% of the training (use
                more, shorter epochs), or no update step falls in the window.
        """
        epochs = check_int("epochs", epochs, 1)
        steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, 1)
        total = epochs * steps_per_epoch
        if steps_per_epoch > int(round(PAPER_RAMP_FRACTION * total)):
            raise ValueError(
                "The paper's timing begins pruning at the second epoch and "
                "ramps at 25% of training, so it needs at least 4 epochs. "
                f"Received: epochs={epochs}, steps_per_epoch={steps_per_epoch}. "
                "Use more, shorter epochs, or `for_training`, which prunes "
                "runs of any length."
            )
        timing = (1 / epochs, PAPER_RAMP_FRACTION, PAPER_END_FRACTION)
        return cls._for_fractions(
            epochs, steps_per_epoch, timing, PAPER_SHORT_RUN_UPDATES,
            target_sparsity, frequency, ramp_slope_ratio, calibration,
            allocation, None)

    @classmethod
    def _for_fractions(cls, epochs, steps_per_epoch, timing, updates,
                       target_sparsity, frequency, ramp_slope_ratio,
                       calibration, allocation, step_scale):
        """A calibrated schedule whose begin, ramp and end steps are the
        `timing` fractions of `epochs * steps_per_epoch`; without
        `frequency`, about `updates` mask updates between begin and end
        (at most every `PAPER_FREQUENCY` steps)."""
        epochs = check_int("epochs", epochs, 1)
        steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, 1)
        total = epochs * steps_per_epoch
        begin, ramp, end = (int(round(f * total)) for f in timing)
        if frequency is None:
            frequency = update_frequency(begin, end, updates)
            if _latest_update(end, begin, end, frequency) is None:
                raise ValueError(
                    f"The run is too short to prune: {epochs} epoch(s) of "
                    f"{steps_per_epoch} step(s) give {total} optimizer steps, "
                    f"so the mask could change only strictly between steps "
                    f"{begin} and {end}, and no step lies there. Train for at "
                    "least 4 steps (better: a few dozen)."
                )
        elif _latest_update(end, begin, end, check_int("frequency", frequency, 1)) is None:
            raise ValueError(
                f"No mask update would happen: no multiple of frequency="
                f"{frequency} lies strictly between begin_step={begin} and "
                f"end_step={end} of this {total}-step run. Use frequency <= "
                f"{max((end - begin) // 2, 1)}, or leave it None to have it "
                "chosen from the length."
            )
        return cls(
            begin_step=begin,
            ramp_step=ramp,
            end_step=end,
            frequency=frequency,
            target_sparsity=target_sparsity,
            ramp_slope_ratio=ramp_slope_ratio,
            calibration=calibration,
            allocation=allocation,
            step_scale=step_scale,
        )

    @property
    def calibrated(self):
        """Whether the slopes are calibrated per matrix from `target_sparsity`."""
        return self.target_sparsity is not None

    @property
    def calibration_mode(self):
        """One of `CALIBRATIONS` for a calibrated schedule, else `None`."""
        if not self.calibrated:
            return None
        return self.calibration or DEFAULT_CALIBRATION

    @property
    def allocation_mode(self):
        """One of `ALLOCATIONS` for a calibrated schedule, else `None`."""
        if not self.calibrated:
            return None
        return self.allocation or DEFAULT_ALLOCATION

    def matrix_targets(self, magnitudes):
        """Each matrix's share of `target_sparsity` (see `allocate`).

        Args:
            magnitudes: List of arrays, one per matrix of the group (only
                their shapes are used).

        Returns:
            A list of floats, one per matrix.
        """
        return allocate(magnitudes, self.target_sparsity, self.allocation_mode)

    @property
    def ratio(self):
        """φ/θ in force for calibration or for `start_slope` alone."""
        if self.ramp_slope_ratio is None:
            return PAPER_RAMP_SLOPE_RATIO
        return self.ramp_slope_ratio

    def latest_update(self, step):
        """The most recent mask update step at or before `step`, or `None`.

        The one rule for when masks change: at the multiples of `frequency`
        strictly between `begin_step` and `end_step`.
        """
        return _latest_update(step, self.begin_step, self.end_step, self.frequency)

    @property
    def last_update_step(self):
        """The last step at which the mask changes, or `None` if none does."""
        return self.latest_update(self.end_step)

    def is_update_step(self, step):
        """Whether the mask is updated after optimizer step `step`."""
        return step >= 0 and self.latest_update(step) == step

    def slopes(self, quantile=None):
        """The slopes (θ, φ) in force for one weight matrix.

        Args:
            quantile: Float. The matrix's `target_sparsity`-quantile of |W|;
                required for a calibrated schedule, not allowed otherwise.

        Returns:
            A tuple of floats `(start_slope, ramp_slope)`.
        """
        if not self.calibrated:
            if quantile is not None:
                raise ValueError(
                    "This schedule has explicit slopes; `quantile` is only "
                    "for schedules with `target_sparsity`. Received: "
                    f"quantile={quantile}"
                )
            ramp_slope = self.ramp_slope
            if ramp_slope is None:
                ramp_slope = self.ratio * self.start_slope
            return self.start_slope, ramp_slope
        quantile = check_float("quantile", quantile, 0.0)
        if quantile is None:
            raise ValueError(
                "A schedule with `target_sparsity` needs the matrix's "
                "`quantile` to compute its slopes. Received: quantile=None"
            )
        span = (self.ramp_step - self.begin_step) + self.ratio * (
            self.end_step - self.ramp_step
        )
        start_slope = quantile * self.frequency / span
        return start_slope, self.ratio * start_slope

    def calibrate(self, weights, target_sparsity=None):
        """Slopes (θ, φ) for `weights`, from the quantile of its |W|.

        Args:
            weights: Array-like. The weight matrix at `begin_step`.
            target_sparsity: Float in [0, 1) or `None`: the matrix's share
                of the target (see `matrix_targets`); `None` means the
                schedule's `target_sparsity`. Defaults to `None`.

        Returns:
            A tuple of floats `(start_slope, ramp_slope)`.

        Raises:
            ValueError: if the schedule has explicit slopes, or `weights` is
                empty or holds NaN or Inf.
        """
        if not self.calibrated:
            raise ValueError(
                "Only a schedule with `target_sparsity` is calibrated. "
                f"Received: target_sparsity={self.target_sparsity}"
            )
        magnitudes = np.abs(np.asarray(weights, dtype=np.float64)).ravel()
        if magnitudes.size == 0 or not np.all(np.isfinite(magnitudes)):
            raise ValueError(
                "Cannot calibrate on empty or non-finite weights. Received "
                f"{magnitudes.size} values, "
                f"{int(np.sum(~np.isfinite(magnitudes)))} of them NaN or Inf."
            )
        if target_sparsity is None:
            target_sparsity = self.target_sparsity
        target_sparsity = check_float("target_sparsity", target_sparsity, 0.0, 1.0)
        return self.slopes(float(np.quantile(magnitudes, target_sparsity)))

    def _unit_threshold(self, step, start_slope, ramp_slope):
        """The threshold in force after `step`: the formula, the one place
        it is written."""
        last = self.latest_update(step)
        if last is None:
            return 0.0
        if last < self.ramp_step:
            return start_slope * (last - self.begin_step + 1) / self.frequency
        return (
            start_slope * (self.ramp_step - self.begin_step + 1)
            + ramp_slope * (last - self.ramp_step + 1)
        ) / self.frequency

    def ramp_fraction(self, step):
        """The two-phase ramp after `step`, as a share of its final value.

        0 before the first update, exactly 1 from the last update on: the
        threshold formula above divided by its value at the last update
        step (the slopes cancel, so this is the same for every matrix).
        """
        unit = self.slopes(1.0) if self.calibrated else self.slopes()
        return self._unit_threshold(step, *unit) / self._unit_threshold(
            self.last_update_step, *unit
        )

    def sparsity_goal(self, fraction, target_sparsity=None):
        """The sparsity that `"spread"` or `"geometric"` aims for when the
        ramp is at `fraction` (see `ramp_fraction`) of its final value, for
        a matrix whose share of the target is `target_sparsity` (`None`:
        the schedule's)."""
        if target_sparsity is None:
            target_sparsity = self.target_sparsity
        if self.calibration_mode == "geometric":
            return 1.0 - (1.0 - target_sparsity) ** fraction
        return target_sparsity * fraction

    def live_thresholds(self, step, magnitudes, previous):
        """Per-matrix thresholds at update `step`, from the live weights.

        For calibrations `"track"`, `"spread"` and `"geometric"` (see the
        class): the rule that turns each matrix's current magnitudes into
        its threshold, aiming at the matrix's share of the target
        (`matrix_targets`).

        Args:
            step: Integer. An update step.
            magnitudes: List of arrays, each matrix's |W| (or block
                magnitudes) now, pruned zeros included.
            previous: Sequence of floats, each matrix's threshold so far.

        Returns:
            A list of floats, never below `previous`.
        """
        mode = self.calibration_mode
        if mode not in LIVE_CALIBRATIONS:
            raise ValueError(
                f"Only calibrations {LIVE_CALIBRATIONS} derive thresholds "
                f"from the live weights. Received: calibration={mode!r}"
            )
        fraction = self.ramp_fraction(step)
        thresholds = []
        targets = self.matrix_targets(magnitudes)
        for values, before, target in zip(magnitudes, previous, targets):
            if mode == "track":
                now = fraction * float(np.quantile(values, target))
            else:
                now = float(np.quantile(values, self.sparsity_goal(fraction, target)))
            thresholds.append(max(before, now))
        return thresholds

    def threshold(self, step, start_slope=None, ramp_slope=None):
        """The magnitude threshold in force after optimizer step `step`.

        Args:
            step: Integer >= 0. The optimizer's iteration count.
            start_slope: Float. A matrix's calibrated start slope (from
                `calibrate`); required for a calibrated schedule, not
                allowed otherwise.
            ramp_slope: Float. The matching ramp slope, under the same
                conditions.

        Returns:
            A float: 0 before the first update, the value computed at the
            most recent update step otherwise.
        """
        step = check_int("step", step, 0)
        given = (start_slope, ramp_slope)
        if self.calibrated and None in given:
            raise ValueError(
                "A schedule with `target_sparsity` has a threshold per weight "
                "matrix: pass that matrix's `start_slope` and `ramp_slope` "
                f"(see `calibrate`). Received: start_slope={start_slope}, "
                f"ramp_slope={ramp_slope}"
            )
        if not self.calibrated:
            if given != (None, None):
                raise ValueError(
                    "This schedule has its own slopes; do not pass "
                    f"others. Received: start_slope={start_slope}, "
                    f"ramp_slope={ramp_slope}"
                )
            start_slope, ramp_slope = self.slopes()
        return self._unit_threshold(step, start_slope, ramp_slope)

    def __call__(self, step):
        """tfmot-style call: `(should_update, threshold)` as tensors.

        For a calibrated schedule the threshold is relative to each matrix's
        calibration quantile `q` (multiply by `q` for the magnitude); with
        `calibration="track"` it is `ramp_fraction(step)`, exactly 1 at the
        last update. With `"spread"` and `"geometric"` the second value is
        the sparsity the update aims for, `sparsity_goal(ramp_fraction(step))`.
        `step` is a Python integer or a scalar tensor of any backend (not a
        symbolic one: the value is computed in Python).
        """
        step = int(keras.ops.convert_to_numpy(step))
        if not self.calibrated:
            value = self.threshold(max(step, 0))
        elif self.calibration_mode == "begin":
            value = self._unit_threshold(step, *self.slopes(1.0))
        elif self.calibration_mode == "track":
            value = self.ramp_fraction(step)
        else:
            value = self.sparsity_goal(self.ramp_fraction(step))
        return (
            keras.ops.convert_to_tensor(self.is_update_step(step)),
            keras.ops.convert_to_tensor(value, dtype="float32"),
        )

    def init(self, magnitudes):
        """The rule's state before training (see the module docstring).

        Args:
            magnitudes: List of arrays, the block magnitudes of the matrices
                this schedule will prune (only their number is used).

        Returns:
            A dict: `"slopes"`, per matrix `[θ, φ]` once calibrated
            (`calibration="begin"`; else `None`), and `"thresholds"`, per
            matrix the threshold in force (0 before the first update).
        """
        return {"slopes": None, "thresholds": [0.0] * len(magnitudes)}

    def update(self, state, step, magnitudes, since=None):
        """One call of the rule after optimizer step `step`.

        With `calibration="begin"` the slopes are calibrated at the first
        call at or after `begin_step` (it warns if that call comes later than
        `begin_step`: training resumed without the saved state calibrates on
        weights that may already be pruned). The masks change if an update
        step lies in `(since, step]`; the thresholds are those of
        `threshold` (explicit or `"begin"`-calibrated slopes) or of
        `live_thresholds` (the live calibrations).

        Args:
            state: Dict, from `init` or the previous `update`.
            step: Integer >= 0. The optimizer's iteration count.
            magnitudes: Callable with no arguments that returns the
                matrices' live block magnitudes (list of arrays).
            since: Integer or `None`. The step of the previous call;
                `None` means `step - 1`.

        Returns:
            A pair `(update, state)`: `None` or a `MaskUpdate` of kind
            `"threshold"`, and the new state.
        """
        step = check_int("step", step, 0)
        since = step - 1 if since is None else since
        slopes = state["slopes"]
        if self.calibration_mode == "begin" and slopes is None:
            if step < self.begin_step:
                return None, state
            if since >= self.begin_step:
                warnings.warn(
                    f"Training starts at step {step}, after "
                    f"begin_step={self.begin_step}, without the callback's "
                    "saved state (`state_path` or `set_state`): the slopes "
                    "are calibrated now, on weights that may already be "
                    "pruned.",
                    stacklevel=4,
                )
            current = magnitudes()
            slopes = [
                list(self.calibrate(m, target))
                for m, target in zip(current, self.matrix_targets(current))
            ]
            state = dict(state, slopes=slopes)
        last = self.latest_update(step)
        if last is None or last <= since:
            return None, state
        if self.calibration_mode in LIVE_CALIBRATIONS:
            thresholds = self.live_thresholds(
                step, magnitudes(), state["thresholds"])
        elif self.calibrated:
            thresholds = [self.threshold(step, *each) for each in slopes]
        else:
            thresholds = [self.threshold(step)] * len(state["thresholds"])
        update = MaskUpdate("threshold", thresholds, regrow=self.regrow)
        return update, dict(state, thresholds=update.values)

    def step_scales(self, masks):
        """Per mask, the factor its matrix's optimizer steps are multiplied
        by (see `step_scale`): `fan_in_shrink(mask)`, at most
        `MAX_STEP_SCALE`; all 1 with `step_scale=None`."""
        if self.step_scale is None:
            return [1.0] * len(masks)
        return [min(fan_in_shrink(mask), MAX_STEP_SCALE) for mask in masks]

    def get_config(self):
        return {
            "begin_step": self.begin_step,
            "ramp_step": self.ramp_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
            "start_slope": self.start_slope,
            "ramp_slope": self.ramp_slope,
            "target_sparsity": self.target_sparsity,
            "ramp_slope_ratio": self.ramp_slope_ratio,
            "calibration": self.calibration,
            "regrow": self.regrow,
            "allocation": self.allocation,
            "step_scale": self.step_scale,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and (
            self.get_config() == other.get_config()
        )

    def __hash__(self):
        return hash(tuple(sorted(self.get_config().items())))

    def __repr__(self):
        args = ", ".join(
            f"{k}={v!r}" for k, v in self.get_config().items()
            if v is not None and not (k == "regrow" and v is False)
        )
        return f"{type(self).__name__}({args})"


class SparsitySchedule:
    """A sparsity schedule with tfmot's calling convention, as a pruning rule.

    `schedule(step) -> (should_prune, sparsity)`: at each step for which it
    says so, the smallest-magnitude blocks of each matrix are pruned until
    `sparsity` of it is zero (masks still only lose ones, so a schedule that
    asks for less sparsity later prunes nothing more). Only the step of each
    call is asked about (with `steps_per_execution` > 1 an update step in
    between is not seen). `GradualPruning` wraps such callables in this
    class itself; the rule's state is empty (the schedule is a function of
    the step).

    Args:
        schedule: Callable `step -> (should_prune, sparsity)`, e.g. tfmot's
            `PolynomialDecay` (Zhu & Gupta's AGP) or `ConstantSparsity`.
            It is called with a Python integer; it may return Python values,
            NumPy values or eager tensors of any backend.

    Raises:
        TypeError: if `schedule` is not callable.

    Example:

    ```python
    agp = tfmot.sparsity.keras.PolynomialDecay(
        0.0, 0.9, begin_step=100, end_step=1000, frequency=50)
    model.fit(x, y, epochs=10,
              callbacks=[tf_gradual_prune.GradualPruning(agp)])
    ```
    """

    def __init__(self, schedule):
        if not callable(schedule):
            raise TypeError(
                "`schedule` must be callable as `schedule(step) -> "
                f"(should_prune, sparsity)`. Received: schedule={schedule!r} "
                f"(of type {type(schedule).__name__})"
            )
        self.schedule = schedule

    @property
    def begin_step(self):
        """The wrapped schedule's `begin_step` (0 if it has none)."""
        return getattr(self.schedule, "begin_step", 0)

    @property
    def end_step(self):
        """The wrapped schedule's `end_step` (`None` if it has none)."""
        return getattr(self.schedule, "end_step", None)

    def init(self, magnitudes):
        return {}

    def update(self, state, step, magnitudes, since=None):
        """Asks the schedule about `step`; returns `(update, state)` with a
        `MaskUpdate` of kind `"sparsity"` (the same share for every matrix)
        or `None`."""
        should_prune, sparsity = self.schedule(step)
        if not bool(np.asarray(should_prune)):
            return None, state
        count = len(magnitudes()) if callable(magnitudes) else len(magnitudes)
        return MaskUpdate("sparsity", [float(np.asarray(sparsity))] * count), state

    def __repr__(self):
        return f"{type(self).__name__}({self.schedule!r})"
