"""What every console page shares: the templates, who is signed in (console/cookies.py: the
API's own session), and the page's answer with its headers and renewed cookies."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from dashtam_api.auth import queries as people
from dashtam_api.auth import security
from dashtam_api.auth import service as auth
from dashtam_api.auth.schemas import TokenPair
from dashtam_api.console import cookies
from dashtam_api.deps import where
from dashtam_api.errors import Unauthorized
from dashtam_core.pages import page_headers
from dashtam_models import User

POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'"
)

templates = Environment(
    loader=PackageLoader("dashtam_api.console", "templates"),
    autoescape=select_autoescape(default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def money(value) -> str:
    """A Decimal as people read it: grouped, its own digits (never a float's)."""
    amount = Decimal(str(value))
    return f"{amount:,}"


def when(moment: datetime | str) -> str:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


templates.globals.update(money=money, when=when)


@dataclass
class Visitor:
    """Who the request is from: the person and their session, and the tokens renewed on the
    way (set as cookies on the answer)."""

    user: User
    session_id: uuid.UUID
    renewed: TokenPair | None = None

    async def reread(self, session) -> None:
        """After a rollback (a refused action's writes thrown away, by the page or by the
        service): the person read afresh, never loaded lazily from the expired row."""
        self.user = await people.user_by_id(session, user_id=self.user_id)

    def __post_init__(self) -> None:
        self.user_id = self.user.id  # kept apart from the row, which a rollback expires


def page(
    template: str,
    *,
    status: int = 200,
    visitor: Visitor | None = None,
    settings=None,
    headers: dict | None = None,
    **context,
) -> HTMLResponse:
    csrf = context.pop("csrf", None)
    if visitor is not None:
        csrf = cookies.csrf_token(settings.SECRET_KEY, visitor.session_id)
    body = templates.get_template(template).render(
        person=visitor.user if visitor else None,
        csrf=csrf or "",
        notice=context.pop("notice", None),
        problem=context.pop("problem", None),
        **context,
    )
    response = HTMLResponse(
        body, status_code=status, headers=page_headers(POLICY) | (headers or {})
    )
    if visitor is not None and visitor.renewed is not None:
        cookies.set_pair(response, visitor.renewed, refresh_days=settings.REFRESH_TOKEN_DAYS)
    return response


def to_sign_in() -> RedirectResponse:
    response = RedirectResponse("/app/sign-in", status_code=303)
    cookies.clear(response)
    return response


async def visitor_of(request: Request, session, ctx, ended) -> Visitor | None:
    """The signed-in person, renewing an expired access token with the refresh cookie; None
    when there is no sign-in (or it ended)."""
    settings = ctx.settings
    found = cookies.signed_in_as(request, settings.SECRET_KEY, ended)
    renewed = None
    if found is None:
        refresh = request.cookies.get(cookies.REFRESH)
        if not refresh:
            return None
        try:
            renewed = await auth.refresh(
                session=session,
                settings=settings,
                ended=ended,
                token=refresh,
                user_agent=request.headers.get("user-agent"),
                ip=where(request)["ip"],
            )
        except Unauthorized:
            return None
        found = (
            security.decode_access_token(
                renewed.access_token, secret=settings.SECRET_KEY, ended=ended
            ),
            security.session_of(renewed.access_token, secret=settings.SECRET_KEY),
        )
    user = await people.user_by_id(session, user_id=found[0])
    if user is None or not user.is_active:
        return None
    return Visitor(user=user, session_id=found[1], renewed=renewed)


EXPIRED = "The form expired: try again."


async def form_visitor(request, session, ctx, ended, csrf: str, expired):
    """The signed-in person who sent a form with its page's token, or the answer to give
    instead: the sign-in page, or ``expired(visitor)`` (the form's page again, saying so) as a
    400. Returns (visitor, None) or (None, answer)."""
    visitor = await visitor_of(request, session, ctx, ended)
    if visitor is None:
        return None, to_sign_in()
    if not cookies.csrf_holds(ctx.settings.SECRET_KEY, visitor.session_id, csrf):
        answer = await expired(visitor)
        answer.status_code = 400
        return None, answer
    return visitor, None
