"""Feature flags that change without a deployment (SPEC §6).

The environment's FEATURE_* values are the defaults; FEATURES_FILE, a file of
`FEATURE_NAME=value` lines, overrides them and is re-read on SIGHUP. Readers take one
`Features` snapshot and keep it (a stream keeps the flags it started with); a reload
swaps the whole snapshot at once or, when the file is bad, keeps the old one.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from walletd.config import Settings
from walletd.env import ConfigError, EnvReader

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Features:
    progress_events: bool
    demo_page: bool


FLAGS = ("FEATURE_PROGRESS_EVENTS", "FEATURE_DEMO_PAGE")


def read_features_file(path: str) -> dict[str, str]:
    """`NAME=value` lines; blank lines and `#` comments skipped. Raises OSError, and
    ValueError for a line that is not an assignment."""
    out: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}:{number}: expected NAME=value")
        out[name.strip()] = value.strip()
    return out


def load_features(settings: Settings) -> Features:
    """The flags now. Raises ConfigError naming every bad value or name, ValueError for
    a line that is not an assignment, OSError for the file."""
    overrides = read_features_file(settings.features_file) if settings.features_file else {}
    reader = EnvReader(overrides)
    features = Features(
        progress_events=reader.flag("FEATURE_PROGRESS_EVENTS", settings.feature_progress_events),
        demo_page=reader.flag("FEATURE_DEMO_PAGE", settings.feature_demo_page),
    )
    for name in overrides:
        if name not in FLAGS:
            reader.problems.append(f"{name}: not a feature flag (known: {', '.join(FLAGS)})")
    reader.raise_if_problems()
    return features


class FeatureFlags:
    """The live flags of one process."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.current = load_features(settings)

    def reload(self) -> bool:
        """Re-read FEATURES_FILE; on any problem keep the flags as they are."""
        try:
            new = load_features(self._settings)
        except (OSError, ValueError, ConfigError) as exc:
            log.error("features_reload_failed", extra={"error": str(exc)})
            return False
        changed = {k: v for k, v in asdict(new).items() if asdict(self.current)[k] != v}
        self.current = new
        log.info("features_reloaded", extra={"changed": changed})
        return True
