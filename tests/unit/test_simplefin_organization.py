"""SimpleFIN v1's Organization of an account, as older apps (Actual) read it: its ``domain``
is what they link to the institution with."""

from dashtam_api.providers.registry import ProviderSpec
from dashtam_api.simplefin.service import organization

ROOT = "https://dashtam.example:8000/simplefin"


def spec(**website) -> ProviderSpec:
    return ProviderSpec(
        key="bank", name="A Bank", authorize_url="", token_url="", client_id="", client_secret="",
        **website,
    )  # fmt: skip


def test_the_institutions_own_site_when_known():
    org = organization(spec(website="www.bank.example"), "bank", ROOT)
    assert org == {
        "name": "A Bank",
        "id": "bank",
        "sfin-url": ROOT,
        "domain": "www.bank.example",
        "url": "https://www.bank.example",
    }


def test_dashtams_own_host_stands_in_otherwise():
    assert organization(spec(), "bank", ROOT)["domain"] == "dashtam.example"
    unknown = organization(None, "gone", ROOT)  # a provider type no longer configured
    assert (unknown["name"], unknown["domain"], unknown["url"]) == (
        "gone",
        "dashtam.example",
        "https://dashtam.example",
    )
