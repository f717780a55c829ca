# Names vulture reports as unused that something outside walletd's own calls reads.
# Parsed by vulture (never run): vulture walletd .ci/vulture_allowlist.py
# ruff: noqa
_ = object()

# Flags the logging module reads (observability/logs.py sets them off, so no record
# pays for caller, thread or process lookups).
_._srcfile
_.logMultiprocessing
_.logProcesses
_.logThreads
# prometheus-client calls describe() on a custom collector at registration.
_.describe
# Part of the breaker's snapshot, read by tests and shown in logs.
_.recent_failures
# Demo wallets the README names for trying walletd and for the benchmarks.
LARGE_DEMO_WALLET
EMPTY_DEMO_WALLET
# html.parser.HTMLParser callbacks (tests/test_demo_page.py).
_.handle_starttag
_.handle_endtag
_.handle_data
# A pytest fixture, used by naming it as a parameter.
sentry_cleanup
# aiohttp reads these of a response it sends (tests/fake_helius.py truncates bodies).
_.content_length
# Limits.backend: which limiter serves new calls, asserted by the Redis fallback tests.
_.backend
# The fake RPC provider's request log records what each call asked for (tests read the
# fields they need).
_.pagination_token
# aiohttp's StreamWriter reads these after stream/response.py `write_chunk` sets them.
_._headers_written
_.output_size
