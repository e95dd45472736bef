"""Errors are application/problem+json (RFC 9457); nothing answers with a traceback."""

import httpx
from pydantic import BaseModel

from dashtam_api.main import create_app


class Widget(BaseModel):
    name: str
    size: int


async def test_validation_and_unexpected_errors_are_problem_documents(test_settings):
    app = create_app(test_settings)

    @app.post("/_probe/widgets")
    async def make_widget(widget: Widget) -> dict:
        return widget.model_dump()

    @app.get("/_probe/boom")
    async def boom() -> dict:
        raise RuntimeError("secret internals")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as client,
    ):
        invalid = await client.post("/_probe/widgets", json={"name": "x", "size": "big"})
        assert invalid.status_code == 422
        assert invalid.headers["content-type"] == "application/problem+json"
        assert invalid.json()["errors"][0]["loc"] == ["body", "size"]

        malformed = await client.post(
            "/_probe/widgets", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 422

        crashed = await client.get("/_probe/boom")
        assert crashed.status_code == 500
        assert crashed.headers["content-type"] == "application/problem+json"
        assert "secret internals" not in crashed.text
        assert "Traceback" not in crashed.text
