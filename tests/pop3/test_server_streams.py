"""The server's chunked helpers against the core's whole-message rules: LIST sizes must equal
what DotStuffer sends, and the streaming TOP cut must equal ``top_bytes``, for any bytes and
any chunking."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from postbote.pop3.protocol import DotStuffer, top_bytes
from postbote.pop3.server import TopCut, WireSize, file_wire_size, unique_id, wire_size

# Bytes rich in the characters that matter: CR, LF, ".", and line starts.
mail_bytes = st.lists(st.sampled_from([b"\r\n", b"\n", b"\r", b".", b"a", b"Subject: x", b" "]),
                      max_size=60).map(b"".join)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


def sent_before_stuffing(data: bytes) -> bytes:
    """What a client gets back from RETR after undoing the dot-stuffing and the terminator."""
    stuffer = DotStuffer()
    out = stuffer.feed(data) + stuffer.end()
    assert out.endswith(b".\r\n")
    lines = out[:-3].split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


@settings(max_examples=300, deadline=None)
@given(mail_bytes, st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_wire_size_equals_octets_sent_in_any_chunking(data, cuts):
    counter = WireSize()
    for piece in chunked(data, cuts):
        counter.feed(piece)
    assert counter.total() == wire_size(data) == len(sent_before_stuffing(data))


def test_wire_size_examples():
    assert wire_size(b"") == 0
    assert wire_size(b"a\r\n") == 3
    assert wire_size(b"a\nb\n") == 6
    assert wire_size(b"no end") == 8  # a CRLF is added before the terminator
    assert wire_size(b"cr end\r") == 8  # the final CR is sent as CRLF


def test_file_wire_size_reads_the_blob(tmp_path):
    path = tmp_path / "blob"
    data = (b"x" * 1000 + b"\n") * 3000  # several read chunks, bare LFs
    path.write_bytes(data)
    assert file_wire_size(path) == len(data) + 3000


@settings(max_examples=300, deadline=None)
@given(mail_bytes, st.integers(min_value=0, max_value=6),
       st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_top_cut_over_chunks_equals_top_bytes(data, lines, cuts):
    cut = TopCut(lines)
    out = b"".join(cut.feed(piece) for piece in chunked(data, cuts))
    assert out == top_bytes(data, lines)


def test_top_cut_stops_reading_once_done():
    cut = TopCut(1)
    assert cut.feed(b"H: v\r\n\r\nline one\r\nline") == b"H: v\r\n\r\nline one\r\n"
    assert cut.done
    assert cut.feed(b" two\r\n") == b""


def test_unique_id_is_uidvalidity_dot_uid():
    assert unique_id(1796010248, 7) == "1796010248.7"
