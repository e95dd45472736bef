"""The Link page's content security policy against the one Plaid publishes for Link
(plaid.com/docs/link/web, "CSP directives", its nonce form): every source Plaid lists for a
directive is allowed by the page's, with the environment's API host for ``connect-src``."""

import pytest

from dashtam_api.connections.link_page import PLAID_SCRIPT, _policy

PLAIDS = """
default-src https://cdn.plaid.com/;
script-src 'nonce-<N>' https://cdn.plaid.com/link/v2/stable/link-initialize.js;
style-src 'nonce-<N>';
style-src-elem 'nonce-<N>';
frame-src https://cdn.plaid.com/;
connect-src https://<ENV>.plaid.com/;
"""


def directives(policy: str) -> dict[str, list[str]]:
    found = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            found[words[0]] = words[1:]
    return found


@pytest.mark.parametrize("env", ["sandbox", "production"])
def test_the_page_allows_every_source_plaid_lists_for_link(env):
    policy = directives(_policy(PLAID_SCRIPT, "abc123", env))
    plaid = directives(PLAIDS.replace("<N>", "abc123").replace("<ENV>", env))
    for directive, sources in plaid.items():
        for source in sources:
            assert source in policy.get(directive, []), (directive, source)
    # Scripts by their address and the page's nonce only: never inline ones.
    assert "'unsafe-inline'" not in policy["script-src"]
    assert policy["connect-src"] == ["'self'", f"https://{env}.plaid.com/"]


def test_offline_nothing_comes_from_elsewhere():
    policy = _policy("/sandbox/plaid/link-initialize.js", "abc123", "sandbox")
    assert "plaid.com" not in policy
    assert "'unsafe-inline'" not in directives(policy)["script-src"]
