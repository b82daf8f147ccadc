"""Client IP resolution: the peer address, and proxy headers only from trusted proxies."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import sys
from typing import ClassVar

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import ctxlog
from ctxlog.web.proxies import MAX_ELEMENT, MAX_FORWARDED, MAX_HOPS, ClientIP, _parse_ip, parse_ip

PROXY = "10.0.0.1"
TRUSTED = ("10.0.0.0/8", "2001:db8:ffff::/48")
CLIENT = "203.0.113.7"
XFF = "X-Forwarded-For"
FWD = "Forwarded"


def assert_ip_field(value: str) -> None:
    """Fail unless ``value`` is what the ip field may hold: a normalised address or "-"."""
    assert len(value) <= 45
    assert value.isascii()
    assert value.isprintable()
    if value != "-":
        assert str(ipaddress.ip_address(value)) == value


# --- parse_ip --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3.4", "1.2.3.4"),
        (" 1.2.3.4\t", "1.2.3.4"),
        ("1.2.3.4:80", "1.2.3.4"),
        ("1.2.3.4:65535", "1.2.3.4"),
        ("1.2.3.4:_obf-port", "1.2.3.4"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("[::1]:443", "::1"),
        ("[2001:db8::1]:_abc", "2001:db8::1"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("::FFFF:0102:0304", "1.2.3.4"),
        ("[::ffff:1.2.3.4]:80", "1.2.3.4"),
        ("fe80::1%eth0", "fe80::1"),
        ("[fe80::1%eth0]:80", "fe80::1"),
        ("0.0.0.0", "0.0.0.0"),
    ],
)
def test_parse_ip_normalises_addresses(text, expected):
    """Addresses, with or without port, brackets or zone id, come back in ipaddress's form."""
    assert expected == parse_ip(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "garbage",
        "unknown",
        "_hidden",
        "testclient",
        "localhost",
        "-",
        "001.002.003.004",
        "1.2.3",
        "127.1",
        "0x7f.0.0.1",
        "256.1.1.1",
        "1.2.3.4.5",
        "1.2.3.4:",
        "1.2.3.4:http",
        "1.2.3.4:65536",
        "1.2.3.4:\u2460",
        "1.2.3.4:\u0663",
        "1.2.3.4%eth0",
        "1.2.3.4 5.6.7.8",
        "1.2.3.4,5.6.7.8",
        "[::1",
        "::1]",
        "[::1]x",
        "[::1]:",
        "[::1]:abc",
        "[[::1]]",
        "\x1b[31mevil\r\nx",
        "1.2.3.4\n",
        "\r\n1.2.3.4",
        "\x1c1.2.3.4",
        "\u00a01.2.3.4",
        "\uff11.\uff12.\uff13.\uff14",
        "1" * 10_240,
        "1.2.3.4" + " " * 200,
    ],
)
def test_parse_ip_rejects_what_is_not_an_address(text):
    """Garbage, leading zeros, bad ports, odd whitespace and huge tokens are not addresses."""
    assert parse_ip(text) is None


def test_parse_ip_keeps_oversized_text_out_of_the_cache():
    """A 10 KB token is rejected before the cache, so it cannot pin memory there."""
    token = "9" * 10_240
    before = _parse_ip.cache_info()

    assert parse_ip(token) is None
    assert before.currsize == _parse_ip.cache_info().currsize
    assert before.misses == _parse_ip.cache_info().misses


@settings(deadline=None)
@given(st.text())
def test_parse_ip_never_raises_and_gives_a_normalised_address(text):
    """For any text, parse_ip gives None or a normalised address that fits the ip field."""
    result = parse_ip(text)

    if result is not None:
        assert_ip_field(result)
        assert ipaddress.ip_address(result).version == 4 or "." not in result


@settings(deadline=None)
@given(st.ip_addresses(), st.integers(0, 65535))
def test_parse_ip_reads_every_address_with_and_without_port(addr, port):
    """Any address parses to itself, bare or with a port, IPv4-mapped IPv6 as IPv4."""
    mapped = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else None
    expected = str(mapped or addr)
    with_port = f"{addr}:{port}" if addr.version == 4 else f"[{addr}]:{port}"

    assert expected == parse_ip(str(addr))
    assert expected == parse_ip(addr.exploded)
    assert expected == parse_ip(with_port)


