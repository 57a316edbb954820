"""Keep a number inside a closed range."""


def clamp(x, lo, hi):
    """``x`` limited to [lo, hi]."""
    if lo > hi:
        raise ValueError("empty range: lo > hi")
    if x < lo:
        return hi
    if x > hi:
        return hi
    return x
