import pytest

from rangeutil import clamp


def test_inside_is_unchanged():
    assert clamp(5, 0, 10) == 5


def test_above_is_hi():
    assert clamp(11, 0, 10) == 10


def test_empty_range_raises():
    with pytest.raises(ValueError):
        clamp(1, 2, 1)