# --- construction ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trusted", "proxy_header", "expected"),
    [
        ((), XFF, None),
        ((), FWD, None),
        ("", XFF, None),
        ([PROXY], XFF, "x-forwarded-for"),
        ([PROXY], "x-forwarded-for", "x-forwarded-for"),
        ([PROXY], FWD, "forwarded"),
        ([PROXY], "FORWARDED", "forwarded"),
        ("*", XFF, "x-forwarded-for"),
    ],
)
def test_header_names_the_only_header_to_read(trusted, proxy_header, expected):
    """.header is the configured header in lowercase, and None when no proxy is trusted."""
    assert expected == ClientIP(trusted, proxy_header).header


def test_default_reads_no_header():
    """Without trusted proxies the peer is the client, whatever the header says."""
    client_ip = ClientIP()

    assert client_ip.header is None
    assert "1.2.3.4" == client_ip.resolve("1.2.3.4", "9.9.9.9")


@pytest.mark.parametrize(
    "bad", ["nope", "", " ", "10.0.0.0/33", "10.0.0.1/8/8", "001.002.003.004", "10.0.0.0/x"]
)
def test_invalid_network_fails_at_construction_naming_the_value(bad):
    """An entry that is not an address or network raises ValueError that shows it."""
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        ClientIP([PROXY, bad])


def test_invalid_network_in_a_comma_separated_string_is_named():
    """In a comma-separated string, the bad entry is the one named in the error."""
    with pytest.raises(ValueError, match="'nope'"):
        ClientIP("10.0.0.1, nope")


@pytest.mark.parametrize(
    "bad", [10, None, b"10.0.0.1", ipaddress.ip_network("10.0.0.0/8"), ("10.0.0.1",)]
)
def test_non_string_entry_raises_type_error(bad):
    """An entry that is not a string raises TypeError that shows it."""
    with pytest.raises(TypeError, match=re.escape(repr(bad))):
        ClientIP([PROXY, bad])


@pytest.mark.parametrize("bad", ["X-Real-IP", "", "X-Forwarded-For ", "X_Forwarded_For", None, 1])
def test_unknown_proxy_header_raises_value_error(bad):
    """proxy_header must be X-Forwarded-For or Forwarded; the error shows the value."""
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        ClientIP([PROXY], bad)


@pytest.mark.parametrize("trusted", ["*", ["*"], "10.0.0.1, *", [" * "]])
def test_trust_all_warns_at_construction(trusted, caplog):
    """Trusting every peer logs one warning on the "ctxlog" logger when built."""
    with caplog.at_level(logging.WARNING, logger="ctxlog"):
        client_ip = ClientIP(trusted)

    assert client_ip.trust_all
    assert [("ctxlog", logging.WARNING)] == [(r.name, r.levelno) for r in caplog.records]
    assert "'*'" in caplog.records[0].getMessage()


def test_explicit_trust_list_does_not_warn(caplog):
    """An explicit list of proxies logs nothing."""
    with caplog.at_level(logging.DEBUG, logger="ctxlog"):
        ClientIP(["10.0.0.0/8", "::1"], FWD)

    assert [] == caplog.records


def test_comma_separated_string_lists_several_proxies():
    """A string may list several proxies, separated by commas."""
    client_ip = ClientIP(" 10.0.0.1 , 192.168.0.0/16 ")

    assert CLIENT == client_ip.resolve("192.168.3.4", CLIENT)
    assert CLIENT == client_ip.resolve("10.0.0.1", CLIENT)
    assert "10.0.0.2" == client_ip.resolve("10.0.0.2", CLIENT)


def test_network_with_host_bits_is_refused_with_both_readings():
    """'10.0.0.1/8' is probably a typo: refused, naming the network and the single address."""
    with pytest.raises(ValueError, match=r"write '10\.0\.0\.0/8' to trust the network, or '10\.0\.0\.1'"):
        ClientIP(["10.0.0.1/8"])


# --- resolve: table --------------------------------------------------------------------------

MANY = ", ".join(["1.1.1.1"] * 40)

