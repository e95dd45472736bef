"""People who use Dashtam."""

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, LargeBinary, Text
from sqlalchemy.dialects.postgresql import CITEXT
from sqlmodel import Field, SQLModel

from dashtam_models.base import created_at, updated_at, uuid_pk


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: uuid.UUID | None = uuid_pk()
    # citext: "Ann@Example.com" and "ann@example.com" are one account.
    email: str = Field(sa_type=CITEXT, sa_column_kwargs={"unique": True, "nullable": False})
    name: str = Field(
        default="", sa_type=Text, sa_column_kwargs={"nullable": False, "server_default": ""}
    )
    # Null until a password is set (argon2 hash; never the password itself).
    password_hash: str | None = Field(default=None, sa_type=Text)
    is_active: bool = Field(default=True, sa_column_kwargs={"server_default": "true"})
    # Administrators invite people (REGISTRATION=invite); `inv user-create --admin` makes one.
    is_admin: bool = Field(default=False, sa_column_kwargs={"server_default": "false"})
    # When a link mailed to the address was opened (auth/verification.py); null: not proven.
    email_verified_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # TOTP second factor (auth/totp.py): the secret sealed by the vault (users:<id>:totp); it
    # signs in only once enabled_at is set (a code confirmed it). The last time step a code was
    # accepted for: a code is good once.
    totp_secret_encrypted: bytes | None = Field(default=None, sa_type=LargeBinary)
    totp_key_id: str | None = Field(default=None, sa_type=Text)
    totp_enabled_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    totp_last_step: int | None = Field(default=None, sa_type=BigInteger)
    created_at: datetime | None = created_at()
    updated_at: datetime | None = updated_at()
