"""The OpenAPI document tells the truth about failures (dashtam_api/openapi.py): every error an
operation answers is listed for it, as application/problem+json. Checked on the document, and
against real answers of the app."""

import uuid

import pytest

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


@pytest.fixture
async def document(client) -> dict:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(document: dict):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method.upper(), operation


async def test_every_error_is_a_problem_and_every_implied_status_is_listed(document):
    seen = 0
    for path, method, operation in operations(document):
        responses = operation["responses"]
        for status, response in responses.items():
            if status[0] in "45" and (path, status) != ("/health", "503"):
                assert response["content"] == PROBLEM, (method, path, status)
                seen += 1
        schemes = {name for requirement in operation.get("security", ()) for name in requirement}
        if "HTTPBearer" in schemes:
            assert "401" in responses, (method, path)
        if "SimpleFINAccess" in schemes:  # the SimpleFIN spec's refusal is a 403; no
            assert "403" in responses, (method, path)  # credentials at all, HTTP's 401 (Basic)
            assert "WWW-Authenticate" in responses["401"]["headers"], (method, path)
        if "{" in path:
            assert "404" in responses, (method, path)
        if operation.get("requestBody"):
            assert {"400", "422"} <= set(responses), (method, path)
        if path != "/health":
            assert responses["503"]["headers"]["Retry-After"], (method, path)
    assert seen > 50
    schemas = document["components"]["schemas"]
    assert set(schemas["Problem"]["required"]) == {"title", "status"}
    assert "HTTPValidationError" not in schemas  # FastAPI's shape, which this API never sends


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("POST", "/api/v1/auth/register", {"409"}),
        ("POST", "/api/v1/auth/login", {"401", "429"}),
        ("PATCH", "/api/v1/auth/me", {"403"}),
        ("POST", "/api/v1/providers", {"404", "409"}),
        ("POST", "/api/v1/providers/{provider_id}/authorization", {"409"}),
        ("POST", "/api/v1/providers/{provider_id}/authorization/refresh", {"409", "502", "504"}),
        ("POST", "/api/v1/providers/{provider_id}/sync", {"409", "502", "504"}),
        ("POST", "/simplefin/claim/{token}", {"403"}),
        ("GET", "/simplefin/accounts", {"403", "429"}),
    ],
)
async def test_what_an_operation_refuses_on_purpose_is_listed(document, method, path, statuses):
    assert statuses <= set(document["paths"][path][method.lower()]["responses"])


async def test_real_errors_are_the_documented_ones(client, auth_headers, document):
    """A few answers of each kind, as the app really gives them: documented for the operation,
    with the documented content type."""
    missing = uuid.uuid4()
    cases = [
        ("GET", "/api/v1/providers", "/api/v1/providers", {}, None, 401),
        (
            "GET",
            "/api/v1/providers/{provider_id}",
            f"/api/v1/providers/{missing}",
            auth_headers,
            None,
            404,
        ),
        ("POST", "/api/v1/providers", "/api/v1/providers", auth_headers, {"alias": 1}, 422),
        ("POST", "/api/v1/providers", "/api/v1/providers", auth_headers, b"\xc3\x28", 400),
        (
            "POST",
            "/api/v1/auth/login",
            "/api/v1/auth/login",
            {},
            {"email": "no@one.example", "password": "x" * 12},
            401,
        ),
    ]
    for method, template, path, headers, body, status in cases:
        kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
        if isinstance(body, bytes):
            headers = {**headers, "content-type": "application/json"}
        response = await client.request(method, path, headers=headers, **kwargs)
        assert response.status_code == status, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert str(status) in document["paths"][template][method.lower()]["responses"]


async def test_a_method_not_allowed_names_every_method_of_the_path(client, auth_headers):
    # Two routes serve /api/v1/auth/me (GET and PATCH): Starlette alone would name one.
    response = await client.request("PUT", "/api/v1/auth/me", headers=auth_headers)
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["allow"] == "GET, HEAD, PATCH"
    provider = await client.request("POST", f"/api/v1/providers/{uuid.uuid4()}")
    assert provider.headers["allow"] == "DELETE, GET, HEAD, PATCH"


async def test_the_provider_types_of_this_deployment_are_listed(client, auth_headers, document):
    types = await client.get("/api/v1/provider-types", headers=auth_headers)
    kinds = [kind["key"] for kind in types.json()]
    listed = document["components"]["schemas"]["CreateProvider"]["properties"]["provider_key"]
    assert listed["enum"] == sorted(kinds)


async def test_query_models_are_documented_and_refused_as_fastapi_would(client, auth_headers):
    """dashtam_api.query_strings reads query strings without FastAPI's per-field machinery: the same
    parameters in the document as FastAPI writes for the same model, the same 422s, and one
    more: a name given twice."""
    from typing import Annotated

    from fastapi import FastAPI, Query

    from dashtam_api.accounts.history import HistoryQuery
    from dashtam_api.paging import PageQuery
    from dashtam_api.query_strings import parameters
    from dashtam_api.transactions.schemas import TransactionQuery

    for model in (PageQuery, TransactionQuery, HistoryQuery):
        reference = FastAPI()

        @reference.get("/")
        def read(q: Annotated[model, Query()]):
            return None

        expected = reference.openapi()["paths"]["/"]["get"]["parameters"]
        assert parameters(model) == expected, model.__name__

    cases = {
        "limit=0": ("query", "limit"),
        "limt=5": ("query", "limt"),
        "from=yesterday": ("query", "from"),
        "status=lost": ("query", "status"),
    }
    for query, loc in cases.items():
        answer = await client.get(f"/api/v1/transactions?{query}", headers=auth_headers)
        assert answer.status_code == 422, query
        assert [tuple(e["loc"]) for e in answer.json()["errors"]] == [loc], query
    # A name given twice is refused (FastAPI would take the last one).
    twice = await client.get("/api/v1/transactions?limit=2&q=a&limit=3", headers=auth_headers)
    assert twice.status_code == 422
    assert [e["loc"] for e in twice.json()["errors"]] == [["query", "limit"]]


async def test_every_route_is_on_the_app_itself(app, document):
    """No router node for a request to walk (dashtam_api/routing.py), and every documented
    operation still carries its readable id."""
    from starlette.routing import Mount, Route

    assert all(isinstance(route, Route | Mount) for route in app.router.routes)
    operation_ids = [
        op["operationId"] for item in document["paths"].values() for op in item.values()
    ]
    assert "transactions-list" in operation_ids
    assert all("_api_v1_" not in op for op in operation_ids)
