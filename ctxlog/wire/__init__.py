"""
The wire format of records sent between processes: length-prefixed JSON frames, no pickle.

Used by ``JSONSocketHandler``, ``ctxlog receive`` and the ZeroMQ classes. Defined once, in
this package, for both sides; another language can send records by following this description
(the full specification, with what signing guarantees, is ``docs/wire-format.md``).

The modules follow a frame from sender to receiver: :mod:`~ctxlog.wire.schema` (the fields a
body may carry), :mod:`~ctxlog.wire.encoder` (a record becomes a body and a frame),
:mod:`~ctxlog.wire.frame` (the header and its size cap), :mod:`~ctxlog.wire.signing` (the
sender's stamp and tag, checked by the receiver), :mod:`~ctxlog.wire.replay` (each signed frame
taken once) and :mod:`~ctxlog.wire.decoder` (a frame becomes a record). Import the names below
from ``ctxlog.wire`` itself.

Frame
-----
::

    magic     2 bytes   b"CX"
    version   1 byte    1, or 2 for a signed frame with replay protection
    flags     1 byte    bit 0: signed
    length    4 bytes   unsigned big-endian: the number of body bytes
    -- signed, version 2 (what ctxlog sends with a key):
    sender   16 bytes   random, chosen anew by each sending process
    sequence  8 bytes   unsigned big-endian: 0, 1, 2 ... for each frame the sender signs
    time      8 bytes   unsigned big-endian: milliseconds since the epoch, when it was signed
    tag      32 bytes   HMAC-SHA256(key, the 40 bytes above + body)
    -- signed, version 1 (ctxlog 0.2): only the tag, HMAC-SHA256(key, header + body)
    body     length bytes of UTF-8 JSON: one object

Unsigned frames are version 1 (a version 2 unsigned frame reads the same). With a key, a
receiver accepts signed version 2 frames only, and each (sender, sequence) once: see
:class:`Replay`.

Body
----
Required: ``name`` (str), ``levelno`` (int 0-100), ``msg`` (str: the message already merged with
its arguments; receivers never apply ``%`` to network data), ``created`` (number, seconds
since the epoch, before the year 10000). ``levelname`` is derived from ``levelno`` by the
receiver; a sent name is kept only for a level number the receiver has no name for, and only if
it is a plain ASCII name that does not read as a standard one. Optional strings: ``levelname``,
``pathname``, ``filename``, ``module``, ``funcName``, ``threadName``, ``processName``,
``taskName``, ``exc_text`` (a formatted traceback), ``stack_info``, and the context fields
``ip``, ``user``, ``request_id``, ``method``, ``path``. Optional integers: ``lineno``,
``process``, ``thread``. ``extra``: an object of at most 64 further fields, each an identifier
that is not a LogRecord attribute nor ``peer`` (the receiver's own: where the frame came from),
with a string, number, boolean or null value. Anything else makes the frame invalid. A missing
``process``, ``thread``, ``processName`` or ``threadName`` is ``"-"`` in the decoded record.

Security
--------
Decoding never runs code: JSON only, a hard size cap read from the header before any body byte
is read, a strict schema, no ``NaN``/``Infinity``, bounded nesting. With a key, a frame whose tag
does not match (or that carries none) is rejected; tags are compared in constant time.
"""

from ctxlog.wire.decoder import decode
from ctxlog.wire.encoder import encode, encode_body
from ctxlog.wire.frame import (
    HEADER_SIZE,
    MAX_BODY,
    MAX_OVERHEAD,
    SIGNATURE_SIZE,
    TAG_SIZE,
    WireError,
    read_header,
    unsigned,
)
from ctxlog.wire.frame import MAGIC as MAGIC
from ctxlog.wire.frame import REPLAY_VERSION as REPLAY_VERSION
from ctxlog.wire.frame import SIGNED as SIGNED
from ctxlog.wire.frame import VERSION as VERSION
from ctxlog.wire.replay import REORDER as REORDER
from ctxlog.wire.replay import Replay, ReplayError
from ctxlog.wire.schema import MAX_EXTRA as MAX_EXTRA
from ctxlog.wire.signing import Signer

__all__ = [
    "HEADER_SIZE",
    "MAX_BODY",
    "MAX_OVERHEAD",
    "SIGNATURE_SIZE",
    "TAG_SIZE",
    "Replay",
    "ReplayError",
    "Signer",
    "WireError",
    "decode",
    "encode",
    "encode_body",
    "read_header",
    "unsigned",
]
