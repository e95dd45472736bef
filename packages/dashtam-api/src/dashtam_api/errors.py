"""Errors the API raises on purpose; problems.py renders each as application/problem+json."""

from dashtam_api.upstream import TIMEOUT


class ProblemError(Exception):
    status = 500
    title: str | None = None

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers
        self.extra = extra


class BadRequest(ProblemError):
    status = 400


# A valid token whose user was deleted or deactivated since.
ACCOUNT_GONE = "The account behind this token no longer exists."


class Unauthorized(ProblemError):
    status = 401

    def __init__(self, detail: str = "Authentication required.", *, error: str = "invalid_token"):
        super().__init__(
            detail, headers={"WWW-Authenticate": f'Bearer realm="dashtam", error="{error}"'}
        )


class Forbidden(ProblemError):
    status = 403


class NotFound(ProblemError):
    status = 404


class Conflict(ProblemError):
    status = 409


class TooManyRequests(ProblemError):
    status = 429

    def __init__(self, detail: str, *, retry_after: int):
        super().__init__(detail, headers={"Retry-After": str(retry_after)}, retry_after=retry_after)


class UpstreamError(ProblemError):
    """The institution failed or refused; ``institution_error`` says how (its OAuth error code,
    or one of upstream.py's names). No answer in time is a 504, anything else a 502."""

    status = 502
    title = "Institution Error"

    def __init__(self, detail: str, **extra):
        super().__init__(detail, **extra)
        if extra.get("institution_error") == TIMEOUT:
            self.status, self.title = 504, "Institution Timeout"


class Unprocessable(ProblemError):
    """A request that is well-formed but names something this API will not accept; ``field``
    is where (answered like a validation error, with ``errors``)."""

    status = 422

    def __init__(self, detail: str, *, field: str):
        super().__init__(
            "The request is not valid.",
            errors=[{"loc": ["body", field], "msg": detail, "type": "value_error"}],
        )
