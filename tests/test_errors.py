"""The error catalogue: SPEC §2 as classes, and every table derived from it."""

from __future__ import annotations

import subprocess
import sys

from walletd import errors

# SPEC §2, in its order: code -> HTTP statuses (none: only ever an SSE event).
SPEC = {
    "AUTH_REQUIRED": {401},
    "INVALID_API_KEY": {401},
    "FORBIDDEN": {403},
    "RATE_LIMITED": {429},
    "TOO_MANY_STREAMS": {429},
    "INVALID_WALLET": {400},
    "INVALID_EVENT_ID": {400},
    "INVALID_PARAMETER": {400},
    "WALLET_NOT_FOUND": set(),
    "DATA_FETCH_ERROR": set(),
    "SERVICE_UNAVAILABLE": {503},
    "STREAM_TIMEOUT": set(),
    "SERVER_SHUTDOWN": set(),
    "NOT_FOUND": {404},
    "METHOD_NOT_ALLOWED": {405},
    "REQUEST_TOO_LARGE": {414, 431},
    "INTERNAL_ERROR": {500},
}


def test_codes_and_http_statuses_are_those_of_the_spec_in_its_order():
    assert errors.ERROR_CODES == tuple(SPEC)
    by_code: dict[str, set[int]] = {code: set() for code in SPEC}
    for status, codes in errors.HTTP_ERRORS.items():
        for code in codes:
            by_code[code].add(status)
    assert by_code == SPEC


def test_resumable_codes_are_the_ones_that_end_a_stream_mid_history():
    assert set(errors.RESUMABLE_CODES) == {
        "DATA_FETCH_ERROR",
        "SERVICE_UNAVAILABLE",
        "STREAM_TIMEOUT",
        "SERVER_SHUTDOWN",
    }


def test_every_code_has_its_own_exit_status_and_subclasses_share_their_parents():
    statuses = list(errors.EXIT_STATUSES.values())
    assert len(set(statuses)) == len(statuses) == len(errors.ERROR_CODES)
    assert all(10 <= status <= 60 for status in statuses)  # clear of 0-2, 69, 130, 141
    assert errors.UnknownEventId.exit_status == errors.InvalidEventId.exit_status
    assert errors.RequestLineTooLarge.code == "REQUEST_TOO_LARGE"


def test_only_rate_limit_refusals_have_a_metric_reason():
    reasons = {c.code: c.rejection_reason for c in errors.error_classes() if c.rejection_reason}
    assert reasons == {"RATE_LIMITED": "request_window", "TOO_MANY_STREAMS": "stream_cap"}


def test_the_catalogue_and_the_client_import_no_server_piece():
    code = (
        "import sys, walletd.errors, walletd.client.stream\n"
        "bad = [m for m in sys.modules if m == 'aiohttp.web' or m.startswith("
        "('walletd.api', 'walletd.stream.handler', 'walletd.app'))]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
