"""Outbound requests to user-given URLs (downloads, webhooks) may reach public addresses only."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlparse


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


def check_url(url: str, allow_private: bool = False) -> None:
    """Raise BlockedURL unless `url` is http(s) and every address its host resolves to is
    public (or `allow_private`). The message never names the address found."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise BlockedURL("The URL must be an http:// or https:// address.")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parsed.hostname, parsed.port or None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise BlockedURL(f"The host '{parsed.hostname}' could not be resolved.") from None
    for info in infos:
        if not _is_public(ipaddress.ip_address(str(info[4][0]).split("%")[0])):
            raise BlockedURL("The URL points to a private or reserved address.")