CASES = [
    # Each case: peer, trusted proxies, proxy_header, header value, expected ip field.
    # Untrusted peers: the header is never read.
    ("198.51.100.9", TRUSTED, XFF, "1.1.1.1", "198.51.100.9"),
    ("198.51.100.9", TRUSTED, XFF, f"1.1.1.1, {PROXY}", "198.51.100.9"),
    ("198.51.100.9", TRUSTED, FWD, "for=1.1.1.1", "198.51.100.9"),
    ("198.51.100.9", (), XFF, "1.1.1.1", "198.51.100.9"),
    ("::ffff:198.51.100.9", TRUSTED, XFF, "1.1.1.1", "198.51.100.9"),
    ("2001:db8::9", TRUSTED, XFF, "1.1.1.1", "2001:db8::9"),
    # Trusted peer, X-Forwarded-For.
    (PROXY, TRUSTED, XFF, None, PROXY),
    (PROXY, TRUSTED, XFF, CLIENT, CLIENT),
    (PROXY, TRUSTED, XFF, f" {CLIENT} ", CLIENT),
    (PROXY, TRUSTED, XFF, f"1.1.1.1, {CLIENT}", CLIENT),
    (PROXY, TRUSTED, XFF, f"1.1.1.1,{CLIENT}", CLIENT),
    (PROXY, TRUSTED, XFF, f"{CLIENT}, 10.0.0.2, 10.0.0.3", CLIENT),
    (PROXY, TRUSTED, XFF, f"1.1.1.1, {CLIENT}, 10.0.0.2", CLIENT),
    (PROXY, TRUSTED, XFF, "10.0.0.5, 10.0.0.2", "10.0.0.5"),
    (PROXY, TRUSTED, XFF, f"{CLIENT}:8080", CLIENT),
    (PROXY, TRUSTED, XFF, "[2001:db8::7]:443", "2001:db8::7"),
    (PROXY, TRUSTED, XFF, "2001:DB8::7", "2001:db8::7"),
    (PROXY, TRUSTED, XFF, f"::ffff:{CLIENT}", CLIENT),
    (PROXY, TRUSTED, XFF, f"garbage, {CLIENT}", CLIENT),
    (PROXY, TRUSTED, XFF, f"{MANY}, {CLIENT}", CLIENT),
    (PROXY, TRUSTED, XFF, f"{MANY}, {CLIENT}, 10.0.0.2", CLIENT),
    # Trusted peer, X-Forwarded-For garbage: the peer.
    (PROXY, TRUSTED, XFF, "", PROXY),
    (PROXY, TRUSTED, XFF, " ", PROXY),
    (PROXY, TRUSTED, XFF, ",", PROXY),
    (PROXY, TRUSTED, XFF, f"{CLIENT},", PROXY),
    (PROXY, TRUSTED, XFF, "garbage", PROXY),
    (PROXY, TRUSTED, XFF, "unknown", PROXY),
    (PROXY, TRUSTED, XFF, "\x1b[31mevil\r\nx", PROXY),
    (PROXY, TRUSTED, XFF, "001.002.003.004", PROXY),
    (PROXY, TRUSTED, XFF, f"{CLIENT}, garbage", PROXY),
    (PROXY, TRUSTED, XFF, f"{CLIENT}, garbage, 10.0.0.2", PROXY),
    (PROXY, TRUSTED, XFF, "1" * 10_240, PROXY),
    (PROXY, TRUSTED, XFF, f"{CLIENT} 1.1.1.1", PROXY),
    (PROXY, TRUSTED, XFF, f"for={CLIENT}", PROXY),
    # IPv6 proxies and IPv4-mapped peers.
    ("2001:db8:ffff::1", TRUSTED, XFF, CLIENT, CLIENT),
    ("2001:db8:ffff::1", TRUSTED, XFF, "2001:db8::7", "2001:db8::7"),
    ("::ffff:10.0.0.1", TRUSTED, XFF, CLIENT, CLIENT),
    ("::1", ["::1"], XFF, CLIENT, CLIENT),
    ("10.0.0.1", ["::ffff:10.0.0.0/104"], XFF, CLIENT, CLIENT),
    ("::ffff:10.0.0.1", ["::ffff:10.0.0.1"], XFF, CLIENT, CLIENT),
    # Peers that are not addresses.
    ("testclient", TRUSTED, XFF, CLIENT, "-"),
    ("testclient", TRUSTED, XFF, None, "-"),
    (None, TRUSTED, XFF, CLIENT, "-"),
    ("", TRUSTED, XFF, CLIENT, "-"),
    (None, (), XFF, None, "-"),
    ("\x1b[2Jevil", TRUSTED, XFF, CLIENT, "-"),
    ("1" * 10_240, TRUSTED, XFF, CLIENT, "-"),
    # Trust all: the left-most address wins (spoofable, hence the warning).
    ("198.51.100.9", "*", XFF, f"1.1.1.1, {CLIENT}", "1.1.1.1"),
    ("198.51.100.9", "*", XFF, "garbage", "198.51.100.9"),
    ("testclient", "*", XFF, CLIENT, CLIENT),
    ("testclient", "*", XFF, "garbage", "-"),
    # Trusted peer, Forwarded.
    (PROXY, TRUSTED, FWD, None, PROXY),
    (PROXY, TRUSTED, FWD, "for=192.0.2.60;proto=http", "192.0.2.60"),
    (PROXY, TRUSTED, FWD, "for=192.0.2.60 ; proto=http ; by=10.0.0.1", "192.0.2.60"),
    (PROXY, TRUSTED, FWD, 'for="[2001:db8::1]:4711"', "2001:db8::1"),
    (PROXY, TRUSTED, FWD, 'for="192.0.2.60:_abc"', "192.0.2.60"),
    (PROXY, TRUSTED, FWD, 'for="\\192.0.2.60"', "192.0.2.60"),
    (PROXY, TRUSTED, FWD, "for=[2001:db8::1]", "2001:db8::1"),
    (PROXY, TRUSTED, FWD, "For=192.0.2.60", "192.0.2.60"),
    (PROXY, TRUSTED, FWD, "FOR=192.0.2.60;PROTO=https", "192.0.2.60"),
    (PROXY, TRUSTED, FWD, "proto=http;for=192.0.2.60", "192.0.2.60"),
    (PROXY, TRUSTED, FWD, 'for=192.0.2.60;host="a,b"', "192.0.2.60"),
    (PROXY, TRUSTED, FWD, 'for="_a,b", for=192.0.2.60', "192.0.2.60"),
    (PROXY, TRUSTED, FWD, "for=1.1.1.1, for=192.0.2.60", "192.0.2.60"),
    (PROXY, TRUSTED, FWD, "for=1.1.1.1,for=192.0.2.60", "192.0.2.60"),
    (PROXY, TRUSTED, FWD, "for=192.0.2.60, for=10.0.0.2;proto=https", "192.0.2.60"),
    (PROXY, TRUSTED, FWD, "for=_hidden, for=192.0.2.60", "192.0.2.60"),
    (PROXY, TRUSTED, FWD, "for=10.0.0.5, for=10.0.0.2", "10.0.0.5"),
    (
        PROXY,
        TRUSTED,
        FWD,
        "for=192.0.2.43, for=198.51.100.17;by=203.0.113.60;proto=http;host=example.com",
        "198.51.100.17",
    ),
    (PROXY, TRUSTED, FWD, ", ".join(["for=1.1.1.1"] * 40 + ["for=192.0.2.60"]), "192.0.2.60"),
    # Trusted peer, Forwarded garbage: the peer.
    (PROXY, TRUSTED, FWD, "for=_hidden", PROXY),
    (PROXY, TRUSTED, FWD, "for=unknown", PROXY),
    (PROXY, TRUSTED, FWD, 'for="unknown"', PROXY),
    (PROXY, TRUSTED, FWD, "proto=https;by=10.0.0.2", PROXY),
    (PROXY, TRUSTED, FWD, "for=192.0.2.60, proto=https", PROXY),
    (PROXY, TRUSTED, FWD, "for=1.1.1.1;for=192.0.2.60", PROXY),
    (PROXY, TRUSTED, FWD, 'for="192.0.2.60', PROXY),
    (PROXY, TRUSTED, FWD, 'for="x, for=192.0.2.60', PROXY),
    (PROXY, TRUSTED, FWD, 'for=192.0.2."60"', PROXY),
    (PROXY, TRUSTED, FWD, "for=192.0.2.60 junk", PROXY),
    (PROXY, TRUSTED, FWD, "=192.0.2.60", PROXY),
    (PROXY, TRUSTED, FWD, "for", PROXY),
    (PROXY, TRUSTED, FWD, "", PROXY),
    (PROXY, TRUSTED, FWD, "192.0.2.60", PROXY),
    (PROXY, TRUSTED, FWD, "for=192.0.2.60,", PROXY),
    (PROXY, TRUSTED, FWD, "for=\x1b[2J;proto=http", PROXY),
    (PROXY, TRUSTED, FWD, 'for="\x1b[31mevil\r\nx"', PROXY),
    (PROXY, TRUSTED, FWD, "for=" + "1" * 10_240, PROXY),
]


