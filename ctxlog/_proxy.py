"""
Work out a request's client IP from its peer address and, when the peer is a trusted proxy, from
``X-Forwarded-For`` or RFC 7239 ``Forwarded``.

Security
--------
A client can put anything in these headers. They are read only when the connection comes from an
address listed in ``trusted_proxies``, and then from the right: each proxy appends the address it
saw, so the right-most entries are the ones our own proxies wrote. The walk stops at the first
address that is not a trusted proxy, and that is the client. Entries further left were written by
the client or by proxies we know nothing about, and are never used. A header that cannot be
parsed gives the peer address, never a guess.

Only one of the two headers is read (``proxy_header``): a proxy that sets one of them usually
passes the other through untouched, so reading both would let a client choose its address.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Iterable
from typing import Final

__all__ = ["ClientIP", "parse_ip"]

_log = logging.getLogger("ctxlog")

#: At most this many hops are walked; a longer chain is treated as garbage.
MAX_HOPS: Final = 32

_HEADERS: Final = {"x-forwarded-for": "x-forwarded-for", "forwarded": "forwarded"}

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=4096)
def parse_ip(text: str) -> str | None:
    """
    Return the normalised address in ``text``, or ``None`` if it holds none.

    Accepts ``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1``, ``[2001:db8::1]`` and
    ``[2001:db8::1]:443``. An IPv4-mapped IPv6 address is given as IPv4, a zone id is dropped.
    """
    text = text.strip()
    if not text or len(text) > 64:
        return None
    if text[0] == "[":
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1 :]
        if rest and not (rest[0] == ":" and rest[1:].isdigit()):
            return None
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if not port.isdigit():
            return None
    else:
        host = text
    host = host.partition("%")[0]
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def _parse_networks(spec: str | Iterable[str]) -> tuple[bool, tuple[IPNetwork, ...]]:
    if isinstance(spec, str):
        items = [part.strip() for part in spec.split(",") if part.strip()]
    else:
        items = list(spec)
    networks: list[IPNetwork] = []
    trust_all = False
    for item in items:
        if not isinstance(item, str):
            msg = f"trusted_proxies: {item!r} is not a string (an IP address, a network or '*')"
            raise TypeError(msg)
        if item.strip() == "*":
            trust_all = True
            continue
        try:
            network = ipaddress.ip_network(item.strip(), strict=False)
        except ValueError:
            msg = (
                f"trusted_proxies: {item!r} is not an IP address or network "
                "(write '10.0.0.1', '10.0.0.0/8', '2001:db8::/32' or '*')"
            )
            raise ValueError(msg) from None
        networks.append(network)
    return trust_all, tuple(networks)


def _split_forwarded(value: str) -> list[str] | None:
    """Return the ``for=`` node of each element of a ``Forwarded`` header, or ``None``."""
    nodes: list[str] = []
    element: dict[str, str] = {}
    key: list[str] = []
    val: list[str] = []
    in_value = quoted = escaped = False

    def end_pair() -> bool:
        name = "".join(key).strip().lower()
        if not name:
            return not in_value
        element[name] = "".join(val).strip()
        return True

    for char in value:
        if quoted:
            if escaped:
                val.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
            else:
                val.append(char)
        elif char == '"' and in_value:
            quoted = True
        elif char == "=" and not in_value:
            in_value = True
        elif char in ";,":
            if not end_pair():
                return None
            key.clear()
            val.clear()
            in_value = False
            if char == ",":
                nodes.append(element.get("for", ""))
                element = {}
        elif in_value:
            val.append(char)
        else:
            key.append(char)
    if quoted or not end_pair():
        return None
    nodes.append(element.get("for", ""))
    return nodes


class ClientIP:
    """
    Resolve the client address of a request.

    Args:
        trusted_proxies: Addresses and networks (``"10.0.0.0/8"``) of the proxies in front of
            the app, or ``"*"`` to trust every peer. A string may list several, comma-separated.
        proxy_header: ``"X-Forwarded-For"`` or ``"Forwarded"``: the header the proxies set.

    Raises:
        ValueError: An entry is not an address or network, or the header is not one of the two.
    """

    __slots__ = ("_networks", "_trusted", "forwarded", "header", "trust_all")

    def __init__(
        self,
        trusted_proxies: str | Iterable[str] = (),
        proxy_header: str = "X-Forwarded-For",
    ) -> None:
        header = _HEADERS.get(str(proxy_header).lower()) if isinstance(proxy_header, str) else None
        if header is None:
            msg = f"proxy_header: {proxy_header!r} is not 'X-Forwarded-For' or 'Forwarded'"
            raise ValueError(msg)
        self.trust_all, self._networks = _parse_networks(trusted_proxies)
        #: The lowercase name of the header to read, or ``None`` when no proxy is trusted.
        self.header = header if self.trust_all or self._networks else None
        self.forwarded = header == "forwarded"
        self._trusted = functools.lru_cache(maxsize=1024)(self._is_trusted)
        if self.trust_all:
            _log.warning(
                "trusted_proxies='*' trusts the %s header from every peer: only use it when every "
                "connection to this app comes through your own proxy",
                proxy_header,
            )

    def _is_trusted(self, addr: str) -> bool:
        if self.trust_all:
            return True
        ip = ipaddress.ip_address(addr)
        return any(ip in network for network in self._networks)

    def resolve(self, peer: str | None, header: str | None) -> str:
        """
        Return the client address: ``peer`` unless it is a trusted proxy, else from ``header``.

        Args:
            peer: The address of the connection's other end, as the server gives it.
            header: The value of ``proxy_header`` (several header lines joined with ``,``), or
                ``None`` if the request has none.

        Returns:
            A normalised IP address, or ``"-"`` when the peer is not an IP address (a unix
            socket, a test client) and no trusted header says otherwise.
        """
        ip = parse_ip(peer) if peer else None
        if header is None or self.header is None:
            return ip or "-"
        if ip is None:
            if not self.trust_all:
                return "-"
        elif not self._trusted(ip):
            return ip
        hops = _split_forwarded(header) if self.forwarded else header.split(",")
        if not hops or len(hops) > MAX_HOPS:
            return ip or "-"
        candidate = ip
        for hop in reversed(hops):
            addr = parse_ip(hop)
            if addr is None:
                return ip or "-"
            candidate = addr
            if not self._trusted(addr):
                return addr
        # Every hop is one of our proxies: the left-most is the closest to the client we know.
        return candidate or "-"
