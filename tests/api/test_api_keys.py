"""Personal API keys: every operation of the document answers a key as its scope says (the
table is the document itself), a key with transactions:read reads transactions and nothing
else, expired, revoked and unknown keys are 401, only a hash is kept."""

import hashlib
import uuid

from sqlalchemy import select, text

from dashtam_api.apikeys.scopes import OPERATION_SCOPES, SCOPES
from dashtam_models import ApiKey, SecurityAuditLog
from tests.api.test_auth import is_problem
from tests.api.test_connections import signed_in
from tests.api.test_refresh import connected_schwab
from tests.api.test_sync import synced


async def new_key(client, headers, scopes, **extra) -> dict:
    answer = await client.post(
        "/api/v1/api-keys", headers=headers, json={"name": "script", "scopes": scopes, **extra}
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def bearer(key: dict) -> dict:
    return {"Authorization": f"Bearer {key['key']}"}


def bearer_operations(document: dict):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            schemes = {name for r in operation.get("security", ()) for name in r}
            if "HTTPBearer" in schemes:
                yield method.upper(), path, operation


async def test_every_operation_answers_a_key_as_its_scope_says(client):
    headers = await signed_in(client, "keys")
    document = (await client.get("/openapi.json")).json()
    assert {"HTTPBearer", "ApiKey"} <= set(document["components"]["securitySchemes"])
    keys = {scope: await new_key(client, headers, [scope]) for scope in SCOPES}
    every_scope = await new_key(client, headers, list(SCOPES))

    checked, opened = 0, set()
    for method, path, operation in bearer_operations(document):
        needed = OPERATION_SCOPES.get(operation["operationId"])
        declared = [r["ApiKey"] for r in operation["security"] if "ApiKey" in r]
        assert declared == ([[needed]] if needed else []), operation["operationId"]
        # Ids that name nothing: what a key may do ends in a 404 or 422, never a change.
        url = path
        for name in [p.split("}")[0] for p in path.split("{")[1:]]:
            url = url.replace("{" + name + "}", str(uuid.uuid4()))
        body = {} if method in ("POST", "PATCH", "PUT") else None
        for scope, key in keys.items():
            answer = await client.request(method, url, headers=bearer(key), json=body)
            where = (method, path, scope, answer.text)
            if scope == needed:
                assert answer.status_code not in (401, 403), where
                opened.add(operation["operationId"])
            else:
                is_problem(answer, 403)
                assert answer.json().get("missing_scope") == needed, where
        if needed is None:
            answer = await client.request(method, url, headers=bearer(every_scope), json=body)
            is_problem(answer, 403)
            assert "cannot be used here" in answer.json()["detail"]
        checked += 1
    assert opened == set(OPERATION_SCOPES)  # every scoped operation is in the document
    assert checked > len(OPERATION_SCOPES) + 20  # and the account's own ones refuse keys


async def test_a_transactions_key_reads_transactions_and_nothing_else(
    institution_client, test_settings, session
):
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    await synced(client, headers, provider_id)
    key = await new_key(client, headers, ["transactions:read"], expires_in_days=30)
    assert key["key"].startswith("dtk_")
    assert key["prefix"] == key["key"][:10]

    with_password = (await client.get("/api/v1/transactions", headers=headers)).json()
    with_key = await client.get("/api/v1/transactions", headers=bearer(key))
    assert with_key.status_code == 200
    assert with_key.json() == with_password
    assert with_password["items"]
    refused = await client.get("/api/v1/accounts", headers=bearer(key))
    is_problem(refused, 403)
    assert refused.json()["missing_scope"] == "accounts:read"
    is_problem(await client.get("/api/v1/auth/me", headers=bearer(key)), 403)
    is_problem(
        await client.post(
            "/api/v1/api-keys", headers=bearer(key), json={"name": "x", "scopes": ["accounts:read"]}
        ),
        403,
    )

    # Only its hash is kept; the list shows its prefix and last use, never the key.
    stored = await session.scalar(select(ApiKey).where(ApiKey.id == uuid.UUID(key["id"])))
    assert stored.key_hash == hashlib.sha256(key["key"].encode()).hexdigest()
    listed = (await client.get("/api/v1/api-keys", headers=headers)).json()["items"]
    (item,) = listed
    assert "key" not in item
    assert item["last_used_at"] is not None
    assert item["scopes"] == ["transactions:read"]

    # Expired, revoked, unknown: 401.
    await session.execute(
        text("UPDATE api_keys SET expires_at = now() - interval '1 hour' WHERE id = :id"),
        {"id": key["id"]},
    )
    await session.commit()
    expired = await client.get("/api/v1/transactions", headers=bearer(key))
    is_problem(expired, 401)
    assert "expired" in expired.json()["detail"]
    fresh = await new_key(client, headers, ["transactions:read"])
    assert (await client.get("/api/v1/transactions", headers=bearer(fresh))).status_code == 200
    revoked = await client.delete(f"/api/v1/api-keys/{fresh['id']}", headers=headers)
    assert revoked.status_code == 204
    is_problem(await client.get("/api/v1/transactions", headers=bearer(fresh)), 401)
    unknown = {"Authorization": "Bearer dtk_" + "x" * 43}
    is_problem(await client.get("/api/v1/transactions", headers=unknown), 401)
    someone_else = await signed_in(client, "other")
    is_problem(await client.delete(f"/api/v1/api-keys/{key['id']}", headers=someone_else), 404)

    actions = set((await session.scalars(select(SecurityAuditLog.action))).all())
    assert {"api_key_created", "api_key_revoked"} <= actions


async def test_a_key_asks_for_known_scopes_and_a_bounded_life(client):
    headers = await signed_in(client, "bounds")
    for body in (
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["everything"]},
        {"name": "x", "scopes": ["accounts:read"], "expires_in_days": 0},
        {"name": "x", "scopes": ["accounts:read"], "expires_in_days": 366},
        {"name": "", "scopes": ["accounts:read"]},
    ):
        is_problem(await client.post("/api/v1/api-keys", headers=headers, json=body), 422)
