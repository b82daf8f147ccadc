"""
Work out a request's client IP from its peer and the proxy headers of trusted proxies.

The peer address, unless the peer is a trusted proxy: then ``X-Forwarded-For`` or ``Forwarded``.

Security
--------
A client can put anything in these headers. They are read only when the connection comes from an
address listed in ``trusted_proxies``, and then from the right: each proxy appends the address it
saw, so the right-most entries are the ones our own proxies wrote. The walk stops at the first
address that is not a trusted proxy, and that is the client. Entries further left were written by
the client or by proxies we know nothing about, and are never used. A header that cannot be
parsed gives the peer address, never a guess.

At most ``MAX_HOPS`` entries are read, from the right: nothing a client writes in front of our
proxies' entries changes the result, and the work does not grow with the header. ``Forwarded``
is read from the right too, quoted strings and all: at most ``MAX_HOPS`` elements of at most
``MAX_ELEMENT`` characters. The rest is only scanned in C for quotes: a quoted string opening
there and not closing would hold the elements read, for a reader going left to right, so
``for="x`` in front of our proxies' elements gives the peer address, as any ``Forwarded`` that
cannot be parsed does (so does a backslash after a quote there). A ``Forwarded`` header over
``MAX_FORWARDED`` characters is garbage, the peer address, without being read.

Only ``proxy_header`` is read: a proxy that sets one of the two passes the other through
untouched, so reading both would let a client choose its address.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
from collections.abc import Iterable, Iterator
from typing import Final

__all__ = ["ClientIP", "parse_ip"]

_log = logging.getLogger("ctxlog")

#: At most this many entries are read, from the right; a walk that needs more is garbage.
MAX_HOPS: Final = 32
#: A ``Forwarded`` header longer than this (in characters) is garbage: the peer address.
MAX_FORWARDED: Final = 64 * 1024
#: A ``Forwarded`` element longer than this (in characters) is garbage.
MAX_ELEMENT: Final = 512

_HEADERS: Final = {"x-forwarded-for": "x-forwarded-for", "forwarded": "forwarded"}

#: Longest text :func:`parse_ip` looks at; anything longer is not an address. This also keeps
#: attacker-sized strings out of its cache.
_MAX_TEXT: Final = 100
#: Headers up to this length have their answer cached (4,096 entries at most).
_MAX_CACHED_HEADER: Final = 256

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: An RFC 7230 token (a parameter name).
_NAME: Final = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
#: One ``name=value`` pair of a ``Forwarded`` element and the separator after it. The value is a
#: token or a quoted string; unquoted IPv6 (``for=[2001:db8::1]``, not RFC 7239) is tolerated.
#: Matched from the left on elements without quotes; the others are read backwards, below.
_FORWARDED_PAIR: Final = re.compile(
    rf"""[ \t]*(?:({_NAME})[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|[^ \t;,"]*)[ \t]*)?([;,]|\Z)"""
)


def _reversed_pair(quoted_string: str) -> re.Pattern[str]:
    """
    Compile the pair read backwards, with ``quoted_string`` for the reversed quoted string.

    Matched on the reversed text, it gives the reversed value and name, and the separator that
    comes *before* the pair (or ``""`` at the start of the header).
    """
    return re.compile(
        rf"""[ \t]*(?:({quoted_string}|[^ \t;,"]*)[ \t]*=[ \t]*({_NAME})[ \t]*)?([;,]|\Z)"""
    )


#: Backwards, a quoted-pair (a backslash and the character it escapes) is that character, then
#: the backslash.
_REVERSED_PAIR: Final = _reversed_pair(r'"(?:[^"\\]|[^\n]\\)*"')
#: The same, for text without a backslash: much faster on quoted strings.
_REVERSED_PAIR_PLAIN: Final = _reversed_pair(r'"[^"\\]*+"')
_QUOTED_PAIR: Final = re.compile(r"\\(.)")
_OBFUSCATED_PORT: Final = re.compile(r"_[A-Za-z0-9._-]+")


def _valid_port(port: str) -> bool:
    """Tell whether ``port`` is a port number or an RFC 7239 obfuscated port (``_abc``)."""
    if port.isascii() and port.isdigit():
        return int(port) <= 65535
    return _OBFUSCATED_PORT.fullmatch(port) is not None


@functools.lru_cache(maxsize=4096)
def _parse_ip(text: str) -> str | None:
    text = text.strip(" \t")
    if not text:
        return None
    if text[0] == "[":
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1 :]
        if rest and not (rest[0] == ":" and _valid_port(rest[1:])):
            return None
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if not _valid_port(port):
            return None
    else:
        host = text
    if ":" in host:
        host = host.partition("%")[0]
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def parse_ip(text: str) -> str | None:
    """
    Return the normalised address in ``text``, or ``None`` if it holds none.

    Accepts ``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1``, ``[2001:db8::1]`` and
    ``[2001:db8::1]:443``, with spaces or tabs around. An IPv4-mapped IPv6 address is given as
    IPv4, an IPv6 zone id is dropped. Never raises.
    """
    return _parse_ip(text) if len(text) <= _MAX_TEXT else None


def _network(item: str) -> IPNetwork:
    """Parse one ``trusted_proxies`` entry; an IPv4-mapped IPv6 network becomes IPv4."""
    network = ipaddress.ip_network(item)
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def _loose_network(item: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(item, strict=False)
    except ValueError:
        return None


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
            networks.append(_network(item.strip()))
        except ValueError:
            loose = _loose_network(item.strip())
            if loose is not None:
                # "10.1.2.3/8": an address with a prefix is most likely a typo; widening it
                # silently would trust far more peers than meant.
                msg = (
                    f"trusted_proxies: {item!r} has bits set beyond its /{loose.prefixlen} "
                    f"prefix; write {str(loose)!r} to trust the network, or "
                    f"{item.strip().split('/')[0]!r} for the one address"
                )
                raise ValueError(msg) from None
            msg = (
                f"trusted_proxies: {item!r} is not an IP address or network "
                "(write '10.0.0.1', '10.0.0.0/8', '2001:db8::/32' or '*')"
            )
            raise ValueError(msg) from None
    return trust_all, tuple(networks)


def _for_node(element: str) -> str:
    """
    Return the ``for=`` node of one ``Forwarded`` element that holds no quote, or ``""``.

    ``""`` (not an address) when the element has no ``for=``, has it twice, is longer than
    ``MAX_ELEMENT`` or does not follow the RFC 7239 grammar.
    """
    if len(element) > MAX_ELEMENT:
        return ""
    node: str | None = None
    pos = 0
    while True:
        match = _FORWARDED_PAIR.match(element, pos)
        if match is None:
            return ""
        name, raw, separator = match.groups()
        if name is not None and name.lower() == "for":
            if node is not None:
                return ""
            node = raw
        if not separator:
            return node or ""
        pos = match.end()


def _reversed_node(raw: str, seen: str | None) -> str:
    """Return the ``for=`` node reversed in ``raw``; ``""`` if the element had one (``seen``)."""
    if seen is not None:
        return ""
    if raw[:1] != '"':
        return raw[::-1]
    node = raw[-2:0:-1]
    return _QUOTED_PAIR.sub(r"\1", node) if "\\" in node else node


def _forwarded_from_right(value: str) -> Iterator[tuple[str, int]]:
    """
    Yield the ``for=`` node of each element of a ``Forwarded`` header, right-most first.

    Each node comes with the index where its element starts. A node is ``""`` (not an address)
    as :func:`_for_node` says, and nothing follows it. Only the elements asked for are read: each
    step reverses at most ``MAX_ELEMENT + 1`` characters and matches the pairs of one element.
    Quoted strings are read whole, commas and all; what lies left of the elements read is not
    looked at (see :func:`_quotes_closed`).
    """
    end = length = len(value)  # end: the window's right end (exclusive) in value
    while True:
        low = max(0, end - MAX_ELEMENT - 1)  # room for the longest element and its comma
        window = value[low:end][::-1] if low or end < length else value[::-1]
        pair = _REVERSED_PAIR if "\\" in window else _REVERSED_PAIR_PLAIN
        start = 0  # where the element being read begins in the window (its right end)
        at = 0
        node: str | None = None
        while True:
            match = pair.match(window, at)
            if match is not None:
                raw, name, separator = match.groups()
            if match is None or (low > 0 and not separator):
                # Not whole in this window: read it again from its own end, unless the window
                # already began there (then it is too long, or not Forwarded at all).
                if start == 0:
                    yield "", end
                    return
                end -= start
                break
            if name is not None and name.lower() == "rof":
                node = _reversed_node(raw, node)
            at = match.end()
            if separator == ";":
                continue
            if not separator:  # the start of the header
                yield (node or "") if at - start <= MAX_ELEMENT else "", 0
                return
            yield node or "", end - at + 1
            start = at
            node = None


def _quotes_closed(value: str, end: int) -> bool:
    """
    Tell whether ``value[:end]``, read from the left, certainly leaves no quoted string open.

    Without a backslash after the first quote no quote is escaped, so an even number of quotes
    closes every quoted string they open. A quoted-pair there is not worth reading (proxies
    never write one; a client can always make its header unparseable): the answer is no. Three
    scans in C, whatever the length.
    """
    first = value.find('"', 0, end)
    if first < 0:
        return True
    return value.find("\\", first, end) < 0 and value.count('"', first, end) % 2 == 0


class ClientIP:
    """
    Resolve the client address of a request.

    Args:
        trusted_proxies: Addresses and networks (``"10.0.0.0/8"``) of the proxies in front of
            the app, or ``"*"`` to trust every peer. A string may list several, comma-separated.
        proxy_header: ``"X-Forwarded-For"`` or ``"Forwarded"``: the header the proxies set.

    Raises:
        ValueError: An entry is not an address or network, or the header is not one of the two.
        TypeError: An entry of ``trusted_proxies`` is not a string.
    """

    __slots__ = ("_networks", "_resolved", "_trusted", "forwarded", "header", "trust_all")

    def __init__(
        self,
        trusted_proxies: str | Iterable[str] = (),
        proxy_header: str = "X-Forwarded-For",
    ) -> None:
        header = _HEADERS.get(proxy_header.lower()) if isinstance(proxy_header, str) else None
        if header is None:
            msg = f"proxy_header: {proxy_header!r} is not 'X-Forwarded-For' or 'Forwarded'"
            raise ValueError(msg)
        self.trust_all, self._networks = _parse_networks(trusted_proxies)
        #: The lowercase name of the header to read, or ``None`` when no proxy is trusted.
        self.header = header if self.trust_all or self._networks else None
        self.forwarded = header == "forwarded"
        self._trusted = functools.lru_cache(maxsize=1024)(self._is_trusted)
        # The same client usually sends many requests through the same proxy: remember whole
        # answers (a pure function of peer and header) for headers of a sensible length.
        self._resolved = functools.lru_cache(maxsize=4096)(self._walk)
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

    def trusts(self, peer: str | None) -> bool:
        """Tell whether ``peer`` (as the server gives it) is one of the trusted proxies."""
        ip = _parse_ip(peer) if self.header and peer and len(peer) <= _MAX_TEXT else None
        return ip is not None and self._trusted(ip)

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
        if header is None or self.header is None:
            # parse_ip() inlined: this runs for every request.
            ip = _parse_ip(peer) if peer and len(peer) <= _MAX_TEXT else None
            return ip or "-"
        if len(header) <= _MAX_CACHED_HEADER:
            return self._resolved(peer, header)
        return self._walk(peer, header)

    def _walk(self, peer: str | None, header: str) -> str:
        ip = _parse_ip(peer) if peer and len(peer) <= _MAX_TEXT else None
        if ip is None:
            if not self.trust_all:
                return "-"
        elif not self._trusted(ip):
            return ip
        if self.forwarded:
            if len(header) > MAX_FORWARDED:
                return ip or "-"
            if '"' in header:
                return self._walk_quoted(ip, header)
            # No quoted strings: every comma ends an element, as in X-Forwarded-For.
        return self._walk_hops(ip, header)

    def _walk_hops(self, ip: str | None, header: str) -> str:
        """Walk a header whose entries are separated by every comma, from the right."""
        forwarded = self.forwarded
        hops = header.rsplit(",", MAX_HOPS)
        if len(hops) > MAX_HOPS:
            # Only the right-most MAX_HOPS entries are read. What is left of them stands in as
            # one entry that is not an address: reached, it makes the header garbage.
            hops = ["", *hops[-MAX_HOPS:]]
        candidate = ip
        for hop in reversed(hops):
            text = _for_node(hop) if forwarded else hop
            addr = _parse_ip(text) if len(text) <= _MAX_TEXT else None
            if addr is None:
                return ip or "-"
            if not self._trusted(addr):
                return addr
            candidate = addr
        # Every hop is one of our proxies: the left-most is the closest to the client we know.
        return candidate or "-"

    def _walk_quoted(self, ip: str | None, header: str) -> str:
        """Walk a ``Forwarded`` header that has quoted strings, reading it from the right."""
        candidate = ip
        for count, (node, start) in enumerate(_forwarded_from_right(header)):
            addr = _parse_ip(node) if count < MAX_HOPS and len(node) <= _MAX_TEXT else None
            if addr is None:
                return ip or "-"
            if not self._trusted(addr):
                # What was read is what a reader from the left sees only if no quoted string
                # opened further left is still open where it begins.
                return addr if _quotes_closed(header, start) else ip or "-"
            candidate = addr
        return candidate or "-"
