"""Each transaction keeps the JSON the API serves (transactions.item_json). The migration that
writes it for existing rows holds a frozen copy of the API's item: the two must be the same,
or rows written before the change would be served in the old form. A change to the item
comes with a migration that writes every row's JSON again (and moves this test to it)."""

import importlib.util
from pathlib import Path

from dashtam_api.transactions import schemas
from dashtam_api.transactions.queries import item_fields
from dashtam_core import migrate

VERSIONS = Path(migrate.__file__).parent / "migrations" / "versions"


def _migration(revision: str):
    (path,) = VERSIONS.glob(f"*-{revision}_*.py")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_migration_writes_the_item_the_api_serves():
    assert item_fields("t") == _migration("5afc74529ad3").ITEM_FIELDS


def test_the_item_has_every_field_of_the_schema_in_order():
    assert list(item_fields("t")) == list(schemas.TransactionOut.model_fields)


def test_every_writer_and_reader_of_the_item_takes_it_from_the_one_declaration():
    """The page, one transaction, the sync's stored copy and the bench's seed all compose
    item_lateral (a copy written out by hand in one of them would drift)."""
    import uuid

    from bench.transactions import SEED
    from dashtam_api.sync import queries as sync_queries
    from dashtam_api.transactions import queries
    from dashtam_api.transactions.schemas import TransactionQuery

    page, _ = queries.page_query(uuid.uuid4(), TransactionQuery())
    assert queries.item_lateral("t") in page
    assert queries.item_lateral("t") in queries._ONE
    assert queries.item_lateral("s") in str(sync_queries.UPSERT)
    assert queries.item_lateral("t") in str(sync_queries.FILL)
    assert any(queries.item_lateral("s") in statement for statement in SEED)
