"""Fixed-size chunks of a list."""


def chunks(items, size):
    """Consecutive pieces of ``items`` with ``size`` elements each; the last one may be shorter."""
    if size < 1:
        raise ValueError("size must be at least 1")
    return [items[i:i + size] for i in range(0, len(items) - size + 1, size)]
