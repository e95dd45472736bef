"""Bytes to text the way banks write them, incrementally: a file is never decoded whole.

A byte-order mark decides (UTF-8, UTF-16, UTF-32); else the format's own declaration (OFX's
header, an XML declaration); else UTF-8, falling back to Windows-1252 from the first byte that
is not UTF-8 (what spreadsheet programs and older bank systems write). Windows-1252's five
undefined bytes and any other undecodable byte become U+FFFD: text never makes a file
unreadable, its amounts and dates are checked on their own.
"""

import codecs
import io
from typing import BinaryIO

HEAD = 4096
CHUNK = 64 * 1024
FALLBACK = "utf8_or_cp1252"  # registered below: usable wherever Python takes an encoding name

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE, whose mark it begins with
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class _Utf8OrCp1252(codecs.IncrementalDecoder):
    def __init__(self, errors: str = "strict"):
        super().__init__(errors)
        self._utf8 = codecs.getincrementaldecoder("utf-8-sig")()
        self._fallen = False

    def decode(self, input, final=False):
        if self._fallen:
            return codecs.decode(input, "cp1252", "replace")
        try:
            return self._utf8.decode(input, final)
        except UnicodeDecodeError:
            # What came before was ASCII or valid UTF-8 (the same text in Windows-1252 for
            # the ASCII files this happens to): from here on, Windows-1252.
            pending = self._utf8.getstate()[0]
            self._fallen = True
            return codecs.decode(pending + bytes(input), "cp1252", "replace")

    def reset(self):
        self._utf8.reset()
        self._fallen = False

    def getstate(self):
        pending, flag = self._utf8.getstate()
        return pending, (flag << 1) | self._fallen

    def setstate(self, state):
        pending, flag = state
        self._utf8.setstate((pending, flag >> 1))
        self._fallen = bool(flag & 1)


def _search(name: str):
    if name != FALLBACK:
        return None
    utf8 = codecs.lookup("utf-8")
    return codecs.CodecInfo(
        name=FALLBACK,
        encode=utf8.encode,
        decode=lambda data, errors="strict": (_Utf8OrCp1252().decode(data, True), len(data)),
        incrementalencoder=utf8.incrementalencoder,
        incrementaldecoder=_Utf8OrCp1252,
    )


codecs.register(_search)


def bom_encoding(head: bytes) -> str | None:
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    return None


def known(encoding: str | None) -> str | None:
    """A declared encoding Python knows, UTF-8 made lenient; None when it is not one."""
    if not encoding:
        return None
    try:
        name = codecs.lookup(encoding.strip()).name
        # A text encoding that decodes any bytes leniently: not one of bytes to bytes ("hex"),
        # nor one refusing "replace" ("idna") or everything ("undefined").
        io.TextIOWrapper(io.BytesIO(bytes(range(256))), encoding=name, errors="replace").read()
    except (LookupError, ValueError, TypeError):
        return None
    return FALLBACK if name in ("utf-8", "ascii") else name


def head_text(head: bytes) -> str:
    """The first bytes as text good enough to find ASCII markers (tags, headers)."""
    encoding = bom_encoding(head)
    if encoding:
        return head.decode(encoding, "replace")
    return head.decode("latin-1")


class _Rejoined(io.RawIOBase):
    """The head already read, then the rest of the stream: one stream again."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def text_stream(head: bytes, rest: BinaryIO, encoding: str, *, newline: str | None):
    """The whole file (``head`` then what ``rest`` still holds) as text, decoded as read.
    Closing it (or its end) leaves ``rest`` open: the caller's stream is the caller's."""
    errors = "strict" if encoding == FALLBACK else "replace"
    reader = io.BufferedReader(_Rejoined(head, rest), CHUNK)
    text = io.TextIOWrapper(reader, encoding=encoding, errors=errors, newline=newline)
    text._CHUNK_SIZE = CHUNK  # fewer, larger decodes (8 KiB by default)
    return text
