"""Where a webhook may be sent: public addresses only, unless the operator allows a network.

A ``callback_url`` whose host is or resolves to a loopback, private, link-local (cloud metadata
services live at 169.254.169.254), multicast or otherwise non-public address is refused, so a
client cannot make the relay POST into the server's own network (SSRF). Hospitals whose RIS
lives on a private network list its network in ``LUNGCAD_WEBHOOK_ALLOW_NETWORKS``.

The check runs at submit time (422 ``callback_url_refused``) and again at each send, on the
address the request then goes to: the name is resolved once, every address it resolves to is
checked, and the connection is made to the checked address (the URL's host stays in ``Host``
and in TLS's server name), so a DNS answer that changes between check and connect cannot
redirect it. Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from lungcad.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CallbackRefused(InvalidInput):
    code = "callback_url_refused"


def refusal(address: IPAddress, allow: Sequence[Network]) -> str | None:
    """Why ``address`` may not receive webhooks (a few words), or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address.version == network.version and address in network for network in allow):
        return None
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local (cloud metadata)"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "non-public"
    return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (a literal address: itself). Raises OSError when it
    does not resolve."""
    found: list[IPAddress] = []
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:  # a label over 63 characters, an empty label
        raise OSError(f"{host[:100]!r} is not a valid host name ({exc})") from exc
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


def checked_address(url: str, allow: Sequence[Network]) -> IPAddress:
    """The address to send ``url``'s request to. Raises :class:`CallbackRefused` when any
    address its host resolves to is refused, OSError when it does not resolve."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:  # out of range
        raise OSError(f"{url[:200]!r} has no valid port ({exc})") from exc
    addresses = resolve(host, port)
    for address in addresses:
        reason = refusal(address, allow)
        if reason is not None:
            shown = host if host == str(address) else f"{host} resolves to {address}, which"
            raise CallbackRefused(
                f"callback_url refused: {shown} is a {reason} address. Webhooks go to public "
                "addresses only, unless the server's LUNGCAD_WEBHOOK_ALLOW_NETWORKS lists its "
                "network.", address=str(address))
    return addresses[0]
