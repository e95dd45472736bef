"""E-mail addresses as people who host Dashtam themselves have them.

pydantic's ``EmailStr`` (email-validator) refuses special-use domains (``.test``, ``.local``,
``home.arpa``, ``localhost``...) as "cannot be used with email", although the OpenAPI document
promises any ``format: email``; self-hosters use exactly those at home. Every syntactically
valid address is accepted here; verification by mail proves the ones that matter.

email-validator is told so the way its documentation says: its list of special-use names is
emptied (in this process, for this purpose: Dashtam validates no other kind of address).
"""

from typing import Annotated

import email_validator
from pydantic import AfterValidator, WithJsonSchema

email_validator.SPECIAL_USE_DOMAIN_NAMES.clear()


def valid(value: str) -> str:
    """The address, normalised (its domain lowercased); ValueError says what is wrong."""
    try:
        checked = email_validator.validate_email(
            value, check_deliverability=False, globally_deliverable=False
        )
    except email_validator.EmailNotValidError as exc:
        raise ValueError(f"not a valid e-mail address: {exc}") from None
    return checked.normalized


Email = Annotated[str, AfterValidator(valid), WithJsonSchema({"type": "string", "format": "email"})]
