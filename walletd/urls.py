"""URLs in settings: which hosts are loopback, and how the credentials a URL may carry
(a provider key in the path or query, a Redis password) are masked wherever walletd
shows or logs one."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

MASK = "***"


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_port(netloc: str) -> str:
    return netloc.rpartition("@")[2]


def mask_url_path(url: str) -> str:
    """scheme://host[:port], then /*** if anything followed (a path, query, fragment or
    user part: providers put keys in any of them)."""
    parsed = urlsplit(url)
    base = f"{parsed.scheme}://{_host_port(parsed.netloc)}"
    hidden = "@" in parsed.netloc or parsed.path.strip("/") or parsed.query or parsed.fragment
    return base + "/" + MASK if hidden else base


def mask_redis_password(url: str) -> str:
    """The Redis URL with its password (user part or `?password=`) replaced by ***."""
    parsed = urlsplit(url)
    netloc = parsed.netloc
    if parsed.password is not None:
        user = netloc.rpartition("@")[0].partition(":")[0]
        netloc = f"{user}:{MASK}@{_host_port(netloc)}"
    query = "&".join(
        f"password={MASK}" if part.partition("=")[0].lower() == "password" else part
        for part in parsed.query.split("&")
    )
    # By hand: urlunsplit drops the empty host of unix:///path.
    return f"{parsed.scheme}://{netloc}{parsed.path}" + (f"?{query}" if query else "")


def redis_has_credentials(url: str) -> bool:
    """A password or ACL user in the user part or the query."""
    parsed = urlsplit(url)
    query_names = {part.partition("=")[0].lower() for part in parsed.query.split("&")}
    return bool(parsed.username or parsed.password) or bool({"password", "username"} & query_names)
