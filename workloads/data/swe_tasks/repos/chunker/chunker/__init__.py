from chunker.core import chunks

__all__ = ["chunks"]
