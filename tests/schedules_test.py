import json
import random

import keras
import numpy as np
import pytest

from tf_gradual_prune import RampedThresholdSchedule


def reference_threshold(step, begin, ramp, end, freq, theta, phi):
    """Algorithm 1 of Narang et al., written out step by step."""
    eps = 0.0
    for t in range(step + 1):
        if begin < t < end and t % freq == 0:
            if t < ramp:
                eps = theta * (t - begin + 1) / freq
            else:
                eps = (theta * (ramp - begin + 1) + phi * (t - ramp + 1)) / freq
    return eps


def explicit(**overrides):
    kwargs = dict(
        begin_step=100,
        ramp_step=400,
        end_step=1000,
        frequency=50,
        start_slope=0.01,
        ramp_slope=0.02,
    )
    kwargs.update(overrides)
    return RampedThresholdSchedule(**kwargs)


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 0.0),
        (99, 0.0),
        (100, 0.0),  # begin_step itself is not an update
        (149, 0.0),
        (150, 0.01 * 51 / 50),  # first update
        (151, 0.01 * 51 / 50),  # held between updates
        (250, 0.01 * 151 / 50),  # mid-ramp
        (399, 0.01 * 251 / 50),
        (400, (0.01 * 301 + 0.02 * 1) / 50),  # at ramp_step: second branch
        (700, (0.01 * 301 + 0.02 * 301) / 50),
        (950, (0.01 * 301 + 0.02 * 551) / 50),  # last update
        (999, (0.01 * 301 + 0.02 * 551) / 50),
        (1000, (0.01 * 301 + 0.02 * 551) / 50),  # end_step: no update
        (5000, (0.01 * 301 + 0.02 * 551) / 50),  # constant after
    ],
)
def test_threshold_closed_form_at_boundaries(step, expected):
    assert explicit().threshold(step) == pytest.approx(expected, rel=1e-12)


def test_threshold_matches_algorithm_1_at_random_settings():
    rng = random.Random(7)
    for _ in range(200):
        begin = rng.randint(0, 300)
        ramp = begin + rng.randint(0, 300)
        end = ramp + rng.randint(1, 400)
        freq = rng.randint(1, 60)
        if not any(begin < t < end and t % freq == 0 for t in range(end)):
            continue
        theta, phi = rng.uniform(0, 0.1), rng.uniform(0, 0.2)
        schedule = RampedThresholdSchedule(
            begin, ramp, end, freq, start_slope=theta, ramp_slope=phi
        )
        for step in sorted({rng.randint(0, end + 50) for _ in range(8)}):
            assert schedule.threshold(step) == pytest.approx(
                reference_threshold(step, begin, ramp, end, freq, theta, phi),
                rel=1e-12,
                abs=1e-15,
            )


def test_updates_only_on_frequency_boundaries_inside_window():
    schedule = explicit(begin_step=10, ramp_step=30, end_step=90, frequency=7)
    previous = schedule.threshold(0)
    for step in range(1, 120):
        current = schedule.threshold(step)
        expected_update = 10 < step < 90 and step % 7 == 0
        assert schedule.is_update_step(step) == expected_update
        assert (current != previous) == expected_update, step
        assert current >= previous
        previous = current
    assert schedule.last_update_step == 84


def test_call_follows_tfmot_convention():
    schedule = explicit()
    for step in [0, 100, 150, 151, 400, 950, 1000, 1200]:
        should_update, threshold = schedule(step)
        assert bool(should_update) == schedule.is_update_step(step)
        assert float(threshold) == pytest.approx(schedule.threshold(step), rel=1e-6)


def test_call_of_calibrated_schedule_is_relative_to_quantile():
    begin_schedule = RampedThresholdSchedule(
        100, 400, 1000, 50, target_sparsity=0.9, calibration="begin"
    )
    _, relative = begin_schedule(999)
    theta, phi = begin_schedule.slopes(2.0)
    assert float(relative) * 2.0 == pytest.approx(
        begin_schedule.threshold(999, theta, phi), rel=1e-6
    )
    tracked = RampedThresholdSchedule(
        100, 400, 1000, 50, target_sparsity=0.9, calibration="track"
    )
    assert float(tracked(950)[1]) == pytest.approx(1.0)
    assert 0.0 < float(tracked(500)[1]) < 1.0


