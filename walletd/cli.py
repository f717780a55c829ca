"""The `walletd` command: serve | check-config."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from walletd import __version__
from walletd.app import create_app
from walletd.config import ConfigError, Settings

log = logging.getLogger("walletd")

# Exit statuses: systemd's Restart=on-failure should not loop on a bad configuration.
EXIT_CONFIG = 78  # EX_CONFIG


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="walletd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"walletd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="listen address (default: HOST, or 0.0.0.0)")
    serve.add_argument("--port", type=int, help="listen port (default: PORT, or 8080)")
    commands.add_parser("check-config", help="print effective settings, secrets masked")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"walletd: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        print(json.dumps(settings.masked(), indent=2, sort_keys=True))
        return 0
    return serve(settings, host=args.host, port=args.port)


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> int:
    from walletd.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    try:
        app = create_app(settings)
    except ConfigError as exc:
        log.critical("invalid_configuration", extra={"problems": exc.problems})
        return EXIT_CONFIG
    host = host or settings.host
    port = settings.port if port is None else port
    log.info("server_starting", extra={"host": host, "port": port, "version": __version__})
    web.run_app(
        app,
        host=host,
        port=port,
        # Streams end with SERVER_SHUTDOWN in on_shutdown; this only bounds stragglers.
        shutdown_timeout=settings.shutdown_grace_s,
        handler_cancellation=True,  # a client that leaves cancels its handler at once
        print=None,
        access_log=logging.getLogger("walletd.access"),
    )
    return 0
