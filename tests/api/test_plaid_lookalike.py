"""Every kind of answer Plaid's look-alike (sandbox/plaid_lookalike.py) gives is one of Plaid's
published OpenAPI document (plaid/plaid-openapi, 2020-09-14.yml), read with plaid-python, the
MIT client Plaid generates from that document (the document itself carries no licence and is
not copied here).

plaid-python's deserializer, type checking on, refuses a missing required field, a value of
the wrong type and a null where the document does not allow one; it lets through a key the
document does not have and an enum value it does not list, so ``strictly`` checks those two
against the models' own ``attribute_map`` and ``allowed_values``. Of a composed model (allOf)
it enforces only what its parts require: the fields the document's ``Transaction`` adds to
``TransactionBase``'s required ones are listed here (LOST_REQUIRED, computed from the document
at plaid-openapi 26f1a05 for every composed schema the look-alike answers with: Transaction is
the only one losing any). A deliberately broken answer of each kind is refused (the checks can
fail).
"""

import copy
import json
import uuid

import pytest
from plaid.configuration import Configuration
from plaid.model.accounts_get_response import AccountsGetResponse
from plaid.model.investments_historical_update_webhook import (
    InvestmentsHistoricalUpdateWebhook,
)
from plaid.model.investments_holdings_get_response import InvestmentsHoldingsGetResponse
from plaid.model.investments_transactions_get_response import (
    InvestmentsTransactionsGetResponse,
)
from plaid.model.item_error_webhook import ItemErrorWebhook
from plaid.model.item_login_repaired_webhook import ItemLoginRepairedWebhook
from plaid.model.item_public_token_exchange_response import ItemPublicTokenExchangeResponse
from plaid.model.item_remove_response import ItemRemoveResponse
from plaid.model.link_token_create_response import LinkTokenCreateResponse
from plaid.model.pending_expiration_webhook import PendingExpirationWebhook
from plaid.model.plaid_error import PlaidError
from plaid.model.sandbox_item_fire_webhook_response import SandboxItemFireWebhookResponse
from plaid.model.sandbox_item_reset_login_response import SandboxItemResetLoginResponse
from plaid.model.sandbox_public_token_create_response import SandboxPublicTokenCreateResponse
from plaid.model.sync_updates_available_webhook import SyncUpdatesAvailableWebhook
from plaid.model.transactions_sync_response import TransactionsSyncResponse
from plaid.model.webhook_verification_key_get_response import (
    WebhookVerificationKeyGetResponse,
)
from plaid.model_utils import (
    ModelComposed,
    ModelNormal,
    ModelSimple,
    validate_and_convert_types,
)

from dashtam_api.sandbox import plaid_data

PLAID = "/sandbox/plaid"
KEYS = {"PLAID-CLIENT-ID": plaid_data.CLIENT_ID, "PLAID-SECRET": plaid_data.SECRET}
CONFIGURATION = Configuration()


class Drift(AssertionError):
    pass


LOST_REQUIRED = {
    "Transaction": {"account_owner", "location", "name", "payment_meta", "pending_transaction_id"}
}


def strictly(raw, types: tuple, where: str) -> None:
    """No key the document does not have, no enum value it does not list (the module's
    note), all the way down."""
    if raw is None:
        return
    for kind in types:
        if isinstance(kind, list):
            if not isinstance(raw, list):
                raise Drift(f"{where} is not a list")
            for i, value in enumerate(raw):
                strictly(value, tuple(kind), f"{where}[{i}]")
            return
        if isinstance(kind, type) and issubclass(kind, ModelSimple):
            allowed = list(kind.allowed_values[("value",)].values())
            if raw not in allowed:
                raise Drift(f"{where}: {raw!r} is not one of {kind.__name__}'s values")
            return
        if isinstance(kind, type) and issubclass(kind, ModelNormal | ModelComposed):
            if not isinstance(raw, dict):
                raise Drift(f"{where} is not an object")
            names = {json_name: name for name, json_name in kind.attribute_map.items()}
            unknown = set(raw) - set(names)
            if unknown:
                raise Drift(f"{where}: {sorted(unknown)} not in {kind.__name__}")
            missing = LOST_REQUIRED.get(kind.__name__, set()) - set(raw)
            if missing:
                raise Drift(f"{where}: {sorted(missing)} missing, required by the document")
            for key, value in raw.items():
                allowed = kind.allowed_values.get((names[key],))
                if allowed and value is not None and value not in allowed.values():
                    raise Drift(f"{where}.{key}: {value!r} is not an allowed value")
                strictly(value, kind.openapi_types[names[key]], f"{where}.{key}")
            return


def valid(raw: dict, model) -> None:
    """``raw`` read as ``model`` by plaid-python (type checking on), and ``strictly``."""
    strictly(raw, (model,), model.__name__)
    # The deserializer turns the dicts it is given into models, in place: a copy.
    validate_and_convert_types(
        copy.deepcopy(raw), (model,), ["answer"], True, True, configuration=CONFIGURATION
    )


