"""Outbound requests to user-given URLs (downloads, webhooks) may reach public addresses only,
and connect to the very address that was checked (no DNS rebinding between check and use)."""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from typing import Any
from urllib.parse import ParseResult, parse_qsl, urlencode, urlparse, urlunparse

import httpx


class BlockedURL(ValueError):
    """The URL is not http(s) or resolves to an address the service must not reach."""


NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        # IPv4 addresses carried inside IPv6 (mapped, 6to4, Teredo, NAT64) are judged as IPv4
        embedded = [address.ipv4_mapped, address.sixtofour, address.teredo and address.teredo[1]]
        if any(address in net for net in NAT64):
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if any(e is not None and not e.is_global for e in embedded):
            return False
    return address.is_global and not address.is_multicast


def parse_url(url: str) -> ParseResult:
    """The URL split in parts; BlockedURL unless it is a well-formed http(s) URL with a host."""
    try:
        parsed = urlparse(url)
        httpx.URL(url)  # what the client will parse must parse too
        hostname, _ = parsed.hostname, parsed.port
    except (ValueError, httpx.InvalidURL):
        raise BlockedURL("The URL is malformed: give a full http:// or https:// address.") from None
    if parsed.scheme not in ("http", "https") or not hostname:
        raise BlockedURL("The URL must be an http:// or https:// address.")
    return parsed


def check_url(url: str, allow_private: bool = False) -> str:
    """Raise BlockedURL unless `url` is http(s) and every address its host resolves to is
    public (or `allow_private`); returns the address to connect to. The message never names
    the address found."""
    parsed = parse_url(url)
    try:
        port = parsed.port
        infos = socket.getaddrinfo(parsed.hostname, port, proto=socket.IPPROTO_TCP)
    except ValueError:
        raise BlockedURL("The URL has an invalid port.") from None
    except (socket.gaierror, UnicodeError):
        raise BlockedURL(f"The host '{parsed.hostname}' could not be resolved.") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise BlockedURL(f"The host '{parsed.hostname}' could not be resolved.")
    if not allow_private and not all(_is_public(a) for a in addresses):
        raise BlockedURL(
            "The URL points to a private or reserved address "
            "(ALLOW_PRIVATE_URLS=true lifts this on a trusted network)."
        )
    return str(addresses[0])


def pinned_request(
    client: httpx.Client, method: str, url: str, allow_private: bool, **kwargs: Any
) -> httpx.Request:
    """A request for `url` sent to the address check_url approved: the URL carries the IP,
    the Host header and TLS server name (certificate check included) carry the host name."""
    target = httpx.URL(url)
    address = check_url(url, allow_private)
    headers = {**kwargs.pop("headers", {}), "host": target.netloc.decode("ascii")}
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return client.build_request(
        method, target.copy_with(host=address), headers=headers, extensions=extensions, **kwargs
    )


SECRET_PARAM = re.compile(
    r"(token|key|secret|sig|signature|password|passwd|auth|credential|session)", re.I
)


def redact_url(url: str | None) -> str | None:
    """The URL without what may be a secret: the userinfo password and the values of query
    parameters named like tokens, keys or signatures (presigned URLs)."""
    if not url:
        return url
    try:
        parsed = urlparse(url)
        netloc = parsed.netloc
        if parsed.password is not None:
            netloc = f"{parsed.username}:REDACTED@{netloc.rsplit('@', 1)[1]}"
        query = urlencode(
            [
                (k, "REDACTED" if SECRET_PARAM.search(k) else _redact_value(v))
                for k, v in parse_qsl(parsed.query, keep_blank_values=True)
            ],
            safe="/:",
        )
        return urlunparse(parsed._replace(netloc=netloc, query=query))
    except ValueError:
        return "REDACTED"


def _redact_value(value: str) -> str:
    """A URL given as a parameter (e.g. `callback_url=`) is redacted too."""
    if value.startswith(("http://", "https://")):
        return redact_url(value) or value
    return value


class RedactAccessLog(logging.Filter):
    """Removes secrets from the request line of uvicorn's access log (callback URLs in the
    query string may carry tokens)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path = args[2]
            if "?" in path:
                route, _, query = path.partition("?")
                redacted = urlparse(redact_url(f"http://x/?{query}") or "").query
                record.args = (*args[:2], f"{route}?{redacted}", *args[3:])
        return True
