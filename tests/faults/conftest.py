"""Fixtures for fault injection; the helpers themselves live in ``faultkit.py`` (import it by
that name: two ``conftest`` modules would shadow each other)."""

from __future__ import annotations

import pytest
from faultkit import Frozen, assert_clean_error, cli_subprocess, nonfinite_arrays, run_cli  # noqa: F401


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def frozen():
    return Frozen


@pytest.fixture
def clean_error():
    """:func:`assert_clean_error`, for test modules (helpers are reached through fixtures)."""
    return assert_clean_error
