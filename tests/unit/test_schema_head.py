"""infra/schema.py reads the migrations' head without Alembic (a warm `inv up`'s fast path):
it must read what Alembic reads."""

from dashtam_core import migrate
from infra import schema


def test_the_head_and_its_description_are_alembics():
    revision, description = schema.head()
    assert revision == migrate.head()
    assert f"{revision} ({description})" == migrate.describe_revision(revision)


def test_two_heads_or_an_unreadable_file_leave_it_to_alembic(tmp_path):
    (tmp_path / "a.py").write_text('"""a"""\nrevision = "a1"\ndown_revision = None\n')
    (tmp_path / "b.py").write_text(
        '"""b"""\nrevision: str = "b1"\ndown_revision: str | None = "a1"\n'
    )
    assert schema.head(tmp_path) == ("b1", "b")
    (tmp_path / "c.py").write_text('"""c"""\nrevision = "c1"\ndown_revision = "a1"\n')
    assert schema.head(tmp_path) is None  # b1 and c1 both
    (tmp_path / "m.py").write_text('"""merge"""\nrevision = "m1"\ndown_revision = ("b1", "c1")\n')
    assert schema.head(tmp_path) == ("m1", "merge")
    (tmp_path / "odd.py").write_text("nothing here\n")
    assert schema.head(tmp_path) is None
