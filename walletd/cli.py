"""The `walletd` command: serve | check-config | keys | stream."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

from aiohttp import web

from walletd import __version__
from walletd.app import create_app, drain, reload
from walletd.appkeys import METRICS, STREAMS
from walletd.auth import cli as keys_cli
from walletd.client import stream as stream_cli
from walletd.config import Settings
from walletd.env import ConfigError
from walletd.features import load_features
from walletd.observability.logs import AccessLogger, configure_logging
from walletd.observability.metrics import metrics_only_app
from walletd.observability.sentry import init_sentry
from walletd.ops import sdnotify

log = logging.getLogger("walletd")

# Exit statuses: systemd's Restart=on-failure should not loop on a bad configuration.
EXIT_CONFIG = 78  # EX_CONFIG
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: the listen address could not be bound
# Requests still in flight once the drain is over (streams are gone by then: ended or cut)
# get this long before they are cancelled, so the exit stays close to SHUTDOWN_GRACE.
STRAGGLERS_S = 1.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="walletd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"walletd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="listen address (default: HOST, or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default: PORT, or 8080)")
    check = commands.add_parser(
        "check-config", help="print the effective settings as NAME=value, secrets masked"
    )
    check.add_argument("--json", action="store_true", help="one JSON object keyed by NAME")
    keys_cli.add_parser(commands)
    stream_cli.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "stream":  # a client: it has no server settings to load
        return stream_cli.run(args)
    try:
        settings = Settings.from_env()
        if args.command != "keys":
            load_features(settings)  # a bad FEATURES_FILE is a configuration problem too
    except (ConfigError, OSError, ValueError) as exc:
        print(f"walletd: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        if args.json:
            print(json.dumps(settings.masked_env(), indent=2))
        else:
            print("\n".join(settings.env_lines()))
        for warning in settings.warnings():
            print(f"walletd: warning: {warning}", file=sys.stderr)
        return 0
    if args.command == "keys":
        return keys_cli.run(args, settings)
    return serve(settings, host=args.host, port=args.port)


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> int:
    configure_logging(settings.log_level, settings.log_format)
    host = host or settings.host
    for warning in settings.warnings(host=host):
        log.warning("config_warning", extra={"warning": warning})
    init_sentry(settings)
    try:
        app = create_app(settings)
    except ConfigError as exc:
        log.critical("config_invalid", extra={"error": str(exc)})
        return EXIT_CONFIG
    port = settings.port if port is None else port
    try:
        with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
            runner.run(_serve(app, host, port, settings))
    except OSError as exc:
        log.critical("bind_failed", extra={"host": host, "port": port, "error": str(exc)})
        return EXIT_UNAVAILABLE
    return 0


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop (the default on Linux: less CPU per request and per write, bench/README.md)
    or the stdlib loop (WALLETD_LOOP=asyncio), the escape hatch if uvloop misbehaves."""
    if name == "uvloop":
        import uvloop  # a Linux-only dependency: imported only when chosen

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def _first_then_at_once(stop: asyncio.Event, signum: int) -> None:
    """The first SIGTERM/SIGINT drains (SPEC §5); a second one exits at once, as an
    operator who sends it twice means."""
    if not stop.is_set():
        stop.set()
        return
    log.warning("second_signal_exit", extra={"signal": signal.Signals(signum).name})
    logging.shutdown()  # flush the log line: os._exit skips every cleanup
    os._exit(128 + signum)


async def _serve(app: web.Application, host: str, port: int, settings: Settings) -> None:
    """Bind, announce, wait for SIGTERM/SIGINT, drain with the listener open (a load
    balancer must see `/ready` turn 503, not a refused connection), then stop."""
    runner = web.AppRunner(
        app,
        shutdown_timeout=STRAGGLERS_S,
        handler_cancellation=True,  # a client that leaves cancels its handler at once
        access_log=logging.getLogger("walletd.access"),
        access_log_class=AccessLogger,
    )
    await runner.setup()
    cleanups: list[web.AppRunner] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _first_then_at_once, stop, signum)
    reloads: set[asyncio.Task[None]] = set()

    async def reload_notified() -> None:
        with sdnotify.reloading():
            await reload(app)

    def on_sighup() -> None:
        task = loop.create_task(reload_notified())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        if settings.metrics_port is not None:
            # Loopback only and without keys: for a Prometheus on this machine.
            metrics_runner = web.AppRunner(metrics_only_app(app[METRICS]), access_log=None)
            await metrics_runner.setup()
            cleanups.append(metrics_runner)
            await web.TCPSite(metrics_runner, "127.0.0.1", settings.metrics_port).start()
        # Everything built so far (modules, app, routes) lives as long as the process:
        # out of the GC's generations, full collections stay short (stream latency p99).
        gc.collect()
        gc.freeze()
        bound = [f"{a[0]}:{a[1]}" for a in runner.addresses]
        log.info(
            "server_started",
            extra={
                "listen": bound,
                "version": __version__,
                "loop": type(loop).__module__.partition(".")[0],
            },
        )
        sdnotify.notify("READY=1", f"STATUS=serving on {', '.join(bound)}")
        await stop.wait()
        sdnotify.notify("STOPPING=1", "STATUS=draining")
        log.info("server_stopping", extra={"open_streams": len(app[STREAMS])})
        await drain(app, delay_s=settings.drain_delay_s)
    finally:
        for extra in cleanups:
            await extra.cleanup()
        await runner.cleanup()
        log.info("server_stopped")