def test_ramp_slope_ratio_with_start_slope():
    schedule = explicit(ramp_slope=None, ramp_slope_ratio=2.0)
    assert schedule.slopes() == (0.01, 0.02)
    assert schedule.threshold(700) == explicit().threshold(700)


def test_calibration_is_the_paper_heuristic():
    schedule = RampedThresholdSchedule(
        100, 400, 1000, 50, target_sparsity=0.9, calibration="begin"
    )
    weights = np.random.default_rng(0).normal(size=(64, 32))
    theta, phi = schedule.calibrate(weights)
    q = np.quantile(np.abs(weights), 0.9)
    assert theta == pytest.approx(2 * q * 50 / (2 * 300 + 3 * 600))
    assert phi == pytest.approx(1.5 * theta)


@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.95])
@pytest.mark.parametrize("ratio", [1.5, 2.0])
def test_calibrated_threshold_ends_near_the_quantile(target, ratio):
    schedule = RampedThresholdSchedule(
        100, 400, 1000, 50, target_sparsity=target, ramp_slope_ratio=ratio,
        calibration="begin",
    )
    weights = np.random.default_rng(1).normal(size=(200, 100))
    q = np.quantile(np.abs(weights), target)
    final = schedule.threshold(2000, *schedule.calibrate(weights))
    # The last update is at 950, not 1000, and Algorithm 1 counts steps
    # inclusively: the documented gap between the final threshold and q.
    expected = (301 + ratio * 551) / (300 + ratio * 600)
    assert final / q == pytest.approx(expected)
    assert 0.9 < final / q <= 1.0
    reached = np.mean(np.abs(weights) < final)
    assert target - 0.05 < reached <= target


def test_paper_applies_the_paper_timing():
    schedule = RampedThresholdSchedule.paper(
        epochs=20, steps_per_epoch=50, target_sparsity=0.8, frequency=10
    )
    assert schedule.begin_step == 50
    assert schedule.ramp_step == 250
    assert schedule.end_step == 500
    assert schedule.frequency == 10
    assert schedule.target_sparsity == 0.8
    assert schedule.ratio == 1.5
    assert schedule.calibration_mode == "begin"
    # Long enough for the paper's 100 steps between updates.
    assert RampedThresholdSchedule.paper(20, 500).frequency == 100
    assert RampedThresholdSchedule.paper(20, 50).frequency == 450 // 20


def test_paper_rule_is_algorithm_1_with_the_paper_calibration():
    rng = np.random.default_rng(3)
    weights = rng.normal(size=(64, 96))
    schedule = RampedThresholdSchedule.paper(
        epochs=12, steps_per_epoch=250, target_sparsity=0.9, frequency=100
    )
    q = np.quantile(np.abs(weights), 0.9)
    theta = 2 * q * 100 / (2 * (750 - 250) + 3 * (1500 - 750))
    slopes = schedule.calibrate(weights)
    assert slopes == pytest.approx((theta, 1.5 * theta), rel=1e-12)
    for step in range(0, 3000, 37):
        assert schedule.threshold(step, *slopes) == pytest.approx(
            reference_threshold(step, 250, 750, 1500, 100, theta, 1.5 * theta),
            rel=1e-12, abs=0.0,
        )


