"""The API's interactive documentation at /docs, served whole by the API itself.

FastAPI's default page loads Swagger UI from a public CDN: a blank page without internet, and a
page that runs whatever that CDN serves. Here Swagger UI's script and styles come from the
fastapi-offline package (pinned with the project), the page and the few lines that start it
from this package, and the page's content security policy allows nothing from anywhere else.
"""

from html import escape
from importlib.resources import files

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

from dashtam_core.pages import page_headers

# Swagger UI sets styles through the DOM and shows its icons as data: URIs; it fetches the
# OpenAPI document and, with "Try it out", calls the API: all on this origin.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'"
)


def install(app: FastAPI, *, path: str = "/docs") -> None:
    """Serve the docs page at ``path`` and its assets under ``path``/assets/."""
    assets = f"{path}/assets"
    app.mount(
        f"{assets}/swagger-ui",
        StaticFiles(directory=str(files("fastapi_offline") / "static")),
        name="swagger-ui-assets",
    )
    app.mount(
        f"{assets}/dashtam",
        StaticFiles(directory=str(files("dashtam_api") / "docs_static")),
        name="docs-assets",
    )
    title = escape(f"{app.title} - API documentation")
    document = escape(app.openapi_url or "")
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{title}</title>"
        f"<link rel='stylesheet' href='{assets}/swagger-ui/swagger-ui.css'>"
        f"<link rel='icon' href='{assets}/swagger-ui/favicon.png'></head><body>"
        f"<div id='swagger-ui' data-openapi-url='{document}'>"
        f"<noscript><h1>{title}</h1><p>The interactive documentation needs JavaScript; the "
        f"OpenAPI document is at <a href='{document}'>{document}</a>.</p></noscript></div>"
        f"<script src='{assets}/swagger-ui/swagger-ui-bundle.js'></script>"
        f"<script src='{assets}/dashtam/swagger-init.js'></script>"
        "</body></html>"
    )

    @app.get(path, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page, headers=page_headers(POLICY))
