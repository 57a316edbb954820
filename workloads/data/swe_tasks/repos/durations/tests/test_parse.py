import pytest

from durations import parse_duration


def test_single_units():
    assert parse_duration("90s") == 90
    assert parse_duration("5m") == 300
    assert parse_duration("2h") == 7200


def test_rejects_garbage():
    with pytest.raises(ValueError):
        parse_duration("soon")
