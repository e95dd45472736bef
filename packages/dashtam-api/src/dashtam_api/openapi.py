"""The OpenAPI document tells the truth about failures.

Every error this API answers is ``application/problem+json`` (RFC 9457, problems.py); FastAPI's
generated document says ``application/json`` with its own validation-error shape, and lists
none of the statuses raised on purpose. Here the document is finished once, when first asked
for: each operation lists the statuses it can answer, each as a ``Problem``.

- Statuses that follow from how an operation is declared are added to every such operation:
  401 where it needs a bearer token, 404 where a path names a resource, 400 where it takes a
  body (one that is not even text), 422 where it takes parameters or a body, 503 (with
  ``Retry-After``) everywhere our database or cache is used.
- Statuses an operation raises on purpose are declared on its route: ``responses=problems(409)``.

The provider types a provider may be created with are listed (an ``enum`` of this deployment's
registry), so that a generated client, or schemathesis, creates real providers; outside
development and testing, a webhook's URL pattern is https only, as the API then demands.
"""

from collections.abc import Sequence
from http import HTTPStatus

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.utils import generate_unique_id
from pydantic import BaseModel, ConfigDict, Field

from dashtam_api.problems import PROBLEM_JSON

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
# /health answers 503 with its own report (not a problem): a load balancer reads the checks.
_OWN_ERROR_BODIES = {("/health", "503")}


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where: body, query or path, then the field.")
    msg: str
    type: str


class Problem(BaseModel):
    """An error, as RFC 9457 problem details; some add fields of their own (``retry_after``,
    ``institution_error``, ``action``, ...)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "about:blank",
                    "title": "Conflict",
                    "status": 409,
                    "detail": "You already have a provider called 'Brokerage'.",
                }
            ]
        },
    )

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = Field(
        default=None, description="What was wrong with the request, field by field (422)."
    )


# The operations' groups, in the order the document lists them (whatever the order in which
# the app tries its routes).
TAGS = [
    {"name": "health", "description": "Whether the API, its database and its cache are up."},
    {"name": "auth", "description": "Sign up, sign in, sessions and the signed-in person."},
    {"name": "admin", "description": "Invitations to register (administrators only)."},
    {"name": "providers", "description": "The institutions a person has added."},
    {"name": "connections", "description": "Connecting a provider through OAuth2, and its tokens."},
    {"name": "accounts", "description": "Accounts, balances, positions, net worth and syncs."},
    {"name": "transactions", "description": "Every transaction, newest first, by cursor."},
    {
        "name": "imports",
        "description": "Files (OFX/QFX, CSV, CAMT.053) imported into accounts, without duplicates.",
    },
    {
        "name": "webhooks",
        "description": "Endpoints that receive signed events (Standard Webhooks), and their "
        "deliveries.",
    },
    {
        "name": "api-keys",
        "description": "Personal API keys for scripts and apps: a Bearer credential limited "
        "to its scopes (each operation says which one opens it), expiring, revocable.",
    },
    {
        "name": "simplefin",
        "description": "Setup tokens for apps that read SimpleFIN (Actual, Firefly III, ...), "
        "and the access they claimed.",
    },
    {
        "name": "simplefin-protocol",
        "description": "The SimpleFIN protocol itself (https://www.simplefin.org/protocol.html): "
        "what those apps call, with the access URL's HTTP Basic credentials.",
    },
]
_TAG_ORDER = {tag["name"]: n for n, tag in enumerate(TAGS)}


def operation_id(route: APIRoute) -> str:
    """``<tag>-<name>``: stable and readable ids (``providers-create``, ``webhooks-rotate-secret``)
    from each route's ``name=``, so generated clients read well (FastAPI's default is the
    function's name, path and method: ``create_provider_api_v1_providers_post``)."""
    if not route.tags:  # not in the document (/metrics, the sandbox's own routes)
        return generate_unique_id(route)
    return f"{route.tags[0]}-{route.name.replace('_', '-')}"


def problems(*statuses: int) -> dict[int | str, dict]:
    """``responses=`` for a route: these statuses, each answered with a problem."""
    return {status: {"description": HTTPStatus(status).phrase} for status in statuses}


def install(
    app: FastAPI, *, provider_kinds: Sequence[str] = (), webhooks_https_only: bool = False
) -> None:
    """Make ``app.openapi()`` return the finished document (built once); ``provider_kinds``:
    this deployment's provider types (its registry's keys); ``webhooks_https_only``: outside
    development and testing, where the API takes https webhook URLs only."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = finished(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
            # The provider types are this deployment's (the registry): say which.
            create = schema["components"]["schemas"].get("CreateProvider")
            if provider_kinds and create:
                create["properties"]["provider_key"]["enum"] = list(provider_kinds)
            if webhooks_https_only:
                _https_only(schema["components"]["schemas"])
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _https_only(schemas: dict) -> None:
    """Webhook URLs are https only outside development and testing: the document says so."""
    from dashtam_api.webhooks.targets import HTTPS_URL_PATTERN

    for name in ("WebhookCreate", "WebhookUpdate"):
        if name in schemas:
            schemas[name]["properties"]["url"]["pattern"] = HTTPS_URL_PATTERN


def _tag_rank(path_item: tuple[str, dict]) -> int:
    tags = [t for operation in path_item[1].values() for t in operation.get("tags", ())]
    return min((_TAG_ORDER.get(t, len(TAGS)) for t in tags), default=len(TAGS))


def finished(schema: dict) -> dict:
    # Paths grouped in TAGS' order, each group in its router's order (a stable sort).
    schema["paths"] = dict(sorted(schema.get("paths", {}).items(), key=_tag_rank))
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            _finish(path, operation)
            _api_key_scope(operation)
    schema["components"].setdefault("securitySchemes", {})["ApiKey"] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "dtk_...",
        "description": "A personal API key (POST /api/v1/api-keys) as the Bearer credential: "
        "only on the operations that name its scope (the requirement's list); elsewhere a 403.",
    }
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


def _api_key_scope(operation: dict) -> None:
    """An operation an API key may call lists it as a second way in, with the scope it needs
    (and says so where people read)."""
    from dashtam_api.apikeys.scopes import OPERATION_SCOPES

    scope = OPERATION_SCOPES.get(operation.get("operationId", ""))
    if scope is None:
        return
    operation.setdefault("security", []).append({"ApiKey": [scope]})
    note = f"API keys: with the scope `{scope}`."
    operation["description"] = f"{operation.get('description', '')}\n\n{note}".strip()


def _finish(path: str, operation: dict) -> None:
    responses = operation.setdefault("responses", {})
    implied = []
    if any("HTTPBearer" in scheme for scheme in operation.get("security", ())):
        # A key without the scope, or where no key goes, is a 403. (SimpleFIN's Basic
        # credentials are refused with 403 alone, as its spec says.)
        implied += [401, 403]
    if "{" in path:
        implied.append(404)
    if operation.get("requestBody"):
        implied.append(400)  # FastAPI's answer to a body that is not even text
    if operation.get("parameters") or operation.get("requestBody"):
        implied.append(422)
    if path != "/health":
        implied.append(503)
    for status in implied:
        responses.setdefault(str(status), {"description": HTTPStatus(status).phrase})
    for status, response in responses.items():
        if status[0] in "45" and (path, status) not in _OWN_ERROR_BODIES:
            response["content"] = {PROBLEM_JSON: {"schema": _PROBLEM_REF}}
            if status in ("429", "503"):
                response["headers"] = {
                    "Retry-After": {
                        "description": "Seconds to wait before trying again.",
                        "schema": {"type": "integer"},
                    }
                }
