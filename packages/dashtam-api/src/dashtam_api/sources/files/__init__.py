"""Bank files read into the shapes every source reads into (sources/shapes.py): OFX and QFX
(ofx.py), CSV with a person's mapping (delimited.py, mapping.py) and CAMT.053 (camt.py).

No database and no HTTP here: ``read_file`` turns a binary stream into entries (entries.py),
one at a time, in constant memory whatever the file's size; the importer decides what to keep.
What it should know:

- A transaction's ``external_id`` is the format's own id (OFX FITID, CAMT AcctSvcrRef/NtryRef/
  EndToEndId/TxId, a mapped CSV column), or "" when the file has none.
- Its ``currency`` is an ISO 4217 code, or "" when the file does not say (a CSV mapped without
  one): the account's.
- ``FileProblem`` may be raised after entries were yielded (a file cut short is known at its
  end): nothing of such a file is to be kept.
- Reading blocks (file reads, parsing): from async code, iterate in a worker thread.
- An OFX investment statement whose SECLIST follows it is read twice when the stream can seek
  (ofx.py); a stream that cannot gives UNIQUEIDs (CUSIPs) instead of tickers before its SECLIST.
"""

import os
from collections.abc import Iterator
from typing import BinaryIO

from dashtam_api.sources.files import camt, delimited, ofx
from dashtam_api.sources.files import text as texts
from dashtam_api.sources.files.entries import (
    Entry,
    FileAccount,
    FileBalance,
    FileError,
    FilePosition,
    FileProblem,
    FileSkipped,
    FileTransaction,
)
from dashtam_api.sources.files.mapping import CsvMapping

FORMATS = ("ofx", "csv", "camt053")  # QFX is OFX


def detect_format(head: bytes, filename: str | None) -> str | None:
    """The format of a file from its first bytes (about 4 KiB) and its name; None when it
    cannot tell."""
    text = texts.head_text(head)
    if ofx.looks_like(text):
        return "ofx"
    if camt.looks_like(text):
        return "camt053"
    extension = os.path.splitext(filename or "")[1].lower()
    if extension in (".ofx", ".qfx"):
        return "ofx"
    if extension in (".csv", ".tsv"):
        return "csv"
    if "\x00" in text or text.lstrip().startswith("<"):
        return None  # binary, or markup of another kind
    lines = [line for line in text.splitlines()[:-1] if line.strip()]
    if len(lines) >= 2:
        delimiter = delimited.sniff_delimiter(lines)
        widths = {line.count(delimiter) for line in lines[-5:]}
        if min(widths) > 0:
            return "csv"
    return None


def read_file(
    stream: BinaryIO, *, format: str, mapping: CsvMapping | None = None
) -> Iterator[Entry]:
    """The file's entries in the order the file lists them. Raises FileProblem when the file
    as a whole cannot be read: here for a format or a missing mapping, else during the
    iteration, possibly after entries (the importer keeps nothing of such a file)."""
    if format == "ofx":
        return ofx.read(stream)
    if format == "camt053":
        return camt.read(stream)
    if format == "csv":
        if mapping is None:
            raise FileProblem(None, "a CSV file needs a mapping of its columns")
        return delimited.read(stream, mapping)
    raise FileProblem(None, f"unknown format {format!r}: one of {', '.join(FORMATS)}")


__all__ = [
    "FORMATS",
    "CsvMapping",
    "Entry",
    "FileAccount",
    "FileBalance",
    "FileError",
    "FilePosition",
    "FileProblem",
    "FileSkipped",
    "FileTransaction",
    "detect_format",
    "read_file",
]
