"""URL slugs from titles."""

import re

_NOT_WORD = re.compile(r"[^A-Za-z0-9]+")


def slugify(title: str) -> str:
    """'Hello, World!' -> 'hello-world': words joined by single dashes, no leading or trailing dash."""
    return _NOT_WORD.sub("-", title).strip("-")
