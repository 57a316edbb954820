"""Shared fixtures: the embedded tiny model and a helper to run one server per test module."""

from __future__ import annotations

import pytest

from continuum.serve import models


@pytest.fixture(scope="session")
def tiny_model() -> str:
    return str(models.build("tiny"))
