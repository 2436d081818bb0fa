"""The argument checks: TypeError for a wrong type, ValueError for a wrong
value, the argument and the value named."""

import numpy as np
import pytest

from tf_gradual_prune import checks


def test_integers_of_any_kind_pass_and_come_back_as_int():
    assert checks.check_int("n", np.int64(3), 1) == 3
    assert type(checks.check_int("n", np.int32(0))) is int


@pytest.mark.parametrize("value", [True, 1.0, "1", None])
def test_what_is_not_an_integer_is_a_type_error(value):
    with pytest.raises(TypeError, match=rf"`n` must be an integer\. Received: n={value!r}"):
        checks.check_int("n", value, 1)


def test_an_integer_below_the_bound_is_a_value_error():
    with pytest.raises(ValueError, match=r"`n` must be >= 1\. Received: n=0"):
        checks.check_int("n", 0, 1)


@pytest.mark.parametrize("value, error, match", [
    (True, TypeError, "must be a number"),
    ("0.5", TypeError, "must be a number"),
    (float("nan"), ValueError, "must be finite"),
    (1.0, ValueError, r"must be in \[0, 1\)\. Received: x=1.0"),
    (-0.1, ValueError, r"must be in \[0, 1\)"),
])
def test_floats_outside_their_range_or_of_another_type_are_refused(value, error, match):
    with pytest.raises(error, match=match):
        checks.check_float("x", value, 0, 1)


def test_float_bounds_and_none():
    assert checks.check_float("x", 1, 0, 1, high_inclusive=True) == 1.0
    assert checks.check_float("x", None, 0) is None
    assert checks.check_float("x", 1e9, 0) == 1e9


def test_choices_and_booleans():
    assert checks.check_choice("mode", "a", ("a", "b")) == "a"
    assert checks.check_choice("mode", None, ("a",), none_allowed=True) is None
    with pytest.raises(ValueError,
                       match=r"`mode` must be one of \('a', 'b'\)\. Received: mode='c'"):
        checks.check_choice("mode", "c", ("a", "b"))
    assert checks.check_bool("flag", False) is False
    with pytest.raises(TypeError, match="`flag` must be True or False. Received: flag=1"):
        checks.check_bool("flag", 1)
