"""Message data readers of the SMTP server core: DATA transparency, bare CR/LF, size limits.

This is where SMTP smuggling is stopped, so it is kept small and apart from the command
grammar: only ``<CRLF>.<CRLF>`` ends DATA (RFC 5321 §4.1.1.4, §4.5.2), a line starts only
after CRLF, and bare CR and LF are passed through and reported, never taken for line ends.
The readers work on input cut anywhere and hold back at most two octets. BDAT (RFC 3030)
needs no unstuffing, only the counting that ``MessageBody`` shares with DATA.
"""

from __future__ import annotations

TERMINATOR = b".\r\n"


class DotReader:
    """RFC 5321 §4.5.2 transparency for DATA, over input that arrives in pieces of any size.

    A line starts only after CRLF (or at the start of the data). At a line start ``.CRLF``
    ends the data and any other leading dot is removed. Everything else passes unchanged,
    bare CR and LF included. At most two octets (``.`` or ``.\\r``, or a trailing ``\\r``)
    are left unconsumed while the reader waits to see what follows them.
    """

    def __init__(self) -> None:
        self._line_start = True

    def read(self, buf: bytes | bytearray) -> tuple[bytes, int, bool]:
        """Return (unstuffed data, octets consumed, ended). When data is returned the
        terminator is left for the next call, so data and end come as separate steps."""
        pieces: list[bytes | bytearray] = []
        pos, end = 0, len(buf)
        while pos < end:
            if self._line_start:
                head = bytes(buf[pos : pos + 3])
                if head == TERMINATOR:
                    if pieces:
                        break
                    return b"", pos + 3, True
                if TERMINATOR.startswith(head):
                    break  # "." or ".\r": wait for the octet that decides
                if head[:1] == b".":
                    pos += 1
                self._line_start = False
            found = buf.find(b"\r\n.", pos)
            if found < 0:
                stop = end
                if buf[end - 2 : end] == b"\r\n" and end - pos >= 2:
                    self._line_start = True
                elif buf[end - 1 : end] == b"\r":
                    stop = end - 1  # maybe the CR of a CRLF: decide when the next octet comes
                pieces.append(buf[pos:stop])
                pos = stop
                break
            pieces.append(buf[pos : found + 2])
            pos = found + 2
            self._line_start = True
        return b"".join(pieces), pos, False


class BareNewlines:
    """Notices a CR or LF that is not part of a CRLF, across pieces of any size."""

    def __init__(self) -> None:
        self._cr_pending = False
        self._seen = False

    def feed(self, data: bytes) -> None:
        if self._seen or not data:
            return
        if self._cr_pending:
            data = b"\r" + data
        self._cr_pending = data.endswith(b"\r")
        if self._cr_pending:
            data = data[:-1]
        pairs = data.count(b"\r\n")
        self._seen = data.count(b"\r") != pairs or data.count(b"\n") != pairs

    @property
    def seen(self) -> bool:
        return self._seen or self._cr_pending


class MessageBody:
    """One transaction's message octets as they arrive, from DATA or from all its BDAT chunks
    (RFC 3030 §2: they make one message): counted against the size limit, watched for bare
    CR and LF. Past the limit the data is still counted but no longer passed on."""

    def __init__(self, limit: int) -> None:
        self._limit = limit  # octets; 0 means no limit
        self.size = 0
        self.oversized = False
        self._bare = BareNewlines()

    def feed(self, data: bytes) -> bool:
        """Count ``data``; True while it is to be passed on, False once the limit was passed."""
        self.size += len(data)
        self._bare.feed(data)
        if self._limit and self.size > self._limit:
            self.oversized = True
        return not self.oversized

    @property
    def bare_newline(self) -> bool:
        return self._bare.seen
