"""`inv certs --trust/--untrust`: the real update-ca-certificates and certutil, in folders of the
test's own (a system store laid out like Debian's, a home with Chromium's and Firefox's NSS
databases), never this machine's stores."""

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from infra import trust
from infra.__main__ import main as infra_main
from infra.certs import CertPaths, ensure_certs
from infra.layout import Layout


def _missing_tools() -> list[str]:
    """What the machine truly lacks (sbin folders searched too: a normal user's PATH on Debian
    leaves out /usr/sbin, where update-ca-certificates lives)."""
    tools = {"update-ca-certificates": "ca-certificates", "certutil": "libnss3-tools"}
    return [f"{tool} ({package})" for tool, package in tools.items() if not trust.find_tool(tool)]


pytestmark = pytest.mark.skipif(
    bool(_missing_tools()),
    reason=f"not on this machine (PATH and {', '.join(trust.SBIN_DIRS)} searched): "
    f"{', '.join(_missing_tools())}; Debian/Ubuntu: apt-get install ca-certificates libnss3-tools",
)

LAYOUT = Layout()


def _debian_store(tmp_path: Path) -> trust.SystemStore:
    """update-ca-certificates on folders of this test's: one system CA listed, as on a machine."""
    shipped, local, etc, hooks = (tmp_path / d for d in ("share", "local", "etc", "hooks"))
    for folder in (shipped, etc, hooks):
        folder.mkdir()
    system_ca = sorted(Path("/usr/share/ca-certificates/mozilla").glob("*.crt"))[0]
    shutil.copy(system_ca, shipped / "mozilla.crt")
    (tmp_path / "ca-certificates.conf").write_text("mozilla.crt\n")
    update = (
        "update-ca-certificates",
        "--certsconf", str(tmp_path / "ca-certificates.conf"),
        "--certsdir", str(shipped),
        "--localcertsdir", str(local),
        "--etccertsdir", str(etc),
        "--hooksdir", str(hooks),
    )  # fmt: skip
    return trust.SystemStore(local, ".crt", update)


def _bundle(store: trust.SystemStore) -> str:
    return (store.anchors.parent / "etc" / "ca-certificates.crt").read_text()


def _nicknames(database: Path) -> str:
    return subprocess.run(
        ["certutil", "-L", "-d", f"sql:{database}"], capture_output=True, text=True, check=True
    ).stdout


def _firefox_profile(home: Path) -> Path:
    profile = home / ".mozilla" / "firefox" / "abcd1234.default-release"
    profile.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "--empty-password", "-d", f"sql:{profile}"], check=True)
    return profile


def test_trust_adds_the_ca_everywhere_and_untrust_takes_back_only_ours(tmp_path):
    ca = LAYOUT.ca_file.read_text()
    store = _debian_store(tmp_path)
    home = tmp_path / "home"
    profile = _firefox_profile(home)
    # Another checkout's CA, trusted under its own nickname, must survive our untrust.
    other = CertPaths(tmp_path / "other")
    ensure_certs(other.directory)
    other_nickname = "Dashtam Local CA (other)"
    add = ["certutil", "-A", "-d", f"sql:{profile}", "-t", "C,,", "-i", str(other.ca_cert)]
    subprocess.run([*add, "-n", other_nickname], check=True)
    databases = trust.nss_databases(home)
    assert databases == [home / ".pki" / "nssdb", profile]

    outcome = trust.trust(LAYOUT.ca_file, "p1", system=store, databases=databases)
    assert outcome.failed == []
    assert outcome.done == [
        f"system store: {store.anchors}/dashtam-local-ca-p1.crt",
        f"NSS database: {home}/.pki/nssdb",
        f"NSS database: {profile}",
    ]
    assert ca.strip() in _bundle(store)
    for database in databases:
        assert "Dashtam Local CA (p1)" in _nicknames(database)
    # The bundle a TLS client reads now verifies the project's server certificate.
    context = ssl.create_default_context(
        cafile=store.anchors.parent / "etc" / "ca-certificates.crt"
    )
    assert any("Dashtam Local CA" in str(c["subject"]) for c in context.get_ca_certs())

    # Trusting again (say, after `inv certs --force`) replaces, never piles up.
    trust.trust(LAYOUT.ca_file, "p1", system=store, databases=databases)
    assert _nicknames(profile).count("Dashtam Local CA (p1)") == 1

    outcome = trust.untrust("p1", system=store, databases=trust.nss_databases(home))
    assert outcome.failed == []
    assert len(outcome.done) == 3
    assert ca.strip() not in _bundle(store)
    assert "BEGIN CERTIFICATE" in _bundle(store)  # the system's own CA is still there
    assert "Dashtam Local CA (p1)" not in _nicknames(home / ".pki" / "nssdb")
    assert "Dashtam Local CA (p1)" not in _nicknames(profile)
    assert other_nickname in _nicknames(profile)

    again = trust.untrust("p1", system=store, databases=trust.nss_databases(home))
    assert (again.done, again.failed) == ([], [])


def _certs(capsys, *args: str) -> tuple[int, list[str], list[str]]:
    code = infra_main(["certs", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_the_command_reports_each_store_and_names_a_missing_certutil(tmp_path, monkeypatch, capsys):
    store = _debian_store(tmp_path)
    monkeypatch.setattr(trust, "KNOWN_SYSTEM_STORES", (store,))
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    project_id = LAYOUT.project_id()

    code, out, err = _certs(capsys, "--trust")
    assert (code, err) == (0, [])
    assert out == [
        "certs: the local CA is trusted in:",
        f"  system store: {store.anchors}/dashtam-local-ca-{project_id}.crt",
        f"  NSS database: {home}/.pki/nssdb",
    ]
    assert f"Dashtam Local CA ({project_id})" in _nicknames(home / ".pki" / "nssdb")

    # A machine without NSS's tools: the system store is still done, and the line says what to
    # install. (Taking certutil off PATH would take update-ca-certificates' sed and find too.)
    which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name, *a, **k: None if name == "certutil" else which(name, *a, **k)
    )
    code, out, err = _certs(capsys, "--untrust")
    assert code == 1
    assert out == [
        "certs: the local CA is no longer trusted in:",
        f"  system store: removed {store.anchors}/dashtam-local-ca-{project_id}.crt",
    ]
    assert err == [f"error: {trust.CERTUTIL_HINT}"]

    monkeypatch.setattr(shutil, "which", which)
    code, out, err = _certs(capsys, "--untrust")
    assert (code, err) == (0, [])
    assert out == [
        "certs: the local CA is no longer trusted in:",
        f"  NSS database: removed from {home}/.pki/nssdb",
    ]

    code, out, err = _certs(capsys, "--trust", "--untrust")
    assert code == 1
    assert len(err) == 1
    assert "pick one" in err[0]
