"""Every task's options, declared once: their help, their defaults, and the defaults a person may
change in the invoke configuration (invoke.yaml, or INVOKE_DASHTAM_* variables).

tasks.py gives each invoke task the options declared here (``inv <task> --help`` prints their
help) and turns what a person passed into the arguments of ``python -m infra`` (or ``python -m
bench``), whose parser is built from the same table (``parser``); the workflows take every option
as a keyword. Plain Python only: tasks.py imports this outside the hatch environment.
"""

import argparse
from dataclasses import dataclass, field
from typing import Any

# The defaults a person may change (``namespace.configure`` in tasks.py): invoke.yaml's
# ``dashtam:`` section or INVOKE_DASHTAM_<KEY> variables.
CONFIG = {"reload": True, "up_timeout": 90.0, "workers": "auto"}

TEST_SUITES = ("unit", "integration", "api", "e2e", "faults", "browser")


@dataclass(frozen=True)
class Option:
    help: str
    default: Any = False
    """False: a flag. True: on unless --no-<name>. Anything else (None, a number, a string):
    an option taking a value, of that default's type (a string for None)."""
    config: str | None = None
    """The CONFIG key that gives the default when the option is not passed (for a True flag:
    the configuration can only turn it off)."""
    kind: type | None = None
    """The value's type when the default (None) does not say it."""
    choices: tuple[str, ...] = ()
    positional: bool = False
    confirm_only: bool = False
    """Read by the task alone (a confirmation it asks for); not passed on."""


@dataclass(frozen=True)
class Command:
    options: dict[str, Option] = field(default_factory=dict)
    env: str = "default"
    """The hatch environment it runs in."""
    module: str = "infra"
    """``python -m <module> <command> ...`` (bench: ``python -m bench <name> ...``)."""


SERVICES = "postgres, valkey, mail, api, callback"
SUITE_HELP = {
    "unit": "Run the unit tests (no servers needed).",
    "integration": "Run the integration tests (real PostgreSQL and Valkey).",
    "api": "Run the HTTP API tests.",
    "e2e": "Run the end-to-end tests (real HTTPS API, callback and sandbox servers).",
    "faults": "Run the fault drill (a private project's servers restarted under load).",
    "browser": "Run the browser tests (Chromium through the connect flow and /docs).",
}
BENCHMARKS = (
    "tests",
    "migrations",
    "refresh",
    "api",
    "faults",
    "transactions",
    "webhooks",
    "export",
    "import",
)