def test_for_training_default_timing_and_frequency():
    schedule = RampedThresholdSchedule.for_training(
        epochs=10, steps_per_epoch=40, target_sparsity=0.8
    )
    assert (schedule.begin_step, schedule.ramp_step, schedule.end_step) == (120, 180, 280)
    assert schedule.frequency == 160 // 80
    assert schedule.calibration_mode == "geometric"
    updates = [t for t in range(400) if schedule.is_update_step(t)]
    assert len(updates) == 79  # 122, 124, ..., 278
    # A longer run spaces its 80 updates out ...
    assert RampedThresholdSchedule.for_training(20, 500).frequency == 4000 // 80
    # ... up to the paper's spacing, and then gets more updates.
    assert RampedThresholdSchedule.for_training(50, 1000).frequency == 100
    # The paper's rule keeps its every-100-steps spacing, and 20 updates
    # where the run is too short for that.
    assert RampedThresholdSchedule.paper(50, 1000).frequency == 100
    assert RampedThresholdSchedule.paper(10, 40).frequency == (200 - 40) // 20
    # Explicit settings still win.
    explicit_one = RampedThresholdSchedule.for_training(
        10, 40, frequency=20, calibration="track"
    )
    assert (explicit_one.frequency, explicit_one.calibration_mode) == (20, "track")
    # Steps on pruned matrices are scaled by default, not in the paper's rule.
    assert schedule.step_scale == schedules.DEFAULT_STEP_SCALE == "fan_in"
    assert RampedThresholdSchedule.for_training(10, 40, step_scale=None).step_scale is None
    assert RampedThresholdSchedule.paper(10, 40).step_scale is None
    with pytest.raises(ValueError, match="step_scale='auto'"):
        RampedThresholdSchedule.for_training(10, 40, step_scale="auto")


def test_for_training_runs_on_short_trainings():
    # 3 epochs of 10 steps: the paper's timing refuses it, ours prunes.
    schedule = RampedThresholdSchedule.for_training(3, 10, target_sparsity=0.8)
    assert schedule.last_update_step is not None
    for total in range(4, 200):
        RampedThresholdSchedule.for_training(1, total)
    with pytest.raises(ValueError, match="too short to prune.*3 optimizer steps"):
        RampedThresholdSchedule.for_training(1, 3)
    with pytest.raises(ValueError, match="epochs=3, steps_per_epoch=10.*for_training"):
        RampedThresholdSchedule.paper(epochs=3, steps_per_epoch=10)
    with pytest.raises(ValueError, match="frequency=50.*Use frequency <= 6"):
        RampedThresholdSchedule.for_training(3, 10, frequency=50)
    with pytest.raises(ValueError, match="epochs=0"):
        RampedThresholdSchedule.for_training(0, 10)


def test_spread_thresholds_follow_the_ramp_in_sparsity():
    schedule = RampedThresholdSchedule(
        100, 400, 1000, 50, target_sparsity=0.9, calibration="spread"
    )
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(80, 120))
    mask = np.ones(weights.shape, bool)
    previous, sparsities = [0.0], []
    for step in range(0, 1200):
        if not schedule.is_update_step(step):
            continue
        magnitudes = np.abs(weights * mask)
        previous = schedule.live_thresholds(step, [magnitudes], previous)
        mask &= magnitudes >= previous[0]
        sparsities.append(1 - mask.mean())
        wanted = 0.9 * schedule.ramp_fraction(step)
        assert sparsities[-1] == pytest.approx(wanted, abs=2 / weights.size)
        assert float(schedule(step)[1]) == pytest.approx(wanted, rel=1e-6)
    assert sparsities[-1] == pytest.approx(0.9, abs=1e-3)
    cuts = np.diff([0.0] + sparsities)
    assert np.all(cuts > 0)
    # Each update cuts at most the ramp's steepest share, φ freq over the
    # ramp's value at the last update (950).
    span = 301 + 1.5 * 551
    assert cuts.max() <= 0.9 * 1.5 * 50 / span + 2 / weights.size


