"""Argument checks, one set for every public function and class.

A wrong type raises `TypeError`, a wrong value `ValueError`; each message
names the argument, echoes the value and says what is allowed, e.g.
"`units` must be >= 1. Received: units=0".
"""

import math
import numbers


def check_int(name, value, low=None):
    """`value` as an `int`; `low` is the smallest allowed (None: any).

    Booleans are not integers here (`True` is a mistake, not a 1).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"`{name}` must be an integer. Received: {name}={value!r} "
            f"(of type {type(value).__name__})"
        )
    if low is not None and value < low:
        raise ValueError(f"`{name}` must be >= {low}. Received: {name}={value}")
    return int(value)


def check_float(name, value, low, high=None, high_inclusive=False):
    """`value` as a finite `float` in `[low, high)` (`[low, high]` with
    `high_inclusive`; `high=None`: no upper bound); `None` passes through."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{name}` must be a number. Received: {name}={value!r} "
            f"(of type {type(value).__name__})"
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite. Received: {name}={value}")
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if value < low or too_high:
        closing = "]" if high_inclusive else ")"
        allowed = f">= {low}" if high is None else f"in [{low}, {high}{closing}"
        raise ValueError(f"`{name}` must be {allowed}. Received: {name}={value}")
    return value


def check_choice(name, value, allowed, none_allowed=False):
    """`value` if it is one of `allowed` (or None, with `none_allowed`)."""
    if not (value in allowed or (none_allowed and value is None)):
        raise ValueError(
            f"`{name}` must be one of {allowed}{' or None' if none_allowed else ''}. "
            f"Received: {name}={value!r}"
        )
    return value


def check_bool(name, value):
    """`value` if it is `True` or `False` (not a truthy stand-in)."""
    if not isinstance(value, bool):
        raise TypeError(
            f"`{name}` must be True or False. Received: {name}={value!r} "
            f"(of type {type(value).__name__})"
        )
    return value
