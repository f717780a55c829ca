"""What a test does when something it needs is missing: skip, except in CI, where it fails."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """CI=true: the CI run (.ci/run), where nothing may be skipped for want of a tool."""
    return os.environ.get("CI", "").strip().lower() == "true"


def missing(message: str) -> NoReturn:
    """Skip the test for want of what `message` names; in CI, fail it instead."""
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