async def call(client, path: str, body: dict, *, status: int = 200) -> dict:
    answer = await client.post(f"{PLAID}{path}", json=body, headers=KEYS)
    assert answer.status_code == status, answer.text
    return answer.json()


async def control(client, login: str, what: str, **body) -> None:
    answer = await client.post(f"{PLAID}/_control/{login}/{what}", json=body or None)
    assert answer.status_code == 204, answer.text


async def test_every_answer_is_one_of_plaids_published_schemas(client):
    login = f"user_{uuid.uuid4().hex[:8]}"
    answers: list[tuple[dict, type]] = []

    def seen(raw: dict, model) -> dict:
        answers.append((raw, model))
        return raw

    made = seen(
        await call(
            client,
            "/link/token/create",
            {
                "client_name": "Dashtam", "language": "en", "country_codes": ["US"],
                "user": {"client_user_id": "someone"}, "products": ["transactions", "investments"],
                "webhook": "https://example.com/hook",
            },
        ),
        LinkTokenCreateResponse,
    )  # fmt: skip
    completed = await client.post(
        f"{PLAID}/link/complete", json={"link_token": made["link_token"], "username": login}
    )
    exchanged = seen(
        await call(
            client,
            "/item/public_token/exchange",
            {"public_token": completed.json()["public_token"]},
        ),
        ItemPublicTokenExchangeResponse,
    )
    token = {"access_token": exchanged["access_token"]}
    seen(await call(client, "/accounts/get", token), AccountsGetResponse)
    first = seen(await call(client, "/transactions/sync", token), TransactionsSyncResponse)
    assert first["has_more"]
    assert first["added"]
    cursor = first["next_cursor"]
    while True:
        page = seen(
            await call(client, "/transactions/sync", {**token, "cursor": cursor}),
            TransactionsSyncResponse,
        )
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    await control(client, login, "advance")
    posted = seen(
        await call(client, "/transactions/sync", {**token, "cursor": cursor}),
        TransactionsSyncResponse,
    )
    assert posted["added"]
    assert posted["removed"]
    assert any(t["pending_transaction_id"] for t in posted["added"])
    await control(client, login, "advance")
    changed = seen(
        await call(client, "/transactions/sync", {**token, "cursor": posted["next_cursor"]}),
        TransactionsSyncResponse,
    )
    assert changed["modified"]
    await control(client, login, "fail", kind="NOT_READY")
    not_ready = seen(await call(client, "/transactions/sync", token), TransactionsSyncResponse)
    assert (not_ready["transactions_update_status"], not_ready["next_cursor"]) == (
        "NOT_READY",
        "",
    )
    seen(await call(client, "/investments/holdings/get", token), InvestmentsHoldingsGetResponse)
    seen(
        await call(
            client,
            "/investments/transactions/get",
            {**token, "start_date": "2000-01-01", "end_date": "2100-01-01"},
        ),
        InvestmentsTransactionsGetResponse,
    )
    seen(
        await call(
            client,
            "/sandbox/public_token/create",
            {"institution_id": "ins_dashtam", "initial_products": ["transactions"]},
        ),
        SandboxPublicTokenCreateResponse,
    )
    seen(
        await call(
            client, "/sandbox/item/fire_webhook", {**token, "webhook_code": "LOGIN_REPAIRED"}
        ),
        SandboxItemFireWebhookResponse,
    )

    # Every webhook, and the key that verifies them.
    for code, model in (
        ("SYNC_UPDATES_AVAILABLE", SyncUpdatesAvailableWebhook),
        ("ERROR", ItemErrorWebhook),
        ("LOGIN_REPAIRED", ItemLoginRepairedWebhook),
        ("PENDING_EXPIRATION", PendingExpirationWebhook),
        ("INVESTMENTS_HISTORICAL_UPDATE", InvestmentsHistoricalUpdateWebhook),
    ):
        hook = (
            await client.post(
                f"{PLAID}/_control/webhook",
                json={"item_id": exchanged["item_id"], "webhook_code": code},
            )
        ).json()
        seen(json.loads(hook["body"]), model)
    import jwt

    kid = jwt.get_unverified_header(hook["plaid_verification"])["kid"]
    seen(
        await call(client, "/webhook_verification_key/get", {"key_id": kid}),
        WebhookVerificationKeyGetResponse,
    )

    # Every error: each a PlaidError.
    errors = [
        await call(client, "/accounts/get", token | {"access_token": "access-nope"}, status=400),
        await call(client, "/transactions/sync", {**token, "cursor": "nope"}, status=400),
        await call(client, "/transactions/sync", {**token, "count": 501}, status=400),
        await call(client, "/item/public_token/exchange", {"public_token": "x"}, status=400),
        await call(client, "/webhook_verification_key/get", {"key_id": "nope"}, status=400),
    ]
    refused = await client.post(f"{PLAID}/accounts/get", json=token)
    assert refused.status_code == 400
    errors.append(refused.json())
    await control(client, login, "fail", kind="TRANSACTIONS_SYNC_LIMIT")
    errors.append(await call(client, "/transactions/sync", token, status=429))
    await control(client, login, "fail", kind="MUTATION")
    paging = await call(client, "/transactions/sync", token)
    errors.append(
        await call(
            client, "/transactions/sync", {**token, "cursor": paging["next_cursor"]}, status=400
        )
    )
    await control(client, login, "fail", kind="INVALID_ACCESS_TOKEN")
    errors.append(await call(client, "/accounts/get", token, status=400))
    await control(client, login, "fail", kind="ITEM_LOGIN_REQUIRED")
    errors.append(await call(client, "/accounts/get", token, status=400))
    seen(await call(client, "/sandbox/item/reset_login", token), SandboxItemResetLoginResponse)
    other = await call(
        client,
        "/sandbox/public_token/create",
        {"institution_id": "ins_dashtam", "initial_products": ["transactions"]},
    )
    plain = await call(
        client, "/item/public_token/exchange", {"public_token": other["public_token"]}
    )
    errors.append(
        await call(
            client,
            "/investments/holdings/get",
            {"access_token": plain["access_token"]},
            status=400,
        )
    )
    seen(
        await call(client, "/item/remove", {"access_token": plain["access_token"]}),
        ItemRemoveResponse,
    )
    codes = [e["error_code"] for e in errors]
    assert codes == [
        "INVALID_ACCESS_TOKEN", "INVALID_FIELD", "INVALID_FIELD", "INVALID_PUBLIC_TOKEN",
        "INVALID_WEBHOOK_VERIFICATION_KEY_ID", "INVALID_API_KEYS", "TRANSACTIONS_SYNC_LIMIT",
        "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION", "INVALID_ACCESS_TOKEN",
        "ITEM_LOGIN_REQUIRED", "PRODUCTS_NOT_SUPPORTED",
    ]  # fmt: skip
    answers += [(e, PlaidError) for e in errors]
    # A history still coming (POST /_control/{login}/history): its status, its refusal.
    slow = f"user_{uuid.uuid4().hex[:8]}"
    await client.post(
        f"{PLAID}/_control/{slow}/history",
        json={"transactions": "INITIAL_UPDATE_COMPLETE", "investments": "NOT_READY"},
    )
    made = await call(
        client,
        "/sandbox/public_token/create",
        {
            "institution_id": "ins_dashtam",
            "initial_products": ["transactions", "investments"],
            "options": {"override_username": slow},
        },
    )
    token = {
        "access_token": (
            await call(
                client, "/item/public_token/exchange", {"public_token": made["public_token"]}
            )
        )["access_token"]
    }
    initial = seen(await call(client, "/transactions/sync", token), TransactionsSyncResponse)
    assert initial["transactions_update_status"] == "INITIAL_UPDATE_COMPLETE"
    while initial["has_more"]:
        initial = await call(
            client, "/transactions/sync", {**token, "cursor": initial["next_cursor"]}
        )
    waiting = await call(
        client,
        "/investments/transactions/get",
        {**token, "start_date": "2000-01-01", "end_date": "2100-01-01"},
        status=400,
    )
    await control(client, slow, "fail", kind="MUTATION_AT_CURSOR")
    stuck = await call(
        client, "/transactions/sync", {**token, "cursor": initial["next_cursor"]}, status=400
    )
    assert [waiting["error_code"], stuck["error_code"]] == [
        "PRODUCT_NOT_READY", "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION",
    ]  # fmt: skip
    answers += [(waiting, PlaidError), (stuck, PlaidError)]

    for raw, model in answers:
        valid(raw, model)