@pytest.mark.parametrize(("peer", "trusted", "proxy_header", "header", "expected"), CASES)
def test_resolve_table(peer, trusted, proxy_header, header, expected):
    """The client is the peer, or the right-most untrusted hop when the peer is trusted."""
    actual = ClientIP(trusted, proxy_header).resolve(peer, header)

    assert expected == actual
    assert_ip_field(actual)


def test_joined_header_lines_are_read_as_one_list():
    """Several header lines joined with "," by the caller are one chain, last line right-most."""
    client_ip = ClientIP(TRUSTED)
    lines = ["1.1.1.1", f"{CLIENT}, 10.0.0.2"]

    assert CLIENT == client_ip.resolve(PROXY, ",".join(lines))


def test_joined_forwarded_lines_are_read_as_one_list():
    """Forwarded lines joined with "," are one list of elements, last line right-most."""
    client_ip = ClientIP(TRUSTED, FWD)
    lines = ["for=1.1.1.1", 'for="[2001:db8::7]:80";proto=https']

    assert "2001:db8::7" == client_ip.resolve(PROXY, ",".join(lines))


def test_forwarded_syntax_is_garbage_to_the_x_forwarded_for_reader():
    """A ClientIP for X-Forwarded-For does not understand Forwarded values, and vice versa."""
    assert PROXY == ClientIP(TRUSTED, XFF).resolve(PROXY, "for=1.1.1.1")
    assert PROXY == ClientIP(TRUSTED, FWD).resolve(PROXY, "1.1.1.1")


