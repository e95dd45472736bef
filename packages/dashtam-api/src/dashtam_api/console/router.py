"""The web console's pages under /app/ (issue 37): server-rendered HTML (Jinja2 templates,
console/templates), forms that work without script, one stylesheet served by Dashtam itself.

Who is signed in comes from the console's cookies (console/cookies.py: the API's own session
and tokens). A page asked for without a sign-in is a redirect to /app/sign-in; a form without
its CSRF token is a 400 page. Every page carries a content security policy that allows nothing
from another origin, and ``no-store``.
"""

import uuid
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from dashtam_api.auth import resets, verification
from dashtam_api.auth import service as auth
from dashtam_api.auth.schemas import RegisterRequest, ResetAsk, TokenPair
from dashtam_api.console import cookies, pages
from dashtam_api.console import service as console
from dashtam_api.deps import (
    ContextDep,
    EndedSessionsDep,
    PasswordsDep,
    ReaderDep,
    RedisDep,
    SessionDep,
    SignInSessionDep,
    where,
)
from dashtam_api.errors import NotFound, ProblemError
from dashtam_api.routing import api_router
from dashtam_api.transactions.schemas import TransactionQuery
from dashtam_api.unit_of_work import after_commit, discard
from dashtam_models import TransactionKind, TransactionStatus

router = api_router(prefix="/app", include_in_schema=False)


INTERVALS = ("day", "week", "month")


@router.get("")
async def console_root() -> RedirectResponse:
    return RedirectResponse("/app/", status_code=308)


@router.get("/")
async def overview(
    request: Request,
    session: SessionDep,
    reader: ReaderDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
) -> Response:
    visitor = await pages.visitor_of(request, session, ctx, ended)
    if visitor is None:
        return pages.to_sign_in()
    shown = await console.overview(session=session, reader=reader, ctx=ctx, user=visitor.user)
    interval = request.query_params.get("interval", "day")
    interval = interval if interval in INTERVALS else "day"
    worth = await console.net_worth(reader=reader, user=visitor.user, interval=interval)
    return pages.page(
        "overview.html",
        interval=interval,
        intervals=INTERVALS,
        worth=worth,
        visitor=visitor,
        settings=ctx.settings,
        title="Overview",
        page="overview",
        **shown,
    )


@router.get("/sign-in")
async def sign_in_form(
    request: Request, session: SessionDep, ctx: ContextDep, ended: EndedSessionsDep
) -> Response:
    if await pages.visitor_of(request, session, ctx, ended) is not None:
        return RedirectResponse("/app/", status_code=303)
    return _sign_in_page()


def _sign_in_page(
    *, status: int = 200, problem: str | None = None, email: str = "", headers=None
) -> Response:
    token = cookies.sign_in_csrf()
    response = pages.page(
        "sign_in.html",
        status=status,
        headers=headers,
        title="Sign in",
        csrf=token,
        problem=problem,
        email=email,
    )
    cookies.set_sign_in_csrf(response, token)
    return response


def _form_status(exc: ProblemError) -> int:
    """A form shown again with what was wrong is the page asked for (200), as browsers expect
    of a form; only a throttled sign-in keeps its 429 (and its Retry-After)."""
    return 429 if exc.status == 429 else 200


def _signed_in(pair: TokenPair, settings) -> Response:
    response = RedirectResponse("/app/", status_code=303)
    cookies.set_pair(response, pair, refresh_days=settings.REFRESH_TOKEN_DAYS)
    response.delete_cookie(cookies.SIGN_IN_CSRF, path=cookies.PATH)
    return response