def test_track_and_spread_land_on_the_target_differently():
    # A fixed, bell-shaped matrix: "track" raises the threshold linearly,
    # so it cuts more per update at the start; "spread" cuts evenly.
    rng = np.random.default_rng(1)
    magnitudes = np.abs(rng.normal(size=10_000))
    for mode in ("track", "spread"):
        schedule = RampedThresholdSchedule(
            0, 0, 500, 50, target_sparsity=0.8, ramp_slope_ratio=1.0,
            calibration=mode,
        )
        threshold = schedule.live_thresholds(450, [magnitudes], [0.0])[0]
        assert np.mean(magnitudes < threshold) == pytest.approx(0.8, abs=1e-3)
        half = schedule.live_thresholds(250, [magnitudes], [0.0])[0]
        share = np.mean(magnitudes < half)
        if mode == "spread":
            assert share == pytest.approx(0.8 * 251 / 451, abs=1e-3)
        else:
            assert share > 0.8 * 251 / 451 + 0.05


def test_live_thresholds_never_decrease_and_refuse_other_calibrations():
    schedule = RampedThresholdSchedule(0, 10, 20, 5, target_sparsity=0.5)
    assert schedule.live_thresholds(5, [np.ones(10)], [3.0]) == [3.0]
    begin = RampedThresholdSchedule(0, 10, 20, 5, target_sparsity=0.5, calibration="begin")
    with pytest.raises(ValueError, match="calibration='begin'"):
        begin.live_thresholds(5, [np.ones(10)], [0.0])


@pytest.mark.parametrize(
    "schedule",
    [
        explicit(),
        explicit(ramp_slope=None, ramp_slope_ratio=1.8),
        RampedThresholdSchedule(0, 10, 20, 5, target_sparsity=0.9),
        RampedThresholdSchedule(0, 10, 20, 5, target_sparsity=0.9, calibration="track"),
        RampedThresholdSchedule.for_training(10, 40, target_sparsity=0.95),
        RampedThresholdSchedule(
            0, 0, 20, 1, target_sparsity=0.5, ramp_slope_ratio=2.0,
            calibration="begin",
        ),
    ],
)
def test_serialisation_round_trip(schedule):
    config = schedule.get_config()
    assert RampedThresholdSchedule.from_config(config) == schedule
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(schedule)
    )
    assert isinstance(restored, RampedThresholdSchedule)
    assert restored.get_config() == config
    for step in (0, 7, 15, 100):
        assert float(restored(step)[1]) == float(schedule(step)[1])


def test_get_config_is_exactly_the_constructor_arguments():
    import inspect

    params = inspect.signature(RampedThresholdSchedule.__init__).parameters
    assert set(explicit().get_config()) == set(params) - {"self"}


BASE = dict(begin_step=10, ramp_step=20, end_step=40, frequency=5)


@pytest.mark.parametrize(
    "overrides, error, match",
    [
        (dict(ramp_step=5, start_slope=1, ramp_slope=1), ValueError,
         "`ramp_step` must be >= `begin_step`. Received: begin_step=10, ramp_step=5"),
        (dict(end_step=15, start_slope=1, ramp_slope=1), ValueError,
         "end_step=15"),
        (dict(frequency=-1, start_slope=1, ramp_slope=1), ValueError,
         "frequency=-1"),
        (dict(frequency=0, start_slope=1, ramp_slope=1), ValueError,
         "frequency=0"),
        (dict(frequency=50, start_slope=1, ramp_slope=1), ValueError,
         "No mask update would happen.*frequency=50"),
        (dict(begin_step=-3, start_slope=1, ramp_slope=1), ValueError,
         "begin_step=-3"),
        (dict(frequency=2.5, start_slope=1, ramp_slope=1), TypeError,
         "frequency=2.5"),
        (dict(begin_step="10", start_slope=1, ramp_slope=1), TypeError,
         "begin_step='10'"),
        (dict(target_sparsity=1.0), ValueError, r"in \[0.0, 1.0\).*target_sparsity=1.0"),
        (dict(target_sparsity=-0.1), ValueError, "target_sparsity=-0.1"),
        (dict(target_sparsity=float("nan")), ValueError, "target_sparsity=nan"),
        (dict(target_sparsity="0.9"), TypeError, "target_sparsity='0.9'"),
        (dict(target_sparsity=0.9, start_slope=1, ramp_slope=1), ValueError,
         "not both"),
        (dict(), ValueError, "Give either `target_sparsity` or `start_slope`"),
        (dict(start_slope=1), ValueError, "exactly one of `ramp_slope`"),
        (dict(start_slope=1, ramp_slope=2, ramp_slope_ratio=2), ValueError,
         "exactly one of `ramp_slope`"),
        (dict(start_slope=-1, ramp_slope=1), ValueError, "start_slope=-1.0"),
        (dict(target_sparsity=0.9, ramp_slope_ratio=0), ValueError,
         "ramp_slope_ratio=0"),
        (dict(target_sparsity=0.9, calibration="end"), ValueError,
         "calibration='end'"),
        (dict(start_slope=1, ramp_slope=1, calibration="begin"), ValueError,
         "only with `target_sparsity`"),
    ],
)
def test_bad_arguments(overrides, error, match):
    kwargs = dict(BASE)
    kwargs.update(overrides)
    with pytest.raises(error, match=match):
        RampedThresholdSchedule(**kwargs)