@pytest.mark.parametrize(
    ("length", "expected"),
    [(MAX_HOPS - 1, "10.0.0.99"), (MAX_HOPS, "10.0.0.99"), (MAX_HOPS + 1, PROXY)],
)
@pytest.mark.parametrize("proxy_header", [XFF, FWD])
def test_chain_of_trusted_proxies_longer_than_max_hops_is_garbage(length, expected, proxy_header):
    """Up to MAX_HOPS trusted hops give the left-most; a longer all-trusted chain gives the peer."""
    hops = ["10.0.0.99"] + ["10.0.0.2"] * (length - 1)
    if proxy_header == FWD:
        hops = [f"for={hop}" for hop in hops]

    assert expected == ClientIP(TRUSTED, proxy_header).resolve(PROXY, ", ".join(hops))


@pytest.mark.parametrize(
    ("proxies", "expected"), [(MAX_HOPS - 2, CLIENT), (MAX_HOPS - 1, CLIENT), (MAX_HOPS, PROXY)]
)
@pytest.mark.parametrize("proxy_header", [XFF, FWD])
def test_client_is_found_within_max_hops_from_the_right(proxies, expected, proxy_header):
    """The client is read when it is among the right-most MAX_HOPS entries, and only then."""
    hops = ["1.1.1.1", "1.1.1.1", CLIENT] + ["10.0.0.2"] * proxies
    if proxy_header == FWD:
        hops = [f"for={hop}" for hop in hops]

    assert expected == ClientIP(TRUSTED, proxy_header).resolve(PROXY, ", ".join(hops))


@pytest.mark.parametrize("proxy_header", [XFF, FWD])
def test_client_cannot_hide_behind_a_long_prefix(proxy_header):
    """Any number of entries pre-seeded by the client still gives the real client."""
    for count in (1, MAX_HOPS - 1, MAX_HOPS, MAX_HOPS + 1, 1000):
        hops = ["1.1.1.1"] * count + [CLIENT, "10.0.0.2"]
        if proxy_header == FWD:
            hops = [f"for={hop}" for hop in hops]

        assert CLIENT == ClientIP(TRUSTED, proxy_header).resolve(PROXY, ", ".join(hops))


def test_resolve_is_stable_across_calls():
    """The caches give the same answer on every call."""
    client_ip = ClientIP(TRUSTED)

    assert [CLIENT] * 3 == [client_ip.resolve(PROXY, f"1.1.1.1, {CLIENT}") for _ in range(3)]


# --- resolve: properties ---------------------------------------------------------------------

TRUSTED_NETWORKS = [ipaddress.ip_network(net) for net in TRUSTED]


