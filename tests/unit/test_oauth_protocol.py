"""PKCE and the provider catalog, without servers."""

import os
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from dashtam_api.connections import oauth
from dashtam_api.providers.registry import build_registry
from dashtam_core.config import GenericProviderConfig, Settings


def test_pkce_challenge_matches_rfc_7636_appendix_b():
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert oauth.code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_verifiers_are_long_random_and_url_safe():
    verifiers = {oauth.new_code_verifier() for _ in range(50)}
    assert len(verifiers) == 50
    for verifier in verifiers:
        assert 43 <= len(verifier) <= 128
        assert set(verifier) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )


def settings(**overrides) -> Settings:
    return Settings.model_construct(**{**Settings().model_dump(), **overrides})


async def test_authorization_url_carries_state_and_s256_challenge_not_the_verifier():
    spec = build_registry(settings(ENVIRONMENT="testing"))["sandbox"]
    verifier = oauth.new_code_verifier()
    async with oauth.client_for(
        spec,
        redirect_uri="https://localhost:8183/oauth/callback",
        tls=oauth.tls_context(settings().CA_CERT_FILE),
        timeout=5,
    ) as client:
        url = oauth.authorization_url(spec, client, state="the-state", code_verifier=verifier)
    query = parse_qs(urlsplit(url).query)
    assert query["state"] == ["the-state"]
    assert query["code_challenge"] == [oauth.code_challenge(verifier)]
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == ["https://localhost:8183/oauth/callback"]
    assert verifier not in url


def test_catalog_has_sandbox_only_in_development_and_testing():
    assert "sandbox" in build_registry(settings(ENVIRONMENT="development"))
    assert "sandbox" not in build_registry(settings(ENVIRONMENT="production"))


def test_schwab_is_configured_only_with_credentials():
    assert build_registry(settings())["schwab"].configured is False
    spec = build_registry(settings(SCHWAB_CLIENT_ID="id", SCHWAB_CLIENT_SECRET="s"))["schwab"]
    assert spec.configured is True
    assert spec.token_endpoint_auth_method == "client_secret_basic"
    assert spec.authorize_url == "https://api.schwabapi.com/v1/oauth/authorize"
    assert spec.token_url == "https://api.schwabapi.com/v1/oauth/token"


def test_generic_institutions_come_from_configuration():
    generic = GenericProviderConfig(
        key="acme",
        name="Acme Bank",
        authorize_url="https://acme.example/authorize",
        token_url="https://acme.example/token",
        client_id="cid",
        client_secret="cs",
        scopes=["read"],
        client_auth_method="post",
        pkce=False,
    )
    spec = build_registry(settings(OAUTH_PROVIDERS=[generic]))["acme"]
    assert spec.summary() == {
        "key": "acme",
        "name": "Acme Bank",
        "kind": "oauth2",
        "configured": True,
        "supplies": ["authorization"],
        "supports": {
            "pkce": False,
            "refresh": True,
            "revocation": False,
            "sync": False,
            "client_auth": "post",
        },
    }
    assert spec.token_endpoint_auth_method == "client_secret_post"


@pytest.mark.parametrize(
    "bad",
    [
        {"key": "Bad Key"},
        {"authorize_url": "not a url"},
        {"client_auth_method": "jwt"},
        {"client_id": ""},
        {"surprise": 1},
    ],
)
def test_bad_generic_declarations_are_refused(bad):
    declaration = {
        "key": "acme",
        "name": "Acme",
        "authorize_url": "https://a.example/auth",
        "token_url": "https://a.example/token",
        "client_id": "cid",
        **bad,
    }
    with pytest.raises(ValidationError):
        GenericProviderConfig(**declaration)


def test_the_trust_store_is_read_once_per_version_of_the_ca(tmp_path):
    from cryptography import x509

    from infra.certs import ensure_certs

    def serial_of(ca_file):
        return x509.load_pem_x509_certificate(ca_file.read_bytes()).serial_number

    def trusted_serials(context):
        return {int(ca["serialNumber"], 16) for ca in context.get_ca_certs()}

    ca_file = tmp_path / "ca.pem"
    ensure_certs(tmp_path)
    first = oauth.tls_context(ca_file)
    assert oauth.tls_context(ca_file) is first  # read once, shared
    assert serial_of(ca_file) in trusted_serials(first)

    # A CA remade (`inv certs --force`) is trusted by the next context asked for, not the old.
    old_serial = serial_of(ca_file)
    ensure_certs(tmp_path, force=True)
    os.utime(ca_file, ns=(ca_file.stat().st_atime_ns, ca_file.stat().st_mtime_ns + 1_000_000))
    second = oauth.tls_context(ca_file)
    assert second is not first
    assert serial_of(ca_file) in trusted_serials(second)
    assert old_serial not in trusted_serials(second)

    # No CA file: the system's store alone, and a CA that appears later is read then.
    missing = tmp_path / "elsewhere" / "ca.pem"
    assert serial_of(ca_file) not in trusted_serials(oauth.tls_context(missing))
