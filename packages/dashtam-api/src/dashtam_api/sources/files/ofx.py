"""OFX 1.x (SGML: an element's closing tag optional), 2.x (XML) and QFX (OFX with Quicken's
extra elements), read as a stream of tags: bank (STMTRS), card (CCSTMTRS) and investment
(INVSTMTRS) statements, any number of them in one file.

Why a tokenizer of our own: OFX 1.x is not XML (``<NAME>Caf&eacute;`` without ``</NAME>``), and
the parsers that read it (ofxtools included) build the whole file as a tree first. Here one
regular expression reads ``<TAG>text`` pieces from 64 KiB of decoded text at a time; an
aggregate that becomes an entry (STMTTRN, BUYSTOCK, POSSTOCK, LEDGERBAL, ...) is gathered as a
flat dict of the elements inside it and converted (ofx_records.py) when it closes, so memory
holds one chunk and one aggregate whatever the file's size. Aggregates' closing tags are
required by both versions; a missing one is tolerated where the next sibling or the enclosing
list shows where it ended. A file that ends before ``</OFX>`` is refused as cut short.

Securities: trades and positions name a security by its UNIQUEID (a CUSIP, usually); the
ticker is in SECLIST, which most institutions send after the statement. The security list is
small (a dictionary of it is kept), the transactions are not: so at the first trade or position
whose security is not known yet, and when the stream can seek (the importer hands a temporary
file), the file is scanned once from its start for ``<SECLIST>`` and only that part is read,
then reading resumes where it was. A stream that cannot seek gets the UNIQUEID as the symbol
for what comes before its SECLIST.

The 1.x header is read here too (two of its fields decide the text's encoding): ofxtools is
a test dependency only, and its header classes refuse values banks write (a CHARSET beyond
1252, ISO-8859-1 and NONE), while reading nothing more than these lines do.

Text: the byte-order mark, else the XML declaration's encoding (2.x), else the 1.x header's
ENCODING (UTF-8) and CHARSET (1252: Windows-1252, ISO-8859-1: Latin-1, NONE or anything
unknown: UTF-8 falling back to Windows-1252); entities (``&amp;``, ``&#233;``) are decoded.
"""

import re
from collections.abc import Callable, Iterator
from typing import BinaryIO

from dashtam_api.sources.files import ofx_records as records
from dashtam_api.sources.files import text as texts
from dashtam_api.sources.files.entries import Entry, FileError, FileProblem, currency_code

# A tag and the text after it up to the next tag. Spaces before ">" are tolerated: some banks
# write "<OFX >".
TOKEN = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9._]*)[ \t]*>([^<]*)")
LONGEST_TEXT = 1 << 20
# An aggregate gathered whole is a few hundred characters; one past this is not a statement's.
LONGEST_RECORD = 1 << 20
MOST_SECURITIES = 100_000

STATEMENTS = {"STMTRS": "bank", "CCSTMTRS": "card", "INVSTMTRS": "invest"}
INVESTMENT = {
    "BUYDEBT", "BUYMF", "BUYOPT", "BUYOTHER", "BUYSTOCK", "CLOSUREOPT", "INCOME", "INVEXPENSE",
    "JRNLFUND", "JRNLSEC", "MARGININTEREST", "REINVEST", "RETOFCAP", "SELLDEBT", "SELLMF",
    "SELLOPT", "SELLOTHER", "SELLSTOCK", "SPLIT", "TRANSFER",
}  # fmt: skip
POSITIONS = {"POSDEBT", "POSMF", "POSOPT", "POSOTHER", "POSSTOCK"}
SECURITIES = {"DEBTINFO", "MFINFO", "OPTINFO", "OTHERINFO", "STOCKINFO"}
ACCOUNTS = {"BANKACCTFROM", "CCACCTFROM", "INVACCTFROM"}
# The aggregates gathered whole (everything inside them, flattened).
RECORDS = (
    {"STMTTRN", "INVBANKTRAN", "LEDGERBAL", "AVAILBAL", "INVBAL", "STATUS"}
    | INVESTMENT | POSITIONS | SECURITIES | ACCOUNTS
)  # fmt: skip
# Lists and statements: their end also ends an aggregate whose own end tag is missing.
CONTAINERS = {
    "OFX", "BANKTRANLIST", "INVTRANLIST", "INVPOSLIST", "SECLIST", "STMTTRNRS",
    "CCSTMTTRNRS", "INVSTMTTRNRS", "SONRS", *STATEMENTS,
}  # fmt: skip

