from rangeutil.clamp import clamp

__all__ = ["clamp"]
