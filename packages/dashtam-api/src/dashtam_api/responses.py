"""Answers a service has already written as JSON (the hot reads, docs/performance.md)."""

from fastapi import Response


def json_response(body: bytes) -> Response:
    """``body`` as it is: the route's ``response_model`` documents its shape, which the service
    wrote (money as decimal strings); FastAPI passes a Response through without validating it."""
    return Response(body, media_type="application/json")
