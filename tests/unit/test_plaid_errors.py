"""What each of Plaid's errors means for a connection (sources/plaid_api.PlaidFailure)."""

import pytest

from dashtam_api.sources.plaid_api import PlaidFailure


@pytest.mark.parametrize(
    ("status", "error_type", "code", "transient", "needs_person", "retry_after"),
    [
        (400, "ITEM_ERROR", "ITEM_LOGIN_REQUIRED", False, True, None),
        (400, "ITEM_ERROR", "ITEM_LOCKED", False, True, None),
        (400, "INVALID_INPUT", "INVALID_ACCESS_TOKEN", False, True, None),
        (429, "RATE_LIMIT_EXCEEDED", "TRANSACTIONS_SYNC_LIMIT", True, False, 60),
        (500, "API_ERROR", "INTERNAL_SERVER_ERROR", True, False, None),
        (400, "INSTITUTION_ERROR", "INSTITUTION_DOWN", True, False, None),
        (400, "TRANSACTIONS_ERROR", "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION", True, False,
         None),
        (0, "TRANSPORT", "timeout", True, False, None),
        (400, "INVALID_INPUT", "INVALID_API_KEYS", False, False, None),
    ],
)  # fmt: skip
def test_each_error_maps_to_what_it_means(
    status, error_type, code, transient, needs_person, retry_after
):
    said = PlaidFailure(status, error_type, code, "what Plaid said").source_error()
    assert (said.error, said.transient, said.needs_person, said.retry_after) == (
        code,
        transient,
        needs_person,
        retry_after,
    )


def test_a_login_error_says_how_to_mend_it():
    said = PlaidFailure(400, "ITEM_ERROR", "ITEM_LOGIN_REQUIRED", "sign in again").source_error()
    assert "update mode" in said.description
    assert "POST /api/v1/providers/{id}/authorization" in said.description
