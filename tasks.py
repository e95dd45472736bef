"""Dashtam's one interface: `inv --list` is the manual.

Thin on purpose: each task is its one-line docstring, and runs ``python -m infra <task>`` inside
the hatch environment (which installs every package and the servers' wheels). Every option, its
help and its default are declared once, in infra/commands.py; the defaults a person may change
live in the Collection config below (from that table) and can be overridden in invoke.yaml or
INVOKE_DASHTAM_* variables.
"""

import importlib.util
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

from invoke import Collection, Exit, task

from infra import commands, hatchenv

ROOT = Path(__file__).resolve().parent


def _hatch() -> list[str]:
    # The hatch beside this invoke first (same venv, even when it is not activated), then PATH.
    if importlib.util.find_spec("hatch") is not None:
        return [sys.executable, "-m", "hatch"]
    hatch = shutil.which("hatch")
    if hatch is None:
        raise Exit("error: hatch is not installed: pip install hatch", code=1)
    return [hatch]


def command(body):
    """An invoke task from ``body``, named after it, with the options infra/commands.py declares
    for that task (as keyword arguments of ``body``)."""
    name = body.__name__.replace("_", "-")
    options = commands.COMMANDS[name].options
    parameters = [inspect.Parameter("c", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for key, option in options.items():
        default = inspect.Parameter.empty if option.positional else option.default
        parameters.append(
            inspect.Parameter(key, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default)
        )
    body.__signature__ = inspect.Signature(parameters)
    return task(
        body,
        name=name,
        help={key: option.help for key, option in options.items()},
        positional=[key for key, option in options.items() if option.positional],
    )


def _infra(c, name: str, options: dict) -> None:
    """Run task ``name`` (`python -m infra NAME OPTIONS`) in its hatch environment; a failure
    exits with its code.

    A plain subprocess rather than c.run: output streams straight through (no relay threads
    that turn a closed pipe or Ctrl-C into a traceback) and `inv logs -f` reads the terminal.
    """
    spec = commands.COMMANDS[name]
    args = commands.argv(name, commands.resolved(name, options, c.dashtam))
    # Straight into the environment's Python while nothing hatch installs it from has changed
    # (infra/hatchenv.py: ~0.45 s a task), else through hatch, which installs what changed.
    direct = hatchenv.direct(ROOT, spec.env)
    if direct is not None:
        python, variables = direct
        argv = [python, "-m", spec.module, *args]
    else:
        argv, variables = [*_hatch(), "run", f"{spec.env}:python", "-m", spec.module, *args], None
    try:
        code = subprocess.run(argv, cwd=ROOT, env=variables, check=False).returncode
    except KeyboardInterrupt:
        code = 130
    if code == 0 and direct is None:
        hatchenv.remember(ROOT, spec.env, _hatch())
    if code != 0:
        # infra has already printed the one-line reason.
        raise Exit(code=code)


@command
def setup(c, **options):
    """Create what a fresh checkout lacks: certificates and env files with fresh secrets."""
    _infra(c, "setup", options)


@command
def certs(c, **options):
    """Create the local CA and the servers' HTTPS certificate in certs/; trust it, or not."""
    _infra(c, "certs", options)


@command
def up(c, **options):
    """Start the dev environment: PostgreSQL, Valkey, the API (:8000) and callback (:8182), HTTPS."""
    _infra(c, "up", options)


@command
def down(c, **options):
    """Stop everything `inv up` started; the data stays."""
    _infra(c, "down", options)


@command
def status(c, **options):
    """Show each service with its pid, port and health."""
    _infra(c, "status", options)


@command
def logs(c, **options):
    """Show the servers' logs."""
    _infra(c, "logs", options)


@command
def clean(c, **options):
    """Stop everything and delete the servers' data (dev and test); env files and certs stay."""
    if not options["yes"]:
        if not sys.stdin.isatty():
            raise Exit(
                "error: inv clean deletes the development data; pass --yes to confirm", code=1
            )
        answer = input("Delete all development data? Type 'yes' to confirm: ")
        if answer.strip().lower() != "yes":
            raise Exit("clean: nothing deleted", code=1)
    _infra(c, "clean", options)


@command
def test_setup(c, **options):
    """Start the shared servers if they are down and rebuild the test database (dev apps untouched)."""
    _infra(c, "test-setup", options)


@command
def test(c, **options):
    """Run the test suite against the isolated test database (all suites unless some are picked)."""
    _infra(c, "test", options)


@command
def runtime(c, **options):
    """Say which runtime (local processes or Docker Compose) the tasks use here, and why."""
    _infra(c, "runtime", options)


@command
def compose_files(c, **options):
    """Write .dashtam/compose/ from the env files, for running docker compose by hand."""
    _infra(c, "compose-files", options)


@command
def test_clean(c, **options):
    """Drop the test databases, the tests' Valkey data and their mail (dev data untouched)."""
    _infra(c, "test-clean", options)


@command
def mail(c, **options):
    """List the mail Dashtam sent (the local mail catcher keeps it; nothing is delivered)."""
    _infra(c, "mail", options)


@command
def migrate(c, **options):
    """Upgrade the dev database to the newest migration (adopting one built before migrations)."""
    _infra(c, "migrate", options)


@command
def migration(c, **options):
    """Autogenerate a revision from the models into dashtam_core/migrations/versions (dev db at head)."""
    _infra(c, "migration", options)


@command
def migrate_down(c, **options):
    """Downgrade the dev database: `inv migrate-down 1` undoes the newest migration."""
    _infra(c, "migrate-down", options)


@command
def migrate_history(c, **options):
    """List every migration, oldest first, marking the dev database's current one."""
    _infra(c, "migrate-history", options)


@command
def migrate_current(c, **options):
    """Show the dev database's revision and whether it is at head."""
    _infra(c, "migrate-current", options)


@command
def rotate_token_key(c, **options):
    """Add a provider-token vault key, restart the API with it, re-encrypt every token under it."""
    _infra(c, "rotate-token-key", options)


@command
def user_create(c, **options):
    """Create an account in the dev environment; its generated password is printed once."""
    _infra(c, "user-create", options)


@command
def user_reset_password(c, **options):
    """A new password for an account (printed once); every session of it ends. No mail needed."""
    _infra(c, "user-reset-password", options)


@command
def demo(c, **options):
    """Connect an institution end to end on the running dev environment, step by step."""
    _infra(c, "demo", options)


@command
def bench(c, **options):
    """Run a benchmark under bench/ and print its ratios (noisy machines: compare ratios)."""
    _infra(c, "bench", options)


namespace = Collection(
    setup,
    certs,
    up,
    down,
    status,
    logs,
    clean,
    test_setup,
    test,
    test_clean,
    mail,
    runtime,
    compose_files,
    bench,
    demo,
    rotate_token_key,
    user_create,
    user_reset_password,
    migrate,
    migration,
    migrate_down,
    migrate_history,
    migrate_current,
)
namespace.configure({"dashtam": dict(commands.CONFIG)})
