import pytest

from statlib import mean, median


def test_mean_of_numbers():
    assert mean([1, 2, 3, 4]) == 2.5


def test_median_even_and_odd():
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 3, 2]) == 2.5


def test_median_empty_raises():
    with pytest.raises(ValueError):
        median([])
