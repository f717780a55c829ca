"""Process lifecycle state read by /ready and the stream handler."""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"


class Lifecycle:
    """Starting until the listener is up, ready while serving, draining on shutdown."""

    def __init__(self) -> None:
        self.phase = Phase.STARTING

    @property
    def accepting(self) -> bool:
        return self.phase is not Phase.DRAINING
