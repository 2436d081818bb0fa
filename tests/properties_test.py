"""Properties of schedules and masks, over generated settings (hypothesis)."""

import numpy as np
import pytest
import tensorflow as tf

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings
from hypothesis import strategies as st

from tf_gradual_prune import RampedThresholdSchedule, masking


@st.composite
def schedules(draw, calibrated=False):
    begin = draw(st.integers(0, 200))
    ramp = begin + draw(st.integers(0, 200))
    end = ramp + draw(st.integers(1, 300))
    frequency = draw(st.integers(1, 50))
    hypothesis.assume(any(begin < t < end and t % frequency == 0
                          for t in range(begin + 1, end)))
    if calibrated:
        return RampedThresholdSchedule(
            begin, ramp, end, frequency,
            target_sparsity=draw(st.floats(0.5, 0.97)),
            ramp_slope_ratio=draw(st.floats(1.0, 3.0)),
            calibration="begin",
        )
    return RampedThresholdSchedule(
        begin, ramp, end, frequency,
        start_slope=draw(st.floats(0, 1)), ramp_slope=draw(st.floats(0, 2)),
    )


@settings(max_examples=60, deadline=None)
@given(schedules())
def test_threshold_never_decreases_and_changes_only_at_updates(schedule):
    previous = 0.0
    for step in range(schedule.end_step + 2 * schedule.frequency):
        current = schedule.threshold(step)
        assert current >= previous
        if current != previous:
            assert schedule.is_update_step(step)
            assert schedule.begin_step < step < schedule.end_step
            assert step % schedule.frequency == 0
        previous = current
    assert schedule.threshold(10**7) == schedule.threshold(schedule.end_step)


@settings(max_examples=60, deadline=None)
@given(schedules(calibrated=True), st.integers(0, 2**31 - 1))
def test_calibrated_schedule_on_static_random_matrix_lands_near_target(schedule, seed):
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(64, 48))
    q = np.quantile(np.abs(weights), schedule.target_sparsity)
    final = schedule.threshold(schedule.end_step, *schedule.calibrate(weights))
    begin, ramp, end, f, r = (schedule.begin_step, schedule.ramp_step,
                              schedule.end_step, schedule.frequency, schedule.ratio)
    last = schedule.last_update_step
    span = (ramp - begin) + r * (end - ramp)
    # Algorithm 1 at the last update against the heuristic's end_step:
    if last < ramp:
        expected = (last - begin + 1) / span
    else:
        expected = ((ramp - begin + 1) + r * (last - ramp + 1)) / span
    assert final / q == pytest.approx(expected, rel=1e-9)
    # ... which is within one update's increment (plus Algorithm 1's +1) of q,
    # so on long enough ramps the sparsity lands near the target.
    assert 1 - (r * f + f) / span - 1e-9 <= final / q <= 1 + (1 + r) / span + 1e-9
    if span >= 50 * max(f, 1) * max(r, 1):
        reached = float(np.mean(np.abs(weights) < final))
        assert reached == pytest.approx(schedule.target_sparsity, abs=0.05)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 20), st.integers(1, 12),
    st.sampled_from([1, 2, 4, 16, (1, 3), (2, 4), (1, 16)]),
    st.lists(st.floats(0.0, 2.0), min_size=1, max_size=6), st.integers(0, 2**31 - 1),
)
def test_masks_only_lose_ones_and_blocks_stay_whole(inputs, outputs, block, thresholds, seed):
    rng = np.random.default_rng(seed)
    rows, cols = block if isinstance(block, tuple) else (block, 1)
    mask = np.ones((inputs, outputs), bool)
    for threshold in sorted(thresholds, key=lambda _: rng.random()):
        weights = rng.normal(size=(inputs, outputs)) * mask  # pruned stay zero
        weights += rng.normal(size=weights.shape) * 0.1 * ~mask  # ... or drift
        scores = masking.block_magnitudes(weights, block)
        assert scores.shape == (-(-inputs // rows), -(-outputs // cols))
        keep = masking.expand_blocks(scores >= threshold, block, weights.shape)
        new = mask & keep
        assert not np.any(new & ~mask)  # never regrows
        for start in range(0, inputs, rows):
            for first in range(0, outputs, cols):
                chunk = new[start:start + rows, first:first + cols]
                assert chunk.all() or not chunk.any()
        mask = new


@settings(max_examples=30, deadline=None)
@given(schedules(), st.integers(0, 400))
def test_call_agrees_with_threshold(schedule, step):
    should, threshold = schedule(tf.constant(step))
    assert bool(should) == schedule.is_update_step(step)
    assert float(threshold) == pytest.approx(schedule.threshold(step), rel=1e-5, abs=1e-7)
