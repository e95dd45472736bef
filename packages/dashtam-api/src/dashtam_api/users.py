"""`dashtam-users`: accounts from the command line, for an instance without mail or open
registration (`inv user-create`, `inv user-reset-password`).

    dashtam-users create EMAIL [--admin] [--name NAME]   a new account; its password printed once
    dashtam-users reset-password EMAIL                   a new password printed once; every
                                                         session of the account ends

A generated password is printed once (change it after signing in); both are in the security
audit (``by: cli``). Settings come from the env file like the API's.
"""

import argparse
import secrets
import sys

from sqlalchemy.exc import IntegrityError

from dashtam_api.audit import service as audit
from dashtam_api.auth import queries
from dashtam_api.auth.service import end_sessions, others
from dashtam_api.context import AppContext
from dashtam_api.emails import valid as valid_email
from dashtam_core.cli import CommandError, run
from dashtam_core.config import get_settings
from dashtam_models import SessionEnd, User

BY = {"by": "cli"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dashtam-users", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create an account; its password is printed once")
    create.add_argument("email")
    create.add_argument("--admin", action="store_true", help="an administrator (invites people)")
    create.add_argument("--name", default="", help="the person's name")
    reset = sub.add_parser("reset-password", help="a new password, printed once; sessions end")
    reset.add_argument("email")
    return parser


def _new_password() -> str:
    return secrets.token_urlsafe(18)  # 24 characters, 144 bits


async def _main(args: argparse.Namespace) -> int:
    try:
        email = valid_email(args.email)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    settings = get_settings()
    ctx = AppContext.open(settings)
    passwords = ctx.passwords
    password = _new_password()
    try:
        async with ctx.sessions() as session:
            if args.command == "create":
                user = User(
                    email=email,
                    name=args.name,
                    password_hash=await passwords.hash(password),
                    is_admin=args.admin,
                )
                session.add(user)
                try:
                    await session.flush()
                except IntegrityError:
                    raise CommandError(f"an account with the e-mail {email} exists") from None
                await audit.security(
                    session=session,
                    action="registered",
                    user_id=user.id,
                    details={**BY, "admin": args.admin},
                )
                await session.commit()
                role = "administrator" if args.admin else "account"
                print(f"created {role} {email}")
            else:
                user = await queries.user_by_email(session, email=email)
                if user is None:
                    raise CommandError(f"no account with the e-mail {email}")
                user.password_hash = await passwords.hash(password)
                await audit.security(
                    session=session, action="password_reset", user_id=user.id, details=BY
                )
                count = await end_sessions(
                    session=session,
                    ended=ctx.ended,
                    ids=await others(session=session, user=user, keep=None),
                    reason=SessionEnd.PASSWORD_CHANGED,
                )
                await session.commit()
                print(f"new password for {email}; {count} session(s) ended")
        print(f"password: {password}  (shown once: sign in and change it)")
        return 0
    finally:
        await ctx.close()


def main() -> None:
    args = _parser().parse_args(sys.argv[1:])
    run("dashtam-users", lambda: _main(args))


if __name__ == "__main__":
    main()