def normalised(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    mapped = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else None
    return str(mapped or addr)


def is_trusted(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    return any(ip in net for net in TRUSTED_NETWORKS)


untrusted_peers = st.ip_addresses().filter(lambda a: not is_trusted(normalised(a)))
trusted_peers = st.sampled_from([PROXY, "10.255.0.3", "2001:db8:ffff::1", "::ffff:10.1.2.3"])
header_text = st.text(
    st.one_of(
        st.characters(), st.sampled_from("0123456789abcdef.:[],;=\"' \tfor_unknown\\\r\n\x1b")
    ),
    max_size=80,
)


@settings(deadline=None)
@given(untrusted_peers, st.sampled_from([XFF, FWD]), header_text)
def test_untrusted_peer_always_gives_the_peer(peer, proxy_header, header):
    """From an untrusted peer, no header value changes the result: it is the normalised peer."""
    assert normalised(peer) == ClientIP(TRUSTED, proxy_header).resolve(str(peer), header)


@settings(deadline=None)
@given(trusted_peers, header_text.filter(lambda h: "\\" not in h))
def test_trusted_peer_gives_the_peer_or_an_address_from_the_header(peer, header):
    """From a trusted peer the result is the peer or an address written in the header."""
    peer_ip = parse_ip(peer)
    for proxy_header in (XFF, FWD):
        actual = ClientIP(TRUSTED, proxy_header).resolve(peer, header)

        assert_ip_field(actual)
        if actual != peer_ip:
            substrings = {
                header[i:j] for i in range(len(header)) for j in range(i + 1, len(header) + 1)
            }
            assert actual in {parse_ip(s) for s in substrings if len(s) <= 64}


@settings(deadline=None)
@given(trusted_peers, st.sampled_from([XFF, FWD]), st.text())
def test_trusted_peer_with_any_header_gives_a_valid_ip_field(peer, proxy_header, header):
    """Whatever the header holds, the result is a normalised address, never raw header text."""
    assert_ip_field(ClientIP(TRUSTED, proxy_header).resolve(peer, header))


# Hops of a generated X-Forwarded-For chain: (text written in the header, parsed address).
hop = st.one_of(
    st.ip_addresses().map(lambda a: (str(a), normalised(a))),
    st.ip_addresses(v=4).map(lambda a: (f"{a}:{a.packed[0]}", str(a))),
    st.ip_addresses(v=6).map(lambda a: (f"[{a}]:443", normalised(a))),
    st.sampled_from(["10.0.0.2", "10.200.0.9", "2001:db8:ffff::5"]).map(lambda a: (a, a)),
    st.sampled_from(["", "unknown", "_hidden", "garbage", "001.002.003.004", "\x1b[2J"]).map(
        lambda a: (a, None)
    ),
)


chains = st.builds(
    lambda left, run, right: [*left, *[("10.0.0.2", "10.0.0.2")] * run, *right],
    st.lists(hop, max_size=6),
    st.integers(0, MAX_HOPS + 2),
    st.lists(hop, max_size=3),
).filter(bool)


@settings(deadline=None)
@given(trusted_peers, chains, st.sampled_from([",", ", "]))
def test_x_forwarded_for_matches_a_reference_walk(peer, hops, separator):
    """A generated chain resolves like a plain right-to-left walk over at most MAX_HOPS hops."""
    peer_ip = parse_ip(peer)
    expected = None
    for index, (_, addr) in enumerate(reversed(hops)):
        if index == MAX_HOPS or addr is None:
            expected = peer_ip
            break
        if not is_trusted(addr):
            expected = addr
            break
    else:
        expected = hops[0][1]
    header = separator.join(text for text, _ in hops)

    assert expected == ClientIP(TRUSTED).resolve(peer, header)


# --- Forwarded, read from the right ------------------------------------------------------------

FORWARDED_CASES = [
    # header, expected ip field (peer PROXY, TRUSTED proxies).
    # Quoted strings in the elements read: commas, semicolons and quoted-pairs inside them.
    (f'for=1.1.1.1, for={CLIENT};host="a,b;c"', CLIENT),
    (f'for=1.1.1.1, for={CLIENT};host="a\\",b"', CLIENT),
    (f'for=1.1.1.1, for="{CLIENT}:80", for="[2001:db8:ffff::1]"', CLIENT),
    ('for="[2001:db8::7]:4711", for=10.0.0.2', "2001:db8::7"),
    ('for="_a,b", for="[2001:db8::7]:4711";by="[2001:db8:ffff::1]"', "2001:db8::7"),
    # What a client wrote left of the elements read is not parsed...
    (f"garbage;;=, for={CLIENT}", CLIENT),
    (f'host="{"x" * 2000}", for={CLIENT}', CLIENT),
    (f'for="x", for="y", for={CLIENT}', CLIENT),
    # ... but a quote it leaves open would put them inside a quoted string: the peer.
    (f'for="x, for={CLIENT}', PROXY),
    (f'for="x, for={CLIENT}, for=10.0.0.2', PROXY),
    (f'for="x", y=", for={CLIENT}', PROXY),
    ('for="x, for="[2001:db8::7]", for=10.0.0.2', PROXY),
    # A quoted-pair left of the elements read is not worth reading: the peer.
    (f'for="a\\"b", for={CLIENT}', PROXY),
    # A quote written so that our element reads as quoted text from the right: no for= node.
    (f'x=", for={CLIENT}"', PROXY),
    # An element longer than MAX_ELEMENT, reached: the peer.
    (f'for={CLIENT};host="{"x" * MAX_ELEMENT}"', PROXY),
    (f"for={CLIENT};host={'x' * MAX_ELEMENT}", PROXY),
    (f'for=1.1.1.1, for={CLIENT};host="{"x" * (MAX_ELEMENT - 40)}"', CLIENT),
    # A header longer than MAX_FORWARDED: the peer, without reading it.
    (", ".join([f"for={CLIENT}"] * (MAX_FORWARDED // 15 + 1)), PROXY),
    (("for=1.1.1.1, " * MAX_FORWARDED)[: MAX_FORWARDED - 17] + f"for={CLIENT}", CLIENT),
]


@pytest.mark.parametrize(("header", "expected"), FORWARDED_CASES)
def test_forwarded_read_from_the_right(header, expected):
    """Elements read from the right parse whole; a quote left open further left gives the peer."""
    actual = ClientIP(TRUSTED, FWD).resolve(PROXY, header)

    assert expected == actual


def reference_split(value: str) -> list[str] | None:
    """Read a whole Forwarded header from the left: each element's for= node, or None."""
    pair = re.compile(
        r"""[ \t]*(?:([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|[^ \t;,"]*)"""
        r"""[ \t]*)?([;,]|\Z)"""
    )
    nodes: list[str] = []
    node: str | None = None
    pos = 0
    while True:
        match = pair.match(value, pos)
        if match is None:
            return None
        name, raw, separator = match.groups()
        if name is not None and name.lower() == "for":
            if node is not None:
                node = ""
            elif raw[:1] == '"':
                node = re.sub(r"\\(.)", r"\1", raw[1:-1])
            else:
                node = raw
        if separator != ";":
            nodes.append(node or "")
            node = None
            if not separator:
                return nodes
        pos = match.end()


def reference_walk(peer: str, nodes: list[str]) -> str:
    """The right-to-left walk over a list of nodes, at most MAX_HOPS of them."""
    peer_ip = parse_ip(peer) or "-"
    candidate = peer_ip
    for index, node in enumerate(reversed(nodes)):
        addr = parse_ip(node)
        if index == MAX_HOPS or addr is None:
            return peer_ip
        if not is_trusted(addr):
            return addr
        candidate = addr
    return candidate


forwarded_text = st.lists(
    st.sampled_from(
        [
            "for=", "For=", "by=", "proto=http", ";", ",", ", ", " ", "\t", '"', "\\", '\\"', "=",
            "x", "a,b", "_hidden", "10.0.0.2", CLIENT, "[2001:db8::1]:4711", '"[2001:db8::1]"',
            f'"{CLIENT}:80"', '"10.0.0.3"', "\n",
        ]
    ),
    max_size=16,
).map("".join)


@settings(deadline=None, max_examples=500)
@given(trusted_peers, forwarded_text)
def test_forwarded_agrees_with_a_reader_from_the_left(peer, header):
    """Wherever a reader from the left parses the whole header, the result is its result."""
    nodes = reference_split(header)
    actual = ClientIP(TRUSTED, FWD).resolve(peer, header)

    if nodes is not None:
        expected = reference_walk(peer, nodes)
        if "\\" in header:  # a quoted-pair left of what is read gives the peer
            assert actual in {expected, parse_ip(peer)}
        else:
            assert expected == actual


@settings(deadline=None, max_examples=500)
@given(trusted_peers, forwarded_text)
@example(PROXY, f'\\x, for="{CLIENT}"')  # a backslash before any quote opens nothing
@example(PROXY, f'for="a\\"b", for={CLIENT}')  # a quoted-pair in the part not read: the peer
def test_forwarded_address_comes_from_a_part_a_reader_from_the_left_parses(peer, header):
    """An address from the header is what a reader from the left finds after some comma outside quotes."""
    actual = ClientIP(TRUSTED, FWD).resolve(peer, header)
    if actual == (parse_ip(peer) or "-"):
        return
    explanations = []
    for cut in [-1, *(i for i, char in enumerate(header) if char == ",")]:
        left, right = header[: cut + 1], header[cut + 1 :]
        nodes = reference_split(right)
        # No quoted string left open: no quote, or an even number and no quoted-pair after them.
        first = left.find('"')
        closed = first < 0 or (left.count('"') % 2 == 0 and "\\" not in left[first:])
        if nodes is not None and closed:
            explanations.append(reference_walk(peer, nodes))

    assert actual in explanations


def calls_made(function, *args) -> int:
    """Count the Python and C function calls made while ``function(*args)`` runs."""
    count = 0

    def profile(frame, event, arg):
        nonlocal count
        if event in {"call", "c_call"}:
            count += 1

    sys.setprofile(profile)
    try:
        function(*args)
    finally:
        sys.setprofile(None)
    return count


@pytest.mark.parametrize("quoted", [False, True])
def test_forwarded_work_does_not_grow_with_the_header(quoted):
    """1,000 elements written by a client in front of ours cost exactly the calls of 3."""
    client_ip = ClientIP(TRUSTED, FWD)
    junk = '"1.1.1.1";proto=http' if quoted else "1.1.1.1;proto=http"
    ours = f'for="{CLIENT}", for=10.0.0.2' if quoted else f"for={CLIENT}, for=10.0.0.2"
    small = ", ".join([f"for={junk}"] * 3 + [ours])
    large = ", ".join([f"for={junk}"] * 1000 + [ours])
    assert len(large) <= MAX_FORWARDED
    # _walk is resolve() without its cache; the first calls fill the trusted-address cache.
    assert CLIENT == client_ip._walk(PROXY, small) == client_ip._walk(PROXY, large)

    assert calls_made(client_ip._walk, PROXY, small) == calls_made(client_ip._walk, PROXY, large)


def test_oversized_forwarded_is_not_read():
    """A header over MAX_FORWARDED gives the peer after fewer calls than reading one element."""
    client_ip = ClientIP(TRUSTED, FWD)
    oversized = ", ".join([f"for={CLIENT}"] * (MAX_FORWARDED // 10))
    client_ip._walk(PROXY, f"for={CLIENT}")

    assert PROXY == client_ip._walk(PROXY, oversized)
    assert calls_made(client_ip._walk, PROXY, oversized) < calls_made(
        client_ip._walk, PROXY, f"for={CLIENT}"
    )


# --- repeated header lines under ASGI ----------------------------------------------------------


class CountedBytes(bytes):
    """Header bytes that record how many bytes each ``+`` involving them copies."""

    copied: ClassVar[list[int]] = []

    def __add__(self, other):
        CountedBytes.copied.append(len(self) + len(other))
        return bytes(self) + bytes(other)

    def __radd__(self, other):
        CountedBytes.copied.append(len(other) + len(self))
        return bytes(other) + bytes(self)


@pytest.mark.parametrize("proxy_header", [XFF, FWD])
def test_asgi_joins_repeated_proxy_lines_in_linear_time(proxy_header):
    """5,000 header lines are joined without copying the growing header once per line."""
    seen = []

    async def app(scope, receive, send):
        seen.append(ctxlog.get_context()["ip"])

    middleware = ctxlog.ASGIMiddleware(app, trusted_proxies=TRUSTED, proxy_header=proxy_header)
    name = proxy_header.lower().encode()
    prefix = b"for=" if proxy_header == FWD else b""
    lines = [CountedBytes(prefix + b"1.1.1.1")] * 5000 + [
        CountedBytes(prefix + CLIENT.encode()),
        CountedBytes(prefix + b"10.0.0.2"),
    ]
    scope = {"type": "http", "path": "/", "headers": [(name, line) for line in lines]}
    scope["client"] = (PROXY, 5555)
    CountedBytes.copied.clear()

    asyncio.run(middleware(scope, None, None))

    assert [CLIENT] == seen
    total = sum(len(line) + 1 for line in lines)
    # Joining by "+" line after line copies ~ lines x total / 2 bytes (here ~80 MB).
    assert sum(CountedBytes.copied) <= 2 * total