COMMANDS: dict[str, Command] = {
    "setup": Command(),
    "certs": Command(
        {
            "force": Option("Make a new CA and server certificate even if certs/ holds them."),
            "trust": Option(
                "Trust the local CA: the system store (root, or sudo asks) and the NSS "
                "databases Chromium and Firefox read (needs certutil), as mkcert does."
            ),
            "untrust": Option("Remove what --trust added (this checkout's CA only)."),
        }
    ),
    "up": Command(
        {
            "reload": Option(
                "Restart the API when code changes (on unless --no-reload, --workers or the "
                "dashtam.reload config is false).",
                default=True,
                config="reload",
            ),
            "workers": Option(
                "Serve the API with this many worker processes (no reload): production-like.",
                default=0,
            ),
            "timeout": Option(
                "Seconds to wait for the servers to become healthy.",
                default=None,
                config="up_timeout",
                kind=float,
            ),
        }
    ),
    "down": Command(),
    "status": Command(),
    "logs": Command(
        {
            "service": Option(f"Only this service's log ({SERVICES}).", default=None),
            "follow": Option("Keep printing new lines."),
            "lines": Option("How many lines to show first.", default=50),
        }
    ),
    "clean": Command({"yes": Option("Do not ask for confirmation.", confirm_only=True)}),
    "test-setup": Command(env="test"),
    "test": Command(
        {
            "parallel": Option("Run the tests in parallel with pytest-xdist."),
            "workers": Option(
                "xdist workers with --parallel (a number or 'auto').",
                default=None,
                config="workers",
            ),
            **{suite: Option(SUITE_HELP[suite]) for suite in TEST_SUITES},
            "cov": Option("Measure coverage and print a combined report (HTML in htmlcov/)."),
            "contract_deep": Option(
                "Only the OpenAPI contract test, deeper: 100 cases per operation and "
                "100 linked sequences from a random seed it prints (minutes, not seconds)."
            ),
            "contract_seed": Option(
                "With --contract-deep: replay the run of this seed.", default=None, kind=int
            ),
            "pytest_args": Option(
                "More pytest arguments as one string, e.g. --pytest-args='-k health -x'.",
                default="",
            ),
        },
        env="test",
    ),
    "test-clean": Command(env="test"),
    "mail": Command(
        {
            "test": Option("The test environment's mail instead of development's."),
            "to": Option("Only mail to this address.", default=""),
            "show": Option("Print one message in full: its id from the list, or 'latest'.", ""),
            "clear": Option("Delete that environment's mail (the other's stays)."),
        }
    ),
    "runtime": Command(
        {
            "use": Option(
                "local or compose: what the tasks use in this checkout from now on "
                "(auto: back to the default, local); DASHTAM_RUNTIME still wins when set.",
                default=None,
            )
        }
    ),
    "compose-files": Command(
        {
            "production": Option(
                "PostgreSQL's and Valkey's users from env/.env.prod (the prod overlay)."
            )
        }
    ),
    "bench": Command(
        {
            "name": Option(
                "Which benchmark: tests (suite serial vs parallel, clone vs build, rollback vs "
                "truncate), migrations (upgrade from empty vs create_all, the template build) or "
                "refresh (2,000 due connections, one refresher process vs two) or api (wrk "
                "against the API beside bare FastAPI, 1 and 2 workers) or faults (the fault "
                "drill on a private project: restarts, institution failures and a stop under "
                "load) or transactions (100,000 transactions ingested, then the same window read "
                "again) or webhooks (2,000 deliveries to a local receiver, one dispatcher "
                "process vs two; commit to delivery) or export (CSV and OFX of 100,000 and "
                "1,000,000 transactions through the API: rows/s, the API process's peak memory) "
                "or import (CSV and OFX files of 10,000 and 100,000 transactions imported "
                "through the API: rows/s, peak memory, the same file again).",
                default=None,
                positional=True,
                choices=BENCHMARKS,
            ),
            "repeat": Option("Runs per micro-measurement; the median is reported.", 3),
            "suite_repeat": Option("Runs of the whole suite, serial and parallel each.", 1),
            "duration": Option(
                "api: seconds of load per endpoint (wrk -d); faults: seconds per phase.", 10
            ),
            "clients": Option("api: wrk connections; faults: clients (two loops each).", 32),
        },
        env="test",
        module="bench",
    ),
    "demo": Command(
        {
            "source": Option(
                "Which institution to connect: sandbox (OAuth2, approved in a browser-like "
                "flow), simplefin (the SimpleFIN Bridge look-alike, with a setup token) or "
                "ibkr (the IBKR Flex look-alike, with a Flex token and query id), "
                "enablebanking (the Enable Banking look-alike: a bank picked, a consent) or "
                "plaid (Plaid's look-alike, through Link).",
                default="sandbox",
                choices=("sandbox", "simplefin", "ibkr", "enablebanking", "plaid"),
            )
        }
    ),
    "rotate-token-key": Command(),
    "user-create": Command(
        {
            "email": Option("The account's e-mail address.", default=None, positional=True),
            "admin": Option("An administrator (invites people when REGISTRATION=invite)."),
            "name": Option("The person's name.", default=""),
        }
    ),
    "user-reset-password": Command(
        {"email": Option("The account's e-mail.", default=None, positional=True)}
    ),
    "migrate": Command(),
    "migration": Command(
        {
            "message": Option(
                "What the revision does, e.g. 'add accounts table' (names the file).",
                default=None,
                positional=True,
            ),
            "empty": Option(
                "Write a revision even without model changes, to fill in by hand (data migrations)."
            ),
        }
    ),
    "migrate-down": Command(
        {
            "revision": Option(
                "Where to go: a number of steps back (1 = the previous revision), a "
                "revision id, or base.",
                default=None,
                positional=True,
            )
        }
    ),
    "migrate-history": Command(),
    "migrate-current": Command(),
}


def resolved(name: str, values: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """What a person passed, with the configured defaults (``config``: the invoke config's
    ``dashtam`` section) for what they did not."""
    out = dict(values)
    for key, option in COMMANDS[name].options.items():
        if option.config is None:
            continue
        if option.default is True:
            out[key] = out.get(key, True) and config.get(option.config, True)
        elif out.get(key) is None:
            out[key] = config[option.config]
    return out


def argv(name: str, values: dict[str, Any]) -> list[str]:
    """The command line ``parser`` reads back into ``values`` (options left out are defaults)."""
    command = COMMANDS[name]
    args = [] if command.module != "infra" else [name]
    for key, option in command.options.items():
        value = values.get(key, option.default)
        flag = "--" + key.replace("_", "-")
        if option.confirm_only:
            continue
        if option.positional:
            args.append(str(value))
        elif option.default is False:
            args += [flag] if value else []
        elif option.default is True:
            args += [] if value else [f"--no-{key.replace('_', '-')}"]
        elif value is not None and value != "":
            # One argument, so that a value starting with "-" (pytest's) stays a value.
            args.append(f"{flag}={value}")
    return args


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """``name``'s options on ``parser``, with the defaults a run without invoke gets."""
    for key, option in COMMANDS[name].options.items():
        if option.confirm_only:
            continue
        flag = "--" + key.replace("_", "-")
        if option.positional:
            parser.add_argument(key, choices=option.choices or None, help=option.help)
        elif option.default is False:
            parser.add_argument(flag, action="store_true", help=option.help)
        elif option.default is True:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=True, help=option.help
            )
        else:
            default = CONFIG[option.config] if option.config else option.default
            kind = option.kind or (type(default) if default is not None else str)
            parser.add_argument(
                flag, type=kind, default=default, choices=option.choices or None, help=option.help
            )


def parser() -> argparse.ArgumentParser:
    """``python -m infra``'s parser: a sub-command per task that runs in infra."""
    out = argparse.ArgumentParser(prog="python -m infra")
    sub = out.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        if command.module == "infra":
            add_arguments(sub.add_parser(name), name)
    return out