def test_threshold_argument_errors():
    calibrated = RampedThresholdSchedule(**BASE, target_sparsity=0.9)
    with pytest.raises(ValueError, match="start_slope=None"):
        calibrated.threshold(20)
    with pytest.raises(ValueError, match="do not pass others"):
        explicit().threshold(20, 0.1, 0.2)
    with pytest.raises(ValueError, match="step` must be >= 0. Received: step=-1"):
        explicit().threshold(-1)
    with pytest.raises(ValueError, match="target_sparsity=None"):
        explicit().calibrate(np.ones((2, 2)))
    with pytest.raises(ValueError, match="1 of them NaN"):
        calibrated.calibrate(np.array([1.0, np.nan]))


def test_geometric_removes_the_same_share_of_survivors_per_update():
    schedule = RampedThresholdSchedule(
        0, 0, 1000, 50, target_sparsity=0.9, ramp_slope_ratio=1.0,
        calibration="geometric",
    )
    weights = np.random.default_rng(2).normal(size=(200, 150))
    mask = np.ones(weights.shape, bool)
    previous, kept = [0.0], [1.0]
    for step in range(1, 1000):
        if not schedule.is_update_step(step):
            continue
        magnitudes = np.abs(weights * mask)
        previous = schedule.live_thresholds(step, [magnitudes], previous)
        mask &= magnitudes >= previous[0]
        kept.append(mask.mean())
        goal = 1 - 0.1 ** schedule.ramp_fraction(step)
        assert 1 - kept[-1] == pytest.approx(goal, abs=2 / weights.size)
        assert float(schedule(step)[1]) == pytest.approx(goal, rel=1e-6)
    assert kept[-1] == pytest.approx(0.1, abs=1e-3)
    # Equal ramp steps after the first: equal shares of the survivors go.
    ratios = np.array(kept[2:]) / np.array(kept[1:-1])
    np.testing.assert_allclose(ratios, ratios[0], atol=1e-3)
    assert ratios[0] == pytest.approx(0.1 ** (50 / 951), abs=1e-3)


# --- The pruning-rule protocol (init / update / MaskUpdate) ---------------------

from tf_gradual_prune import schedules


def calibrated(calibration):
    return RampedThresholdSchedule(100, 400, 1000, 50, target_sparsity=0.9,
                                   calibration=calibration)


class Counting:
    """`magnitudes` for `update`, counting how often the rule reads them."""

    def __init__(self, arrays):
        self.arrays, self.calls = arrays, 0

    def __call__(self):
        self.calls += 1
        return self.arrays