_V1_HEADER = re.compile(r"OFXHEADER\s*:")
_FIELD = re.compile(r"(ENCODING|CHARSET)\s*:\s*([\w.-]*)")
_XML_ENCODING = re.compile(r"<\?xml[^>]*?encoding\s*=\s*[\"']([\w.:-]+)")
CHARSETS = {
    "1252": "cp1252",
    "WINDOWS-1252": "cp1252",
    "CP1252": "cp1252",
    "ISO-8859-1": "latin-1",
    "8859-1": "latin-1",
    "LATIN1": "latin-1",
    "LATIN-1": "latin-1",
}


_MARK = re.compile(r"OFXHEADER|<OFX[ \t]*>|<\?OFX", re.IGNORECASE)


def looks_like(head: str) -> bool:
    return _MARK.search(head) is not None


def encoding(head: bytes, head_text: str) -> str:
    bom = texts.bom_encoding(head)
    if bom:
        return bom
    declared = _XML_ENCODING.search(head_text)
    if declared:
        return texts.known(declared[1]) or texts.FALLBACK
    if _V1_HEADER.search(head_text):
        header_end = head_text.find("<")
        fields = dict(_FIELD.findall(head_text[:header_end] if header_end > 0 else head_text))
        if fields.get("ENCODING", "").upper() in ("UTF-8", "UTF8", "UNICODE"):
            return texts.FALLBACK
        charset = fields.get("CHARSET", "NONE").upper()
        if charset in CHARSETS:
            return CHARSETS[charset]
        return texts.known(charset) or texts.FALLBACK
    return texts.FALLBACK


class Reader:
    """Tags in, entries out (``feed`` a chunk of text at a time, then ``end``)."""

    def __init__(self, find_securities: Callable[[], dict] | None, *, only_securities=False):
        self.rest = ""
        self.line = 1
        self.record: dict | None = None
        self.tag = ""
        self.record_line = 0
        self.record_start = 0  # where it starts, in characters from the file's start
        self.offset = 0  # the characters before this chunk
        self.statement: records.Statement | None = None
        self.statements = 0
        self.securities: dict[str, records.Security] = {}
        self.find_securities = find_securities
        self.only_securities = only_securities
        self.seen_ofx = self.ended = self.securities_done = False
        self.out: list[Entry] = []

    def feed(self, text: str, *, final: bool = False) -> list[Entry]:
        buffer = self.rest + text if self.rest else text
        # The last tag's text may go on in the next chunk: it waits for it.
        cut = len(buffer) if final else buffer.rfind("<")
        if cut <= 0 and not final:
            if len(buffer) > LONGEST_TEXT:
                raise FileProblem(self.line, f"a text longer than {LONGEST_TEXT} characters")
            self.rest = buffer
            return []
        out = self.out = []
        record, tag_open, line, counted = self.record, self.tag, self.line, 0
        for token in TOKEN.finditer(buffer, 0, cut):
            close, tag, value = token.groups()
            if record is not None:
                if not close:
                    if tag != tag_open:
                        record[tag] = value
                        continue
                elif tag != tag_open and tag not in CONTAINERS:
                    continue  # a leaf's or an inner aggregate's end
                self.finish(tag_open, record)
                record = None
                if close and tag == tag_open:
                    continue
                # An end tag of a list, or the next sibling: the aggregate's own end is missing.
            line += buffer.count("\n", counted, token.start())
            counted = token.start()
            if close:
                self.close(tag, line)
            elif tag in RECORDS:
                record, tag_open, self.record_line = {}, tag, line
                self.record_start = self.offset + token.start()
            else:
                self.element(tag, value, line)
        self.line = line + buffer.count("\n", counted, cut)
        self.rest = buffer[cut:]
        self.record, self.tag = record, tag_open
        self.offset += cut
        if record is not None and self.offset - self.record_start > LONGEST_RECORD:
            raise FileProblem(
                self.record_line, f"<{tag_open}> runs past {LONGEST_RECORD} characters"
            )
        return out

    def element(self, tag: str, value: str, line: int) -> None:
        statement = self.statement
        if tag == "OFX":
            self.seen_ofx = True
        elif tag in STATEMENTS:
            self.statement = records.Statement(STATEMENTS[tag], line)
            self.statements += 1
        elif statement is None:
            return
        elif tag == "CURDEF":
            code = currency_code(value)
            if code is None:
                raise FileProblem(line, f"CURDEF: {value.strip()!r} is not a currency code")
            statement.curdef = code
        elif tag == "DTASOF" and statement.kind == "invest":
            statement.as_of = records.moment(value)

    def close(self, tag: str, line: int) -> None:
        if tag == "OFX":
            self.ended = True
        elif tag == "SECLIST":
            self.securities_done = True
        elif tag in STATEMENTS and self.statement is not None:
            statement, self.statement = self.statement, None
            if statement.ledger is not None:
                line = statement.ledger[0]
                try:
                    self.out.append(records.bank_balance(statement))
                except records.Invalid as invalid:
                    self.out.append(FileError(line, str(invalid)))

    def finish(self, tag: str, record: dict) -> None:
        try:
            self.convert(tag, record)
        except records.Invalid as invalid:
            self.out.append(FileError(self.record_line, str(invalid)))

    def convert(self, tag: str, record: dict) -> None:
        line, statement, out = self.record_line, self.statement, self.out
        if tag in SECURITIES:
            if len(self.securities) >= MOST_SECURITIES:
                raise FileProblem(line, f"more than {MOST_SECURITIES} securities")
            uniqueid, security = records.security(tag, record)
            self.securities[uniqueid] = security
        elif self.only_securities:
            return
        elif tag == "STATUS":
            if records.text(record, "SEVERITY").upper() == "ERROR":
                code, message = records.text(record, "CODE"), records.text(record, "MESSAGE")
                raise FileProblem(
                    line,
                    f"the institution reports error {code}" + (f": {message}" if message else ""),
                )
        elif statement is None:
            return  # outside any statement (a message Dashtam does not read)
        elif tag in ("STMTTRN", "INVBANKTRAN"):
            out.append(records.bank_transaction(record, line, statement))
        elif tag in INVESTMENT:
            out.append(
                records.investment_transaction(tag, record, line, statement, self.security(record))
            )
        elif tag in POSITIONS:
            out.append(records.position(tag, record, line, statement, self.security(record)))
        elif tag == "LEDGERBAL":
            statement.ledger = (line, record)
        elif tag == "AVAILBAL":
            statement.available = record
        elif tag == "INVBAL":
            out.append(records.investment_balance(record, line, statement))
        elif tag in ACCOUNTS:
            out.append(records.account(tag, record, line, statement))

    def security(self, record: dict) -> records.Security | None:
        uniqueid = records.text(record, "UNIQUEID")
        if uniqueid not in self.securities and not self.securities_done and self.find_securities:
            self.securities.update(self.find_securities())
            self.find_securities = None  # once
        return self.securities.get(uniqueid)

    def end(self) -> list[Entry]:
        out = self.feed("", final=True)
        if self.record is not None:
            raise FileProblem(
                self.record_line,
                f"the file ends inside <{self.tag}> (line {self.record_line}): is it cut short?",
            )
        if not self.seen_ofx:
            raise FileProblem(None, "no <OFX> element: not an OFX file")
        if not self.statements:
            raise FileProblem(None, "the file holds no bank, card or investment statement")
        if not self.ended:
            raise FileProblem(self.line, "the file ends before </OFX>: is it cut short?")
        return out


