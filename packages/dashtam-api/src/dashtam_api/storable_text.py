"""Text that PostgreSQL can store: no NUL characters (text and JSONB refuse them)."""

from typing import Annotated

from pydantic import AfterValidator, Field


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def strip_nul(value: str | None) -> str | None:
    """For text we record rather than accept (user agents, institution errors)."""
    return value.replace("\x00", "") if value is not None else None


# The pattern tells the OpenAPI document (and clients generated from it) what the validator
# refuses; the validator says why.
CleanText = Annotated[
    str, AfterValidator(_no_nul), Field(json_schema_extra={"pattern": "^[^\\x00]*$"})
]
