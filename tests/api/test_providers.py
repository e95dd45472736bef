"""Providers: catalog, create, list (paginated), get, rename, delete; other users see 404."""

import uuid

import pytest
from sqlalchemy import text

from tests.api.test_auth import is_problem


async def add(client, headers, alias="My Sandbox", key="sandbox"):
    return await client.post(
        "/api/v1/providers", headers=headers, json={"provider_key": key, "alias": alias}
    )


async def test_catalog_lists_kinds_and_whether_they_are_configured(client, auth_headers):
    response = await client.get("/api/v1/provider-types", headers=auth_headers)
    kinds = {k["key"]: k for k in response.json()}
    assert kinds["sandbox"]["configured"] is True
    assert kinds["sandbox"]["supports"]["pkce"] is True
    assert kinds["schwab"]["configured"] is False  # no credentials in the test env
    assert kinds["schwab"]["name"] == "Charles Schwab"
    assert {(k["kind"], tuple(k["supplies"])) for k in (kinds["sandbox"], kinds["schwab"])} == {
        ("oauth2", ("authorization",))
    }


async def test_catalog_requires_authentication(client):
    is_problem(await client.get("/api/v1/provider-types"), 401)


async def test_create_get_rename_delete(client, auth_headers):
    created = await add(client, auth_headers)
    assert created.status_code == 201
    provider = created.json()
    assert provider["status"] == "pending"
    path = f"/api/v1/providers/{provider['id']}"
    assert (await client.get(path, headers=auth_headers)).json()["alias"] == "My Sandbox"
    renamed = await client.patch(path, headers=auth_headers, json={"alias": "Renamed"})
    assert renamed.json()["alias"] == "Renamed"
    assert (await client.delete(path, headers=auth_headers)).status_code == 204
    is_problem(await client.get(path, headers=auth_headers), 404)


async def test_alias_is_unique_per_user_not_globally(client, sign_up):
    ann, _, _ = await sign_up()
    bob, _, _ = await sign_up()
    assert (await add(client, ann, "Main")).status_code == 201
    is_problem(await add(client, ann, "Main"), 409)
    assert (await add(client, bob, "Main")).status_code == 201
    second = (await add(client, ann, "Second")).json()
    is_problem(
        await client.patch(
            f"/api/v1/providers/{second['id']}", headers=ann, json={"alias": "Main"}
        ),
        409,
    )


async def test_unknown_provider_type_is_404(client, auth_headers):
    is_problem(await add(client, auth_headers, key="nobank"), 404)


async def test_list_is_paginated_and_only_mine(client, sign_up):
    ann, _, _ = await sign_up()
    bob, _, _ = await sign_up()
    for i in range(5):
        await add(client, ann, f"Ann {i}")
    await add(client, bob, "Bob's")
    page = (await client.get("/api/v1/providers?limit=2&offset=1", headers=ann)).json()
    assert page["total"] == 5
    assert (page["limit"], page["offset"]) == (2, 1)
    everything = (await client.get("/api/v1/providers", headers=ann)).json()
    assert {p["alias"] for p in everything["items"]} == {f"Ann {i}" for i in range(5)}
    # Pages are slices of one stable order.
    assert page["items"] == everything["items"][1:3]
    # Past the end: no items, the total still right (it comes from its own query then).
    beyond = (await client.get("/api/v1/providers?offset=7", headers=ann)).json()
    assert (beyond["items"], beyond["total"]) == ([], 5)
    nobody, _, _ = await sign_up()
    assert (await client.get("/api/v1/providers", headers=nobody)).json()["total"] == 0


async def test_list_items_are_what_a_read_of_each_answers(client, auth_headers):
    created = [(await add(client, auth_headers, f"Bank {i}")).json() for i in range(3)]
    listed = (await client.get("/api/v1/providers", headers=auth_headers)).json()["items"]
    read = [
        (await client.get(f"/api/v1/providers/{p['id']}", headers=auth_headers)).json()
        for p in created
    ]
    by_id = lambda items: sorted(items, key=lambda p: p["id"])  # noqa: E731
    assert by_id(listed) == by_id(read) == by_id(created)


@pytest.mark.parametrize("change", ["UPDATE users SET is_active = false", "DELETE FROM users"])
async def test_a_token_outlives_its_account_but_opens_nothing(client, sign_up, session, change):
    """The list reads the user in its one statement: a deactivated or deleted account's still
    unexpired token is refused there as it is everywhere else (the same 401)."""
    headers, _, (email, _) = await sign_up()
    await add(client, headers)
    await session.execute(text(f"{change} WHERE email = :email"), {"email": email})
    for path in ("/api/v1/providers", "/api/v1/providers?offset=5", "/api/v1/auth/me"):
        problem = is_problem(await client.get(path, headers=headers), 401)
        assert problem["detail"] == "The account behind this token no longer exists."


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "offset=-1", "limit=ten"])
async def test_bad_paging_is_422(client, auth_headers, query):
    is_problem(await client.get(f"/api/v1/providers?{query}", headers=auth_headers), 422)


# A fixed id: every xdist worker must collect the same test names.
@pytest.mark.parametrize(
    "path",
    ["/api/v1/providers", "/api/v1/accounts", f"/api/v1/providers/{uuid.UUID(int=1)}/accounts"],
)
async def test_an_unknown_query_parameter_is_422_naming_it(client, auth_headers, path):
    """A misspelt ?limt=5 is refused, not ignored (the page would not be the one asked for)."""
    problem = is_problem(await client.get(f"{path}?limt=5", headers=auth_headers), 422)
    assert [(e["loc"], e["type"]) for e in problem["errors"]] == [
        (["query", "limt"], "extra_forbidden")
    ]


async def test_another_users_provider_is_not_found_for_every_method(client, sign_up):
    ann, _, _ = await sign_up()
    bob, _, _ = await sign_up()
    provider = (await add(client, ann)).json()
    path = f"/api/v1/providers/{provider['id']}"
    is_problem(await client.get(path, headers=bob), 404)
    is_problem(await client.patch(path, headers=bob, json={"alias": "Mine now"}), 404)
    is_problem(await client.delete(path, headers=bob), 404)
    is_problem(await client.post(f"{path}/authorization", headers=bob), 404)
    is_problem(await client.get(f"{path}/authorization", headers=bob), 404)
    is_problem(await client.delete(f"{path}/authorization", headers=bob), 404)
    assert (await client.get(path, headers=ann)).status_code == 200


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
async def test_malformed_and_unknown_ids(client, auth_headers, method):
    kwargs = {"json": {"alias": "x"}} if method == "patch" else {}
    is_problem(
        await getattr(client, method)(
            "/api/v1/providers/not-a-uuid", headers=auth_headers, **kwargs
        ),
        422,
    )
    is_problem(
        await getattr(client, method)(
            f"/api/v1/providers/{uuid.uuid4()}", headers=auth_headers, **kwargs
        ),
        404,
    )


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"provider_key": "sandbox"},
        {"provider_key": "sandbox", "alias": ""},
        {"provider_key": "sandbox", "alias": "x" * 101},
        {"provider_key": "sandbox", "alias": "a", "x": 1},
    ],
)
async def test_malformed_bodies_are_422(client, auth_headers, body):
    is_problem(await client.post("/api/v1/providers", headers=auth_headers, json=body), 422)
