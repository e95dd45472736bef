"""Every source declares what the sync needs of it (sources/protocol.Source): the sync asks
the source, never its kind or name, which pool to read through and what a read costs."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from dashtam_api.sources import SOURCES, Kind, protocol
from dashtam_api.sources.shapes import Windows

SYNC = Path(__file__).parents[2] / "packages/dashtam-api/src/dashtam_api/sync/service.py"


def test_every_source_declares_the_protocols_attributes():
    for name, source in SOURCES.items():
        for attribute in protocol.Source.__annotations__:
            assert hasattr(source, attribute), f"{name} lacks {attribute}"
        assert isinstance(source.person_named_servers, bool), name
        assert isinstance(source.kind, Kind), name
        assert callable(source.requests_for), name


def test_what_each_source_says_of_its_pool_and_its_requests():
    now = datetime(2026, 12, 8, tzinfo=UTC)
    first = Windows(since={}, until=now)
    later = Windows(since={"A": now - timedelta(days=3)}, until=now)
    said = {
        name: (s.person_named_servers, s.requests_for(first), s.requests_for(later))
        for name, s in SOURCES.items()
    }
    assert said == {
        "sandbox": (False, None, None),
        "schwab": (False, None, None),
        "simplefin": (True, 2, 1),
        "ibkr": (False, None, None),
        "enablebanking": (False, 1, 1),
        "plaid": (False, None, None),
    }


def test_the_sync_does_not_branch_on_a_source_kind_for_its_pool():
    text = SYNC.read_text()
    assert "Kind.SIMPLEFIN" not in text
    assert 'getattr(source, "requests_for"' not in text


def test_a_source_of_kind_api_token_says_what_is_sealed_and_how_it_is_tried():
    api_token = [s for s in SOURCES.values() if s.kind is Kind.API_TOKEN]
    assert api_token  # IBKR's Flex
    for source in api_token:
        # connections/api_tokens.py seals credential(token, query_id), tried by check(...).
        sealed = source.credential("T0KEN123", "42")
        assert isinstance(sealed, str)
        assert "T0KEN123" in sealed
        assert callable(source.check)
