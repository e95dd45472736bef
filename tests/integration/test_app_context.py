"""The app's collaborators (AppContext): made once, with the app, and closed with its lifespan."""

import pytest

from dashtam_api.main import create_app


async def test_an_app_serves_one_lifespan(test_settings):
    """Its collaborators are made once, with the app, and closed at the end of its lifespan:
    a second start would hand out closed pools, so it is refused in one clear line."""
    app = create_app(test_settings)
    async with app.router.lifespan_context(app):
        pass
    with pytest.raises(RuntimeError, match="served once"):
        async with app.router.lifespan_context(app):
            pass
