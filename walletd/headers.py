"""The names of walletd's own HTTP headers, as multidict `istr`s (aiohttp.hdrs has the
standard ones).

A header dict folds the case of every str name it is given, on each get and set; an
istr carries its folded form. Every request reads and writes a dozen headers, so its
names are made once, here (bench/README.md, round two).
"""

from __future__ import annotations

from multidict import istr

REQUEST_ID = istr("X-Request-ID")
API_KEY = istr("X-API-Key")
STREAM_ID = istr("X-Stream-ID")
ACCEL_BUFFERING = istr("X-Accel-Buffering")
RATELIMIT_LIMIT = istr("RateLimit-Limit")
RATELIMIT_REMAINING = istr("RateLimit-Remaining")
RATELIMIT_RESET = istr("RateLimit-Reset")
