"""Every on-chain identifier walletd hard-codes occurs in real mainnet transactions.

A mint, program id or rent amount typed from memory can be wrong and still look right
(USDT's mint once was). So nothing is listed here by hand: the constants are found by
introspection (module-level names of every walletd module) and by scanning walletd's
source for base58 literals, then looked up in the real transactions of tests/data/. A
new constant is covered the day it is added; one that is not found fails by its name.
"""

from __future__ import annotations

import functools
import importlib
import json
import pkgutil
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import base58
import pytest

import walletd
from tests.support import DATA

# Addresses the demo source makes up (README names them): no chain has heard of them.
SYNTHETIC = {"LARGE_DEMO_WALLET", "EMPTY_DEMO_WALLET"}
WALLETD = Path(walletd.__file__).resolve().parent
_BASE58 = re.compile(
    r"(?<![1-9A-HJ-NP-Za-km-z])[1-9A-HJ-NP-Za-km-z]{32,44}(?![1-9A-HJ-NP-Za-km-z])"
)


def is_address(text: str) -> bool:
    """Base58 of 32 bytes; written here, not imported, so a bug there cannot hide one here."""
    return bool(_BASE58.fullmatch(text)) and len(base58.b58decode(text)) == 32


@dataclass
class RealData:
    """What the real transactions of tests/data/ hold, with the file each fact came from."""

    mints: dict[str, str] = field(default_factory=dict)  # token-balance mint -> file
    decimals: dict[str, set[int]] = field(default_factory=dict)  # mint -> decimals seen
    opened_account_lamports: dict[int, str] = field(default_factory=dict)  # rent -> file
    strings: dict[str, str] = field(default_factory=dict)  # any base58 token -> file


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _add_balances(real: RealData, meta: dict[str, Any], name: str) -> None:
    """Token balances of a JSON-RPC `meta`, and the lamports of token accounts it opened."""
    pre = {b["accountIndex"]: b for b in meta.get("preTokenBalances") or []}
    post = {b["accountIndex"]: b for b in meta.get("postTokenBalances") or []}
    for balance in [*pre.values(), *post.values()]:
        real.mints.setdefault(balance["mint"], name)
        real.decimals.setdefault(balance["mint"], set()).add(balance["uiTokenAmount"]["decimals"])
    for index in post.keys() - pre.keys():  # created in this transaction: funded with its rent
        if meta["preBalances"][index] == 0:
            real.opened_account_lamports.setdefault(meta["postBalances"][index], name)


@functools.cache
def real_data() -> RealData:
    real = RealData()
    files = sorted(DATA.rglob("*.json"))
    assert len(files) > 100, f"the real samples are missing from {DATA}"
    for path in files:
        name = str(path.relative_to(DATA))
        for node in _walk(json.loads(path.read_text(encoding="utf-8"))):
            if isinstance(node, str):
                for token in _BASE58.findall(node):  # log lines name programs, too
                    real.strings.setdefault(token, name)
            elif isinstance(node, dict) and "postBalances" in node and "preBalances" in node:
                _add_balances(real, node, name)
            elif isinstance(node, dict) and isinstance(node.get("rawTokenAmount"), dict):
                # Helius accountData: the same facts in the enhanced shape.
                real.mints.setdefault(node["mint"], name)
                decimals = node["rawTokenAmount"]["decimals"]
                real.decimals.setdefault(node["mint"], set()).add(decimals)
    return real


def walletd_modules() -> list[Any]:
    names = [m.name for m in pkgutil.walk_packages([str(WALLETD)], "walletd.")]
    return [importlib.import_module(n) for n in sorted(names) if n != "walletd.__main__"]


def constants(kind: type) -> dict[str, Any]:
    """Module-level UPPER_CASE constants of type `kind`, as {"module.NAME": value}."""
    return {
        f"{module.__name__}.{name}": value
        for module in walletd_modules()
        for name, value in vars(module).items()
        if name.isupper() and type(value) is kind
    }


def address_constants() -> dict[str, str]:
    """{value: the constant's name}, one entry per value: the name where it is defined
    (written as a literal), not the modules that import it."""
    found: dict[str, list[str]] = {}
    for name, value in constants(str).items():
        if is_address(value) and name.rpartition(".")[2] not in SYNTHETIC:
            found.setdefault(value, []).append(name)
    return {value: _defining(names) for value, names in found.items()}


