"""Query strings read into pydantic models: ``Annotated[Model, QueryModel(Model)]``.

It does what FastAPI's ``Annotated[Model, Query()]`` does (each field a query parameter, the
same validation, a 422 with ``loc: ["query", field]``, the same parameters in the OpenAPI
document) in one ``model_validate`` call, and refuses a name given twice. FastAPI reshapes every field on every request
(aliases, sequence checks, extras): ~90 us of a ~1 ms request for the eight fields of a
transactions query, against ~5 us here (docs/performance.md). tests/api/test_openapi.py holds
the documented parameters to the ones FastAPI writes for the same model.

Routes that take one are made by ``QueryRoute`` (``APIRouter(route_class=QueryRoute)``), which
adds the model's parameters to the route's OpenAPI operation.
"""

from typing import Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError


class _Reader:
    """The dependency: the query string validated as ``model``. Every field takes one value:
    a name given twice is refused (FastAPI would take the last one silently, as it would
    ignore an unknown name without ``extra="forbid"``)."""

    def __init__(self, model: type[BaseModel]):
        self.model = model

    async def __call__(self, request: Request) -> BaseModel:
        # async: FastAPI would run a plain function in its thread pool, a thread hop a request.
        params = request.query_params
        if len(params.multi_items()) != len(params):
            raise RequestValidationError(
                [
                    {
                        "type": "repeated",
                        "loc": ("query", name),
                        "msg": "Given more than once: this parameter takes one value.",
                        "input": params.getlist(name),
                    }
                    for name in params
                    if len(params.getlist(name)) > 1
                ]
            )
        try:
            return self.model.model_validate(dict(params))
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("query", *e["loc"])} for e in exc.errors(include_url=False)]
            ) from None


def QueryModel(model: type[BaseModel]) -> Any:
    return Depends(_Reader(model))


def parameters(model: type[BaseModel]) -> list[dict]:
    """The model's fields as OpenAPI query parameters, in the form FastAPI gives them."""
    schema = model.model_json_schema(by_alias=True)
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    documented = []
    for name, field in model.model_fields.items():
        alias = field.alias or name
        field_schema = properties[alias]
        if field_schema.get("default", ...) is None:
            del field_schema["default"]  # FastAPI leaves a null default out
        parameter = {
            "name": alias,
            "in": "query",
            "required": alias in required,
            "schema": field_schema,
        }
        if field.description:
            parameter["description"] = field.description
        documented.append(parameter)
    return documented


class QueryRoute(APIRoute):
    """A route whose OpenAPI operation lists the query parameters of its QueryModel."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        models = [d.call.model for d in self.dependant.dependencies if isinstance(d.call, _Reader)]
        if models:
            extra = dict(self.openapi_extra or {})
            extra["parameters"] = [
                *extra.get("parameters", ()),
                *(p for model in models for p in parameters(model)),
            ]
            self.openapi_extra = extra
