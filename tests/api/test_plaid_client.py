"""Plaid's own client (plaid-python, which no one here wrote) against the look-alike the live
test API serves: it connects, pages /transactions/sync and reads Plaid's errors as it would
Plaid's. plaid-python reads every answer into its models with type checking on."""

import pytest
from plaid import ApiClient, ApiException, Configuration
from plaid.api.plaid_api import PlaidApi
from plaid.model.accounts_get_request import AccountsGetRequest
from plaid.model.item_public_token_exchange_request import ItemPublicTokenExchangeRequest
from plaid.model.products import Products
from plaid.model.sandbox_public_token_create_request import SandboxPublicTokenCreateRequest
from plaid.model.sandbox_public_token_create_request_options import (
    SandboxPublicTokenCreateRequestOptions,
)
from plaid.model.transactions_sync_request import TransactionsSyncRequest

from dashtam_api.sandbox import plaid_data


def test_plaid_python_connects_and_syncs_against_the_look_alike(live_servers):
    configuration = Configuration(
        host=f"{live_servers.api_url}/sandbox/plaid",
        api_key={"clientId": plaid_data.CLIENT_ID, "secret": plaid_data.SECRET},
    )
    configuration.ssl_ca_cert = str(live_servers.ca_file)
    with ApiClient(configuration) as client:
        plaid = PlaidApi(client)
        public = plaid.sandbox_public_token_create(
            SandboxPublicTokenCreateRequest(
                institution_id="ins_dashtam",
                initial_products=[Products("transactions")],
                options=SandboxPublicTokenCreateRequestOptions(override_username="user_client"),
            )
        )
        item = plaid.item_public_token_exchange(
            ItemPublicTokenExchangeRequest(public_token=public.public_token)
        )
        accounts = plaid.accounts_get(AccountsGetRequest(access_token=item.access_token))
        assert [a.name for a in accounts.accounts] == [
            "Plaid Checking",
            "Plaid Credit Card",
            "Plaid Brokerage",
        ]
        added, cursor, pages = [], None, 0
        while True:
            asked = TransactionsSyncRequest(access_token=item.access_token)
            if cursor:
                asked.cursor = cursor
            page = plaid.transactions_sync(asked)
            added += page.added
            cursor, pages = page.next_cursor, pages + 1
            if not page.has_more:
                break
        assert pages > 1
        assert len({t.transaction_id for t in added}) == len(added)

        with pytest.raises(ApiException) as refused:
            plaid.accounts_get(AccountsGetRequest(access_token="access-sandbox-nope"))
        assert refused.value.status == 400
        assert '"error_code":"INVALID_ACCESS_TOKEN"' in refused.value.body.replace(" ", "")