def _defining(names: list[str]) -> str:
    for name in names:
        module = importlib.import_module(name.rpartition(".")[0])
        line = f"{name.rpartition('.')[2]} = "
        if module.__file__ and line in Path(module.__file__).read_text(encoding="utf-8"):
            return name
    return ", ".join(names)


def source_literals() -> dict[str, list[str]]:
    """{address: ["file:line", ...]} for every base58 address written in walletd/."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in WALLETD.rglob("*") if p.is_file() and p.suffix != ".pyc"):
        text = path.read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            for token in _BASE58.findall(line):
                if is_address(token):
                    found.setdefault(token, []).append(f"{path.relative_to(WALLETD)}:{number}")
    return found


ADDRESSES = address_constants()
LITERALS = {
    value: places
    for value, places in source_literals().items()
    if value not in {v for n, v in constants(str).items() if n.rpartition(".")[2] in SYNTHETIC}
}


def test_the_scan_finds_the_quote_mints() -> None:
    """The discovery itself works: the quote mints of SPEC §1 are among the constants."""
    names = " ".join(ADDRESSES.values())
    assert {"USDC_MINT", "USDT_MINT", "WSOL_MINT"} <= set(re.findall(r"\w+_MINT", names))


def test_synthetic_exemptions_are_still_constants() -> None:
    names = {n.rpartition(".")[2] for n, v in constants(str).items() if is_address(v)}
    assert names >= SYNTHETIC, f"stale exemptions: {SYNTHETIC - names}"


@pytest.mark.parametrize("value", sorted(ADDRESSES), ids=lambda v: ADDRESSES[v])
def test_address_constant_occurs_in_real_transactions(value: str) -> None:
    """Mints must be real token-balance mints; any other address must occur in a real tx."""
    real, name = real_data(), ADDRESSES[value]
    if name.endswith("_MINT"):
        assert value in real.mints, f"{name} = {value} is the mint of no real token balance"
    else:
        assert value in real.strings, f"{name} = {value} occurs in no real transaction"


@pytest.mark.parametrize("value", sorted(LITERALS), ids=lambda v: LITERALS[v][0])
def test_address_literal_in_walletd_occurs_in_real_transactions(value: str) -> None:
    """Literals outside constants too (examples, the demo page): a typo shows nowhere."""
    assert value in real_data().strings, f"{value} at {LITERALS[value]}: in no real transaction"


def test_each_address_is_written_once_in_the_python_source() -> None:
    """Other modules import the constant: a second literal is a copy that can drift."""
    copies = {
        value: places
        for value, places in LITERALS.items()
        if len([p for p in places if p.split(":")[0].endswith(".py")]) > 1
    }
    assert not copies, f"addresses written more than once: {copies}"


@pytest.mark.parametrize(
    "name", sorted(n for n in constants(int) if "RENT" in n.rpartition(".")[2])
)
def test_rent_constant_is_the_lamports_of_real_new_token_accounts(name: str) -> None:
    value = constants(int)[name]
    opened = real_data().opened_account_lamports
    assert value in opened, f"{name} = {value}: no real token account opened with it ({opened})"


def test_there_is_a_rent_constant_to_check() -> None:
    assert any("RENT" in n.rpartition(".")[2] for n in constants(int))


def decimals_tables() -> list[str]:
    """One name per table of decimals: modules importing it hold the same object."""
    by_table: dict[int, list[str]] = {}
    for name, value in constants(dict).items():
        if "DECIMALS" in name.rpartition(".")[2]:
            by_table.setdefault(id(value), []).append(name)
    return sorted(_defining(names) for names in by_table.values())


@pytest.mark.parametrize("name", decimals_tables())
def test_decimals_of_known_mints_are_the_real_ones(name: str) -> None:
    real = real_data()
    table: dict[str, int] = constants(dict)[name]
    for mint, decimals in table.items():
        seen = real.decimals.get(mint)
        assert seen == {decimals}, f"{name}[{mint}] = {decimals}; real token balances: {seen}"
