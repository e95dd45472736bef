"""Institution sources: one module each behind one protocol (protocol.py), by name.

A provider type (providers/registry.py) names its source; the sync reads through it and
reconciles what it reads the same way for every source. A new institution is a module here.
"""

from dashtam_api.sources import enablebanking, ibkr_flex, plaid, sandbox, schwab, simplefin
from dashtam_api.sources.protocol import Kind, Limits, Reading, Source

SOURCES: dict[str, Source] = {
    s.name: s for s in (sandbox, schwab, simplefin, ibkr_flex, enablebanking, plaid)
}

__all__ = ["SOURCES", "Kind", "Limits", "Reading", "Source"]
