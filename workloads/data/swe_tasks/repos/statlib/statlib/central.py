"""Measures of central tendency."""


def mean(values):
    """Arithmetic mean of a sequence of numbers."""
    values = list(values)
    return sum(values) / len(values)


def median(values):
    """Middle value (mean of the two middle values for an even count)."""
    values = sorted(values)
    if not values:
        raise ValueError("median of empty data")
    mid = len(values) // 2
    if len(values) % 2:
        return values[mid]
    return (values[mid - 1] + values[mid]) / 2