@router.post("/sign-in")
async def sign_in(
    request: Request,
    session: SignInSessionDep,
    redis: RedisDep,
    passwords: PasswordsDep,
    ctx: ContextDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    if not cookies.sign_in_csrf_holds(request, csrf):
        return _sign_in_page(status=400, problem="The form expired: sign in again.", email=email)
    try:
        outcome = await auth.login(
            session=session,
            redis=redis,
            settings=ctx.settings,
            passwords=passwords,
            email=email.strip(),
            password=password,
            **where(request),
        )
    except ProblemError as exc:
        return _sign_in_page(
            status=_form_status(exc), problem=exc.detail, email=email, headers=exc.headers
        )
    if isinstance(outcome, TokenPair):
        return _signed_in(outcome, ctx.settings)
    return pages.page(
        "second_factor.html",
        title="Your second factor",
        csrf=csrf,
        challenge=outcome["challenge"],
    )


@router.post("/sign-in/second-factor")
async def second_factor(
    request: Request,
    session: SignInSessionDep,
    redis: RedisDep,
    ctx: ContextDep,
    challenge: Annotated[str, Form(max_length=100)] = "",
    code: Annotated[str, Form(max_length=40)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    if not cookies.sign_in_csrf_holds(request, csrf):
        return _sign_in_page(status=400, problem="The form expired: sign in again.")
    code = code.strip().replace(" ", "")
    is_totp = code.isdigit() and len(code) == 6
    try:
        pair = await auth.login_second_factor(
            session=session,
            redis=redis,
            settings=ctx.settings,
            vault=ctx.vault,
            challenge=challenge,
            code=code if is_totp else None,
            recovery_code=None if is_totp else code,
            **where(request),
        )
    except ProblemError as exc:
        if "challenge" in exc.detail:
            return _sign_in_page(status=_form_status(exc), problem=exc.detail)
        return pages.page(
            "second_factor.html",
            status=_form_status(exc),
            title="Your second factor",
            csrf=csrf,
            challenge=challenge,
            problem=exc.detail,
        )
    return _signed_in(pair, ctx.settings)


@router.post("/sign-out")
async def sign_out(
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    visitor = await pages.visitor_of(request, session, ctx, ended)
    if visitor is None:
        return pages.to_sign_in()
    if not cookies.csrf_holds(ctx.settings.SECRET_KEY, visitor.session_id, csrf):
        return pages.page(
            "message.html",
            status=400,
            visitor=visitor,
            settings=ctx.settings,
            title="Still signed in",
            page="overview",
            text="The form expired: sign out again from the page's button.",
        )
    refresh = (
        visitor.renewed.refresh_token if visitor.renewed else request.cookies.get(cookies.REFRESH)
    )
    await auth.logout(
        session=session, ended=ended, user=visitor.user, token=refresh or "", where=where(request)
    )
    return pages.to_sign_in()


FACTS = (
    ("Description", "description"),
    ("Payee", "payee"),
    ("Memo", "memo"),
    ("Kind", "kind"),
    ("The institution's type", "institution_type"),
    ("Posted", "posted_at"),
    ("Made", "transacted_at"),
    ("Settles", "settlement_date"),
    ("Symbol", "symbol"),
    ("Asset type", "asset_type"),
    ("Quantity", "quantity"),
    ("Price", "price"),
    ("Fees", "fees"),
    ("Completes the pending one", "pending_external_id"),
)
FILTERS = ("q", "from", "to", "status", "kind")


@router.get("/transactions")
async def transactions_page(
    request: Request,
    session: SessionDep,
    reader: ReaderDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
) -> Response:
    visitor = await pages.visitor_of(request, session, ctx, ended)
    if visitor is None:
        return pages.to_sign_in()
    given = request.query_params
    chosen = {k: given.get(k) or None for k in (*FILTERS, "account", "cursor")}
    accounts = await console.account_names(session=session, user=visitor.user)
    problem, found = None, {"items": [], "next_cursor": None}
    try:
        query = TransactionQuery.model_validate(
            {k: chosen[k] for k in (*FILTERS, "cursor") if chosen[k]} | {"limit": 50}
        )
        account_id = uuid.UUID(chosen["account"]) if chosen["account"] else None
        if chosen["account"] and chosen["account"] not in accounts:
            raise ValueError("no such account")
        found = await console.transactions_page(
            reader=reader, user=visitor.user, query=query, account_id=account_id
        )
    except (ValidationError, ValueError):
        problem = "Those filters are not valid: check the dates and the account."
    older = None
    if found["next_cursor"]:
        kept = {k: v for k, v in chosen.items() if v and k != "cursor"}
        older = "/app/transactions?" + urlencode(kept | {"cursor": found["next_cursor"]})
    return pages.page(
        "transactions.html",
        status=400 if problem else 200,
        visitor=visitor,
        settings=ctx.settings,
        title="Transactions",
        page="transactions",
        problem=problem,
        items=found["items"],
        accounts=accounts,
        chosen=chosen,
        filtered=any(chosen[k] for k in (*FILTERS, "account")),
        statuses=[s.value for s in TransactionStatus],
        kinds=[k.value for k in TransactionKind],
        older=older,
    )


@router.get("/transactions/{transaction_id}")
async def transaction_page(
    transaction_id: str,
    request: Request,
    session: SessionDep,
    reader: ReaderDep,
    ctx: ContextDep,
    ended: EndedSessionsDep,
) -> Response:
    visitor = await pages.visitor_of(request, session, ctx, ended)
    if visitor is None:
        return pages.to_sign_in()
    try:
        found = await console.transaction(
            reader=reader, user=visitor.user, transaction_id=uuid.UUID(transaction_id)
        )
    except (ValueError, NotFound):
        return pages.page(
            "message.html",
            status=404,
            visitor=visitor,
            settings=ctx.settings,
            title="No such transaction",
            page="transactions",
            text="It is not one of yours, or it no longer exists.",
        )
    accounts = await console.account_names(session=session, user=visitor.user)
    return pages.page(
        "transaction.html",
        visitor=visitor,
        settings=ctx.settings,
        title=found["description"],
        page="transactions",
        t=found,
        account=accounts.get(found["account_id"]),
        facts=FACTS,
    )


@router.get("/register")
async def register_form(request: Request, ctx: ContextDep) -> Response:
    return _register_page(ctx, invitation=request.query_params.get("invitation", "")[:100])


def _register_page(ctx, *, status=200, problem=None, email="", name="", invitation="") -> Response:
    token = cookies.sign_in_csrf()
    response = pages.page(
        "register.html",
        status=status,
        title="Create your account",
        csrf=token,
        problem=problem,
        email=email,
        name=name,
        invitation=invitation,
        registration=ctx.settings.registration,
    )
    cookies.set_sign_in_csrf(response, token)
    return response


@router.post("/register")
async def register(
    request: Request,
    session: SessionDep,
    passwords: PasswordsDep,
    ctx: ContextDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    invitation: Annotated[str, Form(max_length=100)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """As POST /api/v1/auth/register (REGISTRATION open, or with an invitation), then signed in
    at once; the address is confirmed from the mail it is sent."""
    kept = {"email": email, "name": name, "invitation": invitation}
    if not cookies.sign_in_csrf_holds(request, csrf):
        return _register_page(ctx, status=400, problem="The form expired: try again.", **kept)
    try:
        body = RegisterRequest(
            email=email.strip(), password=password, name=name, invitation=invitation or None
        )
        user = await auth.register(
            session=session,
            settings=ctx.settings,
            passwords=passwords,
            email=body.email,
            password=body.password,
            name=body.name,
            invitation=body.invitation,
            where=where(request),
        )
    except ValidationError:
        return _register_page(
            ctx, problem="Give an e-mail address and a password of 12 characters or more.", **kept
        )
    except ProblemError as exc:
        await discard(session)  # the refused account is not kept (nor retried at the commit)
        return _register_page(ctx, problem=exc.detail, **kept)
    after_commit(session, lambda: verification.schedule(ctx=ctx, user_id=user.id))
    pair = await auth.open_session(
        session=session, settings=ctx.settings, user=user, where=where(request)
    )
    return _signed_in(pair, ctx.settings)


@router.get("/forgot-password")
async def forgot_form() -> Response:
    return _forgot_page()


def _forgot_page(*, status=200, notice=None, problem=None) -> Response:
    token = cookies.sign_in_csrf()
    response = pages.page(
        "forgot.html",
        status=status,
        title="Forgot your password?",
        csrf=token,
        notice=notice,
        problem=problem,
    )
    cookies.set_sign_in_csrf(response, token)
    return response


@router.post("/forgot-password")
async def forgot(
    request: Request,
    ctx: ContextDep,
    email: Annotated[str, Form(max_length=320)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """As POST /api/v1/auth/password-reset: the same answer, as fast, whether the address has
    an account or not; the link it mails opens /reset-password."""
    if not cookies.sign_in_csrf_holds(request, csrf):
        return _forgot_page(status=400, problem="The form expired: try again.")
    try:
        body = ResetAsk(email=email.strip())
    except ValidationError:
        return _forgot_page(problem="That is not an e-mail address.")
    try:
        resets.ask(ctx=ctx, email=body.email, where=where(request))
    except ProblemError as exc:  # this instance sends no mail: who can help instead
        return _forgot_page(problem=exc.detail)
    return _forgot_page(notice=resets.ASKED)
