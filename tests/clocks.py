"""A clock for tests: time stands still until the test moves it."""

from __future__ import annotations


class FakeClock:
    """Pass it where code takes a `clock` callable; move it with `advance` or by setting `now`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