@pytest.mark.parametrize(
    "breaking",
    [
        lambda a: a["added"][0].pop("pending_transaction_id"),  # a required field missing
        lambda a: a["added"][0].update(amount="4.50"),  # a string where a number is
        lambda a: a["added"][0].update(name=None),  # a null the document does not allow
        lambda a: a["added"][0].update(payment_channel="by pigeon"),  # an unlisted value
        lambda a: a["added"][0].update(category_tree="x"),  # a key the document has not
        lambda a: a.update(transactions_update_status="DONE"),  # an unlisted enum value
    ],
)
async def test_a_broken_answer_is_refused(client, breaking):
    login = f"user_{uuid.uuid4().hex[:8]}"
    made = await call(
        client,
        "/sandbox/public_token/create",
        {"institution_id": "ins_dashtam", "initial_products": ["transactions"],
         "options": {"override_username": login}},
    )  # fmt: skip
    token = await call(
        client, "/item/public_token/exchange", {"public_token": made["public_token"]}
    )
    answer = await call(client, "/transactions/sync", {"access_token": token["access_token"]})
    valid(json.loads(json.dumps(answer)), TransactionsSyncResponse)
    breaking(answer)
    with pytest.raises(Exception):  # noqa: B017,PT011 -- plaid-python's errors or Drift
        valid(answer, TransactionsSyncResponse)
