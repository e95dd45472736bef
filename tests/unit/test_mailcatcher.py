"""The mail catcher's mailbox (infra/mailcatcher.py) on files alone: order, tags, Mailpit's
search terms, the cap, and messages that are private files."""

import stat
from email.message import EmailMessage

import pytest

from infra.mailcatcher import Mailbox


def raw(to: str, subject: str, environment: str = "", tags: str = "", body: str = "hello") -> bytes:
    message = EmailMessage()
    message["From"] = "Dashtam <dashtam@localhost>"
    message["To"] = to
    message["Subject"] = subject
    if environment:
        message["X-Dashtam-Environment"] = environment
    if tags:
        message["X-Tags"] = tags
    message.set_content(body)
    return bytes(message)


def test_newest_first_tagged_by_environment_and_searched_like_mailpit(tmp_path):
    box = Mailbox(tmp_path / "mail")
    first = box.add(raw("ann@home.lan", "Reset your password", "development"))
    second = box.add(raw("bob@home.lan", "Confirm your address", "testing", tags="x, y"))
    third = box.add(raw("Ann <ann@home.lan>", "Confirm your address", "testing", body="a link"))

    assert [s.id for s in box.search()] == [third, second, first]
    assert [s.id for s in box.search("tag:testing")] == [third, second]
    assert box.get(second).tags == ["testing", "x", "y"]
    assert [s.id for s in box.search("tag:testing to:ann@home.lan")] == [third]
    assert [s.id for s in box.search('subject:"confirm your"')] == [third, second]
    assert [s.id for s in box.search("link")] == [third]  # a bare word: the text too
    assert box.search("tag:production") == []
    with pytest.raises(ValueError, match="quotation"):
        box.search('to:"unclosed')

    summary = box.get(third).summary()
    assert summary["To"] == [{"Name": "Ann", "Address": "ann@home.lan"}]
    assert summary["Subject"] == "Confirm your address"
    assert summary["Snippet"] == "a link"
    assert box.get("latest").id == third
    assert box.get("../secrets") is None  # ids are names the box made, nothing else

    assert box.delete(box.search("tag:testing")) == 2
    assert [s.id for s in box.search()] == [first]
    # Reset links are secrets: the files are the owner's alone.
    (path,) = (tmp_path / "mail").glob("*.eml")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "mail").stat().st_mode) == 0o700


def test_only_the_newest_are_kept(tmp_path):
    box = Mailbox(tmp_path, keep=3)
    ids = [box.add(raw(f"n{n}@home.lan", f"message {n}")) for n in range(5)]
    assert [s.id for s in box.search()] == ids[:1:-1]


def test_a_message_gone_from_the_folder_is_gone_from_the_searches(tmp_path):
    """Messages are parsed once and remembered; what leaves the folder (the cap, a delete,
    someone's rm) leaves the answers too."""
    box = Mailbox(tmp_path, keep=2)
    first = box.add(raw("a@home.lan", "one"))
    assert [s.id for s in box.search()] == [first]
    second, third = box.add(raw("b@home.lan", "two")), box.add(raw("c@home.lan", "three"))
    assert box.get(first) is None  # over the cap
    (tmp_path / f"{second}.eml").unlink()
    assert [s.id for s in box.search()] == [third]
