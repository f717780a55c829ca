"""Instructions per new stream: walletd against raw_server.py, counted under valgrind.

Why: the churn figures of stream_load.py are CPU time on a small shared machine, and a
lever worth a few per cent of a new stream's cost is lost in their run-to-run spread.
User-space instructions are repeatable to a fraction of a per cent, so each server runs
under `valgrind --tool=callgrind` with stream_load.py's settings (`--instrumented`:
instrumentation_load.py's, JSON lines at INFO), and the client drives churn streams as
stream_load.py's churn does (connect, GET, read to the end of the first `trades` event,
close with unread data: a reset). After --warmup streams the counters are zeroed, then
--streams more are counted; instructions per stream = the dump's total / --streams. The
raw server replays the bytes walletd sent for the same wallet, with its headers.

    python3 bench/stream_cost.py                          # both servers, 1,000 streams each
    python3 bench/stream_cost.py --side walletd --keep DIR  # keep the profile to annotate

With --keep the profiles stay in DIR (`callgrind_annotate --inclusive=yes DIR/walletd.*`).
Only the client's pace differs from stream_load.py (valgrind slows the servers some
fiftyfold); the counts do not depend on it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import stream_load as sl  # noqa: E402

SIDES = ("walletd", "raw")
INSTRUMENTED = {"LOG_LEVEL": "INFO", "LOG_FORMAT": "json"}
START_WITHIN_S = 300.0  # a Python server starts slowly under valgrind


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", choices=(*SIDES, "both"), default="both")
    parser.add_argument("--streams", type=int, default=1000, help="streams counted")
    parser.add_argument("--warmup", type=int, default=300, help="streams before counting")
    parser.add_argument("--clients", type=int, default=8, help="concurrent churn clients")
    parser.add_argument("--wallet", default=sl.NORMAL_WALLET)
    parser.add_argument("--instrumented", action="store_true", help="JSON lines at INFO")
    parser.add_argument("--keep", type=Path, help="keep the profiles in this directory")
    parser.add_argument("--loop", choices=sl.EVENT_LOOPS, default="uvloop")
    return parser.parse_args(argv)


def under_valgrind(argv: list[str], out: Path) -> list[str]:
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p", *argv]


async def control(server: sl.Server, option: str) -> None:
    """Run `callgrind_control option` on `server`; callgrind reads its commands only while
    the program runs, so /health requests wake an idle server until it has."""
    command = await asyncio.create_subprocess_exec(
        "callgrind_control",
        option,
        str(server.proc.pid),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        # valgrind names its control pipes after $HOST, which walletd's settings set.
        env={**os.environ, "HOST": sl.HOST},
    )
    waited = asyncio.ensure_future(command.communicate())
    while not waited.done():
        await sl.wait_ready(server, START_WITHIN_S)
        await asyncio.wait({waited}, timeout=0.5)
    said = waited.result()[0].decode(errors="replace")
    # It exits 0 even when it found no such process; "OK." is its word for done.
    if "OK." not in said:
        raise sl.BenchError(f"callgrind_control {option} failed for {server.name}: {said.strip()}")


async def churn(port: int, path: str, streams: int, clients: int) -> None:
    """`streams` churn streams through `clients` connections at a time."""
    left = streams

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await sl.exchange(port, path, sl.FirstTradesProtocol)

    await asyncio.gather(*(client() for _ in range(clients)))


def copy_instructions(profile: Path) -> int:
    """Instructions in libc's memcpy/memmove (callgrind_annotate's self cost). Valgrind
    counts each byte `rep movsb` moves as an instruction, so copies weigh far more here
    than in CPU time: they are reported apart."""
    listing = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(profile)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    copied = 0
    for line in listing.splitlines():
        cost, _, where = line.strip().partition(" ")
        if ("memcpy" in where or "memmove" in where) and cost.replace(",", "").isdigit():
            copied += int(cost.replace(",", ""))
    return copied


def total_instructions(profile: Path) -> int:
    """The `totals:` (or `summary:`) line of a callgrind profile: instructions in all."""
    for line in profile.read_text().splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise sl.BenchError(f"no totals in {profile}")


async def count(args: argparse.Namespace, server: sl.Server, out: Path, path: str) -> Path:
    """The profile of --streams churn streams, after --warmup more."""
    await churn(server.port, path, args.warmup, args.clients)
    return await counted(server, out, churn(server.port, path, args.streams, args.clients))


async def counted(server: sl.Server, out: Path, load: Awaitable[None]) -> Path:
    """The profile of what `server` does for `load` alone: counters zeroed before it,
    dumped after it (the newest of `out`'s dumps)."""
    await control(server, "-z")
    await load
    before = set(out.parent.glob(f"{out.name}.*"))
    await control(server, "-d")
    dumped = sorted(set(out.parent.glob(f"{out.name}.*")) - before)
    if not dumped:
        raise sl.BenchError(f"{server.name} wrote no profile")
    return dumped[-1]


def report(side: str, profile: Path, streams: int) -> int:
    """Print `side`'s instructions per stream, copies apart; returns the total."""
    total = total_instructions(profile) // streams
    copies = copy_instructions(profile) // streams
    print(
        f"{side}: {total:,} instructions per stream, {copies:,} of them copying bytes,"
        f" {total - copies:,} the rest ({profile.name})",
        flush=True,
    )
    return total


async def measure(args: argparse.Namespace, children: sl.Children) -> dict[str, int]:
    workdir = children.workdir
    path = sl.stream_path(args.wallet)
    settings = INSTRUMENTED if args.instrumented else {}
    # walletd writes the bytes the raw server replays: a plain walletd when raw goes alone.
    port = sl.free_port()
    argv = [sys.executable, "-m", "walletd", "serve"]
    if args.side != "raw":
        argv = under_valgrind(argv, workdir / "walletd")
    walletd = children.start("walletd", argv, sl.walletd_env(port, **settings), port)
    await sl.wait_ready(walletd, START_WITHIN_S)
    await sl.capture(port, path)  # fills the history cache
    cap = await sl.capture(port, path)
    per_stream: dict[str, int] = {}
    if args.side != "raw":
        profile = await count(args, walletd, workdir / "walletd", path)
        per_stream["walletd"] = report("walletd", profile, args.streams)
    children.stop(walletd)
    if args.side != "walletd":
        body, headers = sl.save_capture(workdir, "churn", cap), sl.save_headers(workdir, cap)
        port = sl.free_port()
        argv = [sys.executable, str(REPO / "bench" / "raw_server.py"), "--port", str(port)]
        argv += ["--headers", str(headers), "--loop", sl.event_loop]
        argv += ["--body", f"{args.wallet}={body}"]
        argv = under_valgrind(argv, workdir / "raw")
        raw = children.start("raw", argv, sl.walletd_env(port), port)
        await sl.wait_ready(raw, START_WITHIN_S)
        profile = await count(args, raw, workdir / "raw", path)
        per_stream["raw"] = report("raw", profile, args.streams)
        children.stop(raw)
    return per_stream


Measure = Callable[[argparse.Namespace, sl.Children], Awaitable[dict[str, int]]]


def counts_of(args: argparse.Namespace, measure: Measure) -> dict[str, int] | int:
    """`measure`'s counts, its servers' profiles kept in --keep; or the exit status when
    valgrind is missing (1), the benchmark failed (1) or was interrupted (130)."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind (with callgrind_control) is needed", file=sys.stderr)
        return 1
    sl.prepare_process()
    with tempfile.TemporaryDirectory(prefix="walletd-cost-") as tmp:
        children = sl.Children(Path(tmp))
        results: dict[str, int] = {}

        async def run(_: object) -> None:
            results.update(await measure(args, children))

        run_state = argparse.Namespace(args=args, children=children)
        if (status := sl.execute(run, run_state)) is not None:
            return status
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            for profile in Path(tmp).glob("*.[0-9]*"):
                shutil.copy2(profile, args.keep / profile.name)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    results = counts_of(parse_args(argv), measure)
    if isinstance(results, int):
        return results
    if len(results) == 2:
        print(f"walletd / raw: {results['walletd'] / results['raw']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