def test_rule_updates_exactly_at_update_steps_with_the_closed_form():
    schedule = explicit()
    magnitudes = Counting([np.ones((4, 4)), np.ones((2, 3))])
    state = schedule.init(magnitudes.arrays)
    assert state == {"slopes": None, "thresholds": [0.0, 0.0]}
    updates = {}
    for step in range(1100):
        update, state = schedule.update(state, step, magnitudes)
        if update is not None:
            assert update.kind == "threshold"
            updates[step] = update.values
    assert sorted(updates) == [t for t in range(1100) if schedule.is_update_step(t)]
    for step, values in updates.items():
        expected = reference_threshold(step, 100, 400, 1000, 50, 0.01, 0.02)
        assert values == [pytest.approx(expected)] * 2
    assert magnitudes.calls == 0  # explicit slopes never read the weights
    assert state["thresholds"] == updates[max(updates)]


def test_rule_sees_an_update_step_skipped_between_calls():
    schedule = explicit()
    state = schedule.init([np.ones(3)])
    update, state = schedule.update(state, 152, lambda: [np.ones(3)], since=148)
    assert update.values == [pytest.approx(schedule.threshold(150))]
    update, _ = schedule.update(state, 156, lambda: [np.ones(3)], since=152)
    assert update is None


def test_begin_calibration_reads_the_weights_once_and_warns_when_late():
    schedule = calibrated(calibration="begin")
    rng = np.random.default_rng(0)
    magnitudes = Counting([np.abs(rng.normal(size=(20, 20)))])
    state = schedule.init(magnitudes.arrays)
    for step in range(0, schedule.end_step + 10):
        _, state = schedule.update(state, step, magnitudes)
    assert magnitudes.calls == 1
    assert state["slopes"] == [list(schedule.calibrate(magnitudes.arrays[0]))]
    assert json.loads(json.dumps(state)) == state
    with pytest.warns(UserWarning, match="calibrated now"):
        schedule.update(schedule.init([np.ones(3)]), schedule.begin_step + 7,
                        lambda: [np.ones(3)])


@pytest.mark.parametrize("calibration", ["track", "spread", "geometric"])
def test_live_calibrations_read_the_weights_at_update_steps_only(calibration):
    schedule = calibrated(calibration=calibration)
    magnitudes = Counting([np.linspace(0, 1, 100)])
    state = schedule.init(magnitudes.arrays)
    updates = 0
    for step in range(schedule.end_step + 10):
        update, state = schedule.update(state, step, magnitudes)
        updates += update is not None
    assert magnitudes.calls == updates > 0


def test_mask_update_checks_its_kind():
    assert schedules.MaskUpdate("sparsity", [np.float32(0.5)]) == ("sparsity", [0.5], False)
    with pytest.raises(ValueError, match="kind='fraction'"):
        schedules.MaskUpdate("fraction", [0.5])


def test_sparsity_schedule_wraps_a_tfmot_style_callable():
    asked = []

    def agp_like(step):
        asked.append(step)
        return step % 10 == 0, np.float32(step / 100)

    agp_like.begin_step, agp_like.end_step = 5, 90
    rule = schedules.SparsitySchedule(agp_like)
    assert (rule.begin_step, rule.end_step) == (5, 90)
    assert rule.init([np.ones(2), np.ones(3)]) == {}
    update, state = rule.update({}, 20, lambda: [np.ones(2), np.ones(3)])
    assert update == ("sparsity", [pytest.approx(0.2)] * 2, False) and state == {}
    assert rule.update({}, 21, lambda: []) == (None, {})
    assert asked == [20, 21]
    plain = schedules.SparsitySchedule(lambda step: (False, 0.0))
    assert (plain.begin_step, plain.end_step) == (0, None)
    with pytest.raises(TypeError, match="schedule=3"):
        schedules.SparsitySchedule(3)