def _securities(stream: BinaryIO, start: int, encoding: str) -> dict[str, records.Security]:
    """The file's SECLIST, read from a second look at the file; where it was, it is again."""
    here = stream.tell()
    try:
        stream.seek(start)
        text = texts.text_stream(b"", stream, encoding, newline=None)
        reader, tail, found = Reader(None, only_securities=True), "", False
        while not reader.securities_done and (chunk := text.read(texts.CHUNK)):
            if not found:
                window = tail + chunk
                at = window.find("<SECLIST>")
                if at < 0:
                    tail = window[-8:]  # a tag cut by the chunk's end
                    continue
                found, chunk = True, window[at:]
            reader.feed(chunk)
        return reader.securities
    finally:
        stream.seek(here)


def _seekable_at(stream: BinaryIO) -> int | None:
    try:
        return stream.tell() if stream.seekable() else None
    except (AttributeError, OSError, ValueError):
        return None


def read(stream: BinaryIO) -> Iterator[Entry]:
    start = _seekable_at(stream)
    head = stream.read(texts.HEAD)
    head_text = texts.head_text(head)
    if not looks_like(head_text):
        raise FileProblem(1, "not an OFX file: no OFX header or <OFX> element at its start")
    chosen = encoding(head, head_text)
    text = texts.text_stream(head, stream, chosen, newline=None)
    find = (lambda: _securities(stream, start, chosen)) if start is not None else None
    reader = Reader(find)
    try:
        while chunk := text.read(texts.CHUNK):
            # No text Dashtam stores may hold NUL (PostgreSQL's text cannot).
            entries = reader.feed(chunk.replace("\x00", "") if "\x00" in chunk else chunk)
            if entries:
                yield from entries
        yield from reader.end()
    finally:
        text.close()
