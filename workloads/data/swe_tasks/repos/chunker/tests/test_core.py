import pytest

from chunker import chunks


def test_even_split():
    assert chunks([1, 2, 3, 4], 2) == [[1, 2], [3, 4]]


def test_size_must_be_positive():
    with pytest.raises(ValueError):
        chunks([1], 0)
