"""inv certs: a CA and a server certificate that verifies against it, private keys 0600."""

import ipaddress
import stat

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from infra.certs import CertPaths, ensure_certs


def test_creates_ca_and_server_certificate_with_the_right_names(tmp_path):
    written = ensure_certs(tmp_path)
    paths = CertPaths(tmp_path)
    assert set(written) == set(paths.all())
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {
        "localhost",
        "app",
        "callback",
        "mailpit",
    }
    assert set(sans.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    # Signed by the CA: verification raises if not.
    ca.public_key().verify(
        server.signature, server.tbs_certificate_bytes, ec.ECDSA(server.signature_hash_algorithm)
    )


def test_private_keys_are_owner_only(tmp_path):
    ensure_certs(tmp_path)
    paths = CertPaths(tmp_path)
    for key in (paths.ca_key, paths.server_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_existing_files_are_kept_unless_forced(tmp_path):
    ensure_certs(tmp_path)
    paths = CertPaths(tmp_path)
    before = {p: p.read_bytes() for p in paths.all()}
    assert ensure_certs(tmp_path) == []
    assert {p: p.read_bytes() for p in paths.all()} == before
    ensure_certs(tmp_path, force=True)
    assert all(p.read_bytes() != before[p] for p in paths.all())


def test_missing_server_certificate_is_reissued_under_the_same_ca(tmp_path):
    ensure_certs(tmp_path)
    paths = CertPaths(tmp_path)
    ca_before = paths.ca_cert.read_bytes()
    paths.server_cert.unlink()
    written = ensure_certs(tmp_path)
    assert paths.ca_cert not in written
    assert paths.ca_cert.read_bytes() == ca_before
    assert paths.server_cert.exists()


def test_a_server_certificate_lacking_a_newer_name_is_reissued_under_the_same_ca(
    tmp_path, monkeypatch
):
    """A checkout's certificate from before a service was added (say "mailpit") is issued again
    by the next `inv setup`; the CA people trust stays."""
    from infra import certs

    monkeypatch.setattr(certs, "DNS_NAMES", ("localhost", "app"))
    ensure_certs(tmp_path)
    paths = CertPaths(tmp_path)
    ca_before, server_before = paths.ca_cert.read_bytes(), paths.server_cert.read_bytes()
    monkeypatch.undo()
    written = ensure_certs(tmp_path)
    assert set(written) == {paths.server_cert, paths.server_key}
    assert paths.ca_cert.read_bytes() == ca_before
    assert paths.server_cert.read_bytes() != server_before
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "mailpit" in sans.get_values_for_type(x509.DNSName)
    assert ensure_certs(tmp_path) == []  # and then kept
