"""A private project's ports: picked anew in its env files when one is taken, and only its own."""

import shutil
from pathlib import Path

from infra import ports
from infra.envfiles import ensure_env_files, read_both
from infra.files import read_env
from infra.layout import ROOT, Layout


def test_a_picked_port_moves_everywhere_it_is_written_and_nothing_else_changes(tmp_path):
    (tmp_path / "env").mkdir()
    for name in (".env.dev.example", ".env.test.example"):
        shutil.copy(ROOT / "env" / name, tmp_path / "env" / name)
    layout = Layout(root=tmp_path)
    pg, valkey, smtp, http = ports.free_ports(4)
    assert len({pg, valkey, smtp, http}) == 4
    ensure_env_files(layout, pg_port=pg, redis_port=valkey, mail_ports=(smtp, http))
    before = {f: read_env(f) for f in (layout.dev_env_file, layout.test_env_file)}

    # A checkout's own ports are a person's choice: never moved.
    assert ports.repick(layout, [pg]) is False
    assert {f: read_env(f) for f in before} == before

    ports.record(layout, [pg, valkey, smtp, http])
    assert ports.repick(layout, [pg, smtp]) is True
    dev, test = read_both(layout)
    assert dev.db_port == test.db_port not in (pg, valkey, smtp, http)
    assert dev.mail_smtp_port == test.mail_smtp_port not in (pg, valkey, smtp, http)
    assert (dev.redis_port, dev.mail_http_port) == (valkey, http)
    after = {f: read_env(f) for f in before}
    # (The test environment sends no mail: its SMTP_URL is empty.)
    moved = {layout.dev_env_file: {"DATABASE_URL", "SMTP_URL", "MAIL_CATCHER_SMTP_PORT"}}
    moved[layout.test_env_file] = {"DATABASE_URL", "MAIL_CATCHER_SMTP_PORT"}
    for env_file, values in before.items():
        changed = {k for k in values if after[env_file][k] != values[k]}
        assert changed == moved[env_file], env_file
        assert after[env_file]["DATABASE_URL"] == values["DATABASE_URL"].replace(
            f":{pg}/", f":{dev.db_port}/"
        )
    # The new ports are the project's own pick in turn; the old ones no longer are.
    assert ports.repick(layout, [dev.db_port]) is True
    assert ports.repick(layout, [pg]) is False


def test_picked_ports_stay_out_of_the_range_given_to_outgoing_connections():
    """A port the kernel also hands to clients' ends could be held by one of the suite's
    connections when a stopped server of ours starts again on it."""
    picked = ports.free_ports(20)
    assert len(set(picked)) == 20
    outgoing = Path("/proc/sys/net/ipv4/ip_local_port_range")  # Linux
    if outgoing.exists() and int(outgoing.read_text().split()[0]) > ports.PICKED_RANGE[-1]:
        assert all(p in ports.PICKED_RANGE for p in picked)
