"""The webhook URL's documented form (its OpenAPI pattern) and what the API accepts agree: every
URL of the form passes check_url where http and private targets are allowed (development,
testing), and the form refuses what check_url would refuse anywhere."""

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashtam_api.webhooks.targets import HTTPS_URL_PATTERN, URL_PATTERN, RefusedTarget, check_url


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.from_regex(re.compile(URL_PATTERN), fullmatch=True).filter(lambda u: len(u) <= 2000))
def test_every_url_of_the_form_is_accepted(url):
    assert check_url(url, allow_http=True, allow_private=True) == url


@pytest.mark.parametrize(
    "url",
    [
        "0",
        "ftp://example.com/",
        "https://user:pw@example.com/",
        "https://example.com/#top",
        "https://example.com:0/",
        "https://example.com:65536/",
        "https://[1.2.3.4]/",  # not an IPv6 address: urlsplit refuses it
        "https://[::1/",
        "https://exa mple.com/",
        "https://example.com/%zz",
    ],
)
def test_what_check_url_or_common_sense_refuses_is_not_of_the_form(url):
    assert not re.fullmatch(URL_PATTERN, url)


def test_https_only_outside_development():
    assert re.fullmatch(HTTPS_URL_PATTERN, "https://example.com/hook?x=1")
    assert not re.fullmatch(HTTPS_URL_PATTERN, "http://example.com/hook")
    with pytest.raises(RefusedTarget):
        check_url("http://example.com/", allow_http=False, allow_private=False)