def test_regrow_is_a_serialised_boolean_that_reaches_the_updates():
    schedule = RampedThresholdSchedule(0, 10, 20, 5, target_sparsity=0.9, regrow=True)
    assert RampedThresholdSchedule.from_config(schedule.get_config()) == schedule
    assert "regrow=True" in repr(schedule)
    assert "regrow" not in repr(RampedThresholdSchedule(0, 10, 20, 5, target_sparsity=0.9))
    update, _ = schedule.update(schedule.init([np.ones(4)]), 5, lambda: [np.arange(4.0)])
    assert update.regrow
    with pytest.raises(TypeError, match="regrow=1"):
        RampedThresholdSchedule(0, 10, 20, 5, target_sparsity=0.9, regrow=1)


def test_fan_in_shrink_counts_the_inputs_live_outputs_lost():
    full = np.ones((8, 12), bool)
    assert schedules.fan_in_shrink(full) == 1.0
    assert schedules.fan_in_shrink(np.zeros((8, 12), bool)) == 1.0
    half = full.copy()
    half[::2] = False  # every output keeps 4 of its 8 inputs
    assert schedules.fan_in_shrink(half) == 2.0
    # Whole units pruned: the dead outputs do not count, the live ones lost
    # the 3 dead units' rows of the recurrent kernel (8 units, 4 gates).
    units = np.ones((8, 32), bool)
    units[[1, 4, 6]] = False
    units[:, [g * 8 + u for g in range(4) for u in (1, 4, 6)]] = False
    assert schedules.fan_in_shrink(units) == pytest.approx(8 / 5)
    # A conv kernel: the inputs are every axis but the last.
    conv = np.ones((3, 3, 4, 6), bool)
    conv[0] = False
    assert schedules.fan_in_shrink(conv) == pytest.approx(3 / 2)


def test_step_scale_is_a_serialised_choice_with_capped_factors():
    schedule = RampedThresholdSchedule(0, 10, 20, 5, target_sparsity=0.9, step_scale="fan_in")
    assert RampedThresholdSchedule.from_config(schedule.get_config()) == schedule
    assert "step_scale='fan_in'" in repr(schedule)
    sparse = np.zeros((100, 300), bool)
    sparse[0, :] = True  # one input left of 100: 100x
    sparse[:2, :150] = True  # half the outputs keep 2: fewer than 100x overall
    assert schedule.step_scales([np.ones((4, 4), bool), sparse]) == pytest.approx(
        [1.0, 100 * 300 / 450])
    sparser = np.zeros((1000, 2), bool)
    sparser[0] = True
    assert schedule.step_scales([sparser]) == [schedules.MAX_STEP_SCALE]
    plain = RampedThresholdSchedule(0, 10, 20, 5, target_sparsity=0.9)
    assert plain.step_scale is None and plain.step_scales([sparser]) == [1.0]
    with pytest.raises(ValueError, match="step_scale='density'"):
        RampedThresholdSchedule(0, 10, 20, 5, target_sparsity=0.9, step_scale="density")


@pytest.mark.parametrize(
    "shapes, target",
    [
        ([(12, 256), (64, 256)], 0.98),
        ([(1, 256), (64, 256)], 0.98),  # the small kernel ends up dense
        ([(1, 4), (64, 256), (64, 256)], 0.5),
        ([(40, 384), (128, 384), (256, 384), (128, 384)], 0.9),
        ([(3, 3, 8, 16), (16, 10)], 0.7),
    ],
)
def test_erk_allocation_keeps_the_group_at_the_target(shapes, target):
    def allocate(shapes, target, allocation):
        return schedules.allocate([np.ones(s) for s in shapes], target, allocation)
    sizes = np.array([np.prod(s) for s in shapes], float)
    targets = np.array(allocate(shapes, target, "erk"))
    assert np.all((targets >= 0) & (targets < 1))
    assert np.sum(targets * sizes) / sizes.sum() == pytest.approx(target, abs=1e-9)
    kept = (1 - targets) * sizes
    free = targets > 0
    # Where no matrix is dense, the kept share follows sum(shape) / prod(shape).
    density = (1 - targets[free]) / (np.array([sum(s) for s in shapes])[free] / sizes[free])
    assert np.allclose(density, density[0])
    assert kept.sum() == pytest.approx((1 - target) * sizes.sum())
    assert allocate(shapes, target, "uniform") == [target] * len(shapes)


