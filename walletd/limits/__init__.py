"""Per-subject request limits and concurrent-stream caps, in memory or in Redis (SPEC §3)."""

from walletd.limits.model import Lease, Verdict
from walletd.limits.resilient import Limits

__all__ = ["Lease", "Limits", "Verdict"]
