"""
The access line: one record per request on the ``ctxlog.access`` logger, when asked for.

Each middleware measures the response (status, size, duration) while it passes through, and
calls :func:`write_access` once, with the request's context still set, when the response is
done: ASGI after the last body message, WSGI when the server closes the response, Django when
its response is complete. The line is written in the style of the combined log format, its
columns readable by an anchored pattern whatever the request held (see docs/access-log.md), and
the same values go into the record's ``extra`` fields for structured formatters.
"""

from __future__ import annotations

import logging
import re
from typing import Final

from ctxlog.context import MISSING, get_context
from ctxlog.record.adapter import get_logger
from ctxlog.record.escape import Escaped, quoted, sanitize, sanitize_once, token
from ctxlog.web.text import MAX_HEADER, MAX_METHOD, MAX_PATH, MAX_PROTOCOL, MAX_USER

__all__ = ["access_logger", "referer_field", "write_access"]

#: Schemes whose URLs always have an authority, however many slashes follow (WHATWG "special").
_SPECIAL_SCHEMES: Final = frozenset({"http", "https", "ws", "wss", "ftp"})
_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
#: What may be left of an authority once the userinfo is gone: a host (a name, an IPv4 address
#: or a bracketed IPv6 one) and an optional port. Anything else is not shown at all.
_HOST_PORT: Final = re.compile(r"(?:\[[0-9A-Za-z:.%]*\]|[^\s/\\?#@\[\]:]*)(?::[0-9]*)?")
_AUTHORITY_END: Final = re.compile(r"[/\\]")
#: What a browser strips from both ends of a URL, and what it removes from anywhere in it.
_URL_SPACE: Final = "".join(map(chr, range(0x21)))
_URL_IGNORED: Final = dict.fromkeys(map(ord, "\t\n\r"))


access_logger = get_logger("ctxlog.access")


def write_access(
    *,
    log_query: bool,
    method: str,
    path: str,
    query: str,
    protocol: str,
    status: int,
    size: int,
    duration_ms: float,
    referer: str,
    user_agent: str,
) -> None:
    """
    Log one access line on ``ctxlog.access``, in the style of the combined log format.

    ``log_query``: the middleware's option; the query string is left out without it.

    Every column can be read by an anchored pattern whatever the request held (see
    docs/access-log.md): ``method``, ``path`` and ``protocol`` arrive escaped, the user and
    the method and protocol are written without whitespace, and the quoted parts have their
    ``"`` escaped. The line is :class:`~ctxlog.record.escape.Escaped`, so
    :class:`ctxlog.Formatter` does not escape it a second time.
    """
    if not access_logger.isEnabledFor(logging.INFO):
        return
    # The path and method were escaped when captured (Escaped, if anything needed it); a
    # developer may have bound others in their place, raw: escape what is not escaped yet.
    target = sanitize_once(path, MAX_PATH)
    if log_query and query:
        target = f"{target}?{sanitize(query, MAX_PATH)}"
    referer = referer_field(referer, keep_query=log_query) if referer else MISSING
    referer = sanitize(referer or MISSING, MAX_HEADER)
    user_agent = sanitize(user_agent, MAX_HEADER) if user_agent else MISSING
    fields = get_context()
    user = fields.get("user", MISSING)
    line = '%s - %s "%s %s %s" %s %s "%s" "%s" %.1fms' % (  # noqa: UP031 - one C call
        fields.get("ip", MISSING),
        # A bound user is trusted, but this line is parsed by column: no controls in it.
        token(sanitize_once(user if isinstance(user, str) else str(user), MAX_USER)),
        token(sanitize_once(method, MAX_METHOD)),
        quoted(target),
        token(sanitize_once(protocol, MAX_PROTOCOL)),
        status,
        size or "-",
        quoted(referer),
        quoted(user_agent),
        duration_ms,
    )
    access_logger.info(
        Escaped(line),
        extra={
            "status": status,
            "size": size,
            "duration_ms": round(duration_ms, 3),
            "protocol": protocol,
            "referer": referer,
            "user_agent": user_agent,
            **({"query": sanitize(query, MAX_PATH)} if log_query else {}),
        },
    )


def referer_field(value: str, *, keep_query: bool) -> str:
    r"""
    Return what the access log shows of a ``Referer``: ``scheme://host[:port]/path``.

    The userinfo (``user:password@``) and the fragment are never kept; the query only with
    ``keep_query``. The URL is read as a browser reads it (``https:host``, ``https:///host`` and
    ``https:\\host`` all name ``host``), so no spelling slips a password through. A reference
    without a scheme keeps its path (and query). A URL whose authority, once the userinfo is
    removed, is not a host and port cannot be cut apart safely (``https://alice:pa/ss@host``):
    it is shown as ``-``.

    .. versionadded:: 0.3.0
    """
    value = value.strip(_URL_SPACE)
    if not value.isprintable():
        value = value.translate(_URL_IGNORED)  # a browser drops tabs and line breaks
    value = value.partition("#")[0]
    base, mark, query = value.partition("?")
    if not keep_query:
        mark = query = ""
    match = _SCHEME.match(base)
    if match is not None:
        scheme = match.group()
        rest = base[match.end() :]
        if scheme[:-1].lower() in _SPECIAL_SCHEMES:
            rest = rest.lstrip("/\\")
        elif rest[:2] == "//":
            rest = rest[2:]
        else:  # no authority (urn:, about:, android-app:): nothing there may be a user name
            return scheme + rest.rpartition("@")[2] + mark + query
    elif len(base) >= 2 and base[0] in "/\\" and base[1] in "/\\":
        scheme, rest = "", base[2:]  # a network-path reference: //host/path
    else:
        return base + mark + query  # a path: it has no authority
    end = _AUTHORITY_END.search(rest)
    authority, path = (rest[: end.start()], rest[end.start() :]) if end else (rest, "")
    host = authority.rpartition("@")[2]
    if _HOST_PORT.fullmatch(host) is None:
        return MISSING
    return f"{scheme}//{host}{path}{mark}{query}"