def test_erk_allocation_of_one_matrix_or_no_sparsity_is_uniform():
    def allocate(shapes, target, allocation):
        return schedules.allocate([np.ones(s) for s in shapes], target, allocation)
    assert allocate([(64, 256)], 0.9, "erk") == [0.9]
    assert allocate([(1, 4), (64, 256)], 0.0, "erk") == [0.0, 0.0]
    with pytest.raises(ValueError, match="allocation='er'"):
        allocate([(2, 2)], 0.5, "er")
    with pytest.raises(ValueError, match="target_sparsity=1.0"):
        allocate([(2, 2)], 1.0, "erk")


def test_allocation_is_serialised_validated_and_only_with_a_target():
    schedule = RampedThresholdSchedule(0, 10, 20, 5, target_sparsity=0.9, allocation="erk")
    assert RampedThresholdSchedule.from_config(schedule.get_config()) == schedule
    assert "allocation='erk'" in repr(schedule)
    assert schedule.allocation_mode == "erk"
    plain = RampedThresholdSchedule(0, 10, 20, 5, target_sparsity=0.9)
    assert "allocation" not in repr(plain)
    assert plain.allocation_mode == schedules.DEFAULT_ALLOCATION
    assert explicit().allocation_mode is None
    with pytest.raises(ValueError, match="allocation='even'"):
        RampedThresholdSchedule(0, 10, 20, 5, target_sparsity=0.9, allocation="even")
    with pytest.raises(ValueError, match="only with `target_sparsity`"):
        explicit(allocation="erk")


@pytest.mark.parametrize("calibration", ["begin", "track", "spread", "geometric"])
def test_every_calibration_aims_each_matrix_at_its_allocated_share(calibration):
    rng = np.random.default_rng(0)
    matrices = [rng.normal(size=(2, 64)), rng.normal(size=(32, 64))]
    magnitudes = [np.abs(m) for m in matrices]
    schedule = RampedThresholdSchedule(
        0, 10, 20, 2, target_sparsity=0.95, calibration=calibration, allocation="erk")
    targets = schedule.matrix_targets(magnitudes)
    assert targets[0] < 0.95 < targets[1]
    state = schedule.init(magnitudes)
    for step in range(21):
        _, state = schedule.update(state, step, lambda: magnitudes)
    final = [np.mean(m < t) for m, t in zip(magnitudes, state["thresholds"])]
    tolerance = 0.06 if calibration == "begin" else 0.01
    for got, wanted in zip(final, targets):
        assert got == pytest.approx(wanted, abs=tolerance)


def test_lamp_allocation_prunes_the_lowest_lamp_scores_of_the_group():
    rng = np.random.default_rng(3)
    matrices = [np.abs(rng.normal(size=(3, 8))), np.abs(rng.standard_t(2, size=(6, 8)))]
    target = 0.75

    def scores(values):  # Lee et al.'s definition, written out weight by weight
        flat = values.ravel()
        return [w * w / sum(v * v for v in flat if v >= w) for w in flat]

    everything = sorted((s, i) for i, m in enumerate(matrices) for s in scores(m))
    pruned = int(round(target * sum(m.size for m in matrices)))
    counts = [sum(1 for _, i in everything[:pruned] if i == j) for j in range(2)]
    shares = schedules.allocate(matrices, target, "lamp")
    assert [round(s * m.size) for s, m in zip(shares, matrices)] == counts
    # Scale-free per matrix: a matrix's units do not move the shares.
    assert schedules.allocate([matrices[0] * 100, matrices[1]], target, "lamp") == shares
    # Pruned zeros score lowest: they stay inside the pruned share.
    zeroed = [np.where(matrices[0] < np.quantile(matrices[0], 0.5), 0, matrices[0]),
              matrices[1]]
    assert schedules.allocate(zeroed, target, "lamp")[0] >= 0.5
