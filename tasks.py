"""Dashtam's one interface: `inv --list` is the manual.

Thin on purpose: each task parses its options and runs ``python -m infra <command>`` inside the
hatch environment (which installs every package and the servers' wheels). Defaults live in the
Collection config below and can be overridden in invoke.yaml or INVOKE_DASHTAM_* variables.
"""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from invoke import Collection, Exit, task

from infra import hatchenv

ROOT = Path(__file__).resolve().parent
SERVICES = "postgres, valkey, mail, api, callback"


def _hatch() -> list[str]:
    # The hatch beside this invoke first (same venv, even when it is not activated), then PATH.
    if importlib.util.find_spec("hatch") is not None:
        return [sys.executable, "-m", "hatch"]
    hatch = shutil.which("hatch")
    if hatch is None:
        raise Exit("error: hatch is not installed: pip install hatch", code=1)
    return [hatch]


def _infra(c, *args: str, env: str = "default", module: str = "infra") -> None:
    """Run `python -m infra ARGS` in a hatch environment; a failure exits with its code.

    A plain subprocess rather than c.run: output streams straight through (no relay threads
    that turn a closed pipe or Ctrl-C into a traceback) and `inv logs -f` reads the terminal.
    """
    # Straight into the environment's Python while nothing hatch installs it from has changed
    # (infra/hatchenv.py: ~0.45 s a task), else through hatch, which installs what changed.
    direct = hatchenv.direct(ROOT, env)
    if direct is not None:
        python, variables = direct
        command = [python, "-m", module, *args]
    else:
        command, variables = [*_hatch(), "run", f"{env}:python", "-m", module, *args], None
    try:
        code = subprocess.run(command, cwd=ROOT, env=variables, check=False).returncode
    except KeyboardInterrupt:
        code = 130
    if code == 0 and direct is None:
        hatchenv.remember(ROOT, env, _hatch())
    if code != 0:
        # infra has already printed the one-line reason.
        raise Exit(code=code)


@task
def setup(c):
    """Create what a fresh checkout lacks: certificates and env files with fresh secrets."""
    _infra(c, "setup")


@task(
    help={
        "force": "Make a new CA and server certificate even if certs/ holds them.",
        "trust": "Trust the local CA: the system store (root, or sudo asks) and the NSS "
        "databases Chromium and Firefox read (needs certutil), as mkcert does.",
        "untrust": "Remove what --trust added (this checkout's CA only).",
    }
)
def certs(c, force=False, trust=False, untrust=False):
    """Create the local CA and the servers' HTTPS certificate in certs/; trust it, or not."""
    flags = {"--force": force, "--trust": trust, "--untrust": untrust}
    _infra(c, "certs", *(flag for flag, on in flags.items() if on))


@task(
    help={
        "reload": "Restart the API when code changes (on unless --no-reload, --workers or the "
        "dashtam.reload config is false).",
        "workers": "Serve the API with this many worker processes (no reload): production-like.",
        "timeout": "Seconds to wait for the servers to become healthy.",
    }
)
def up(c, reload=True, workers=0, timeout=None):
    """Start the dev environment: PostgreSQL, Valkey, the API (:8000) and callback (:8182), HTTPS."""
    # A bool default makes invoke offer --no-reload; the config can only turn reloading off.
    reload = reload and c.dashtam.reload and not int(workers)
    timeout = c.dashtam.up_timeout if timeout is None else timeout
    args = ["up", "--timeout", str(timeout), *([] if reload else ["--no-reload"])]
    if int(workers):
        args += ["--workers", str(int(workers))]
    _infra(c, *args)


@task
def down(c):
    """Stop everything `inv up` started; the data stays."""
    _infra(c, "down")


@task
def status(c):
    """Show each service with its pid, port and health."""
    _infra(c, "status")


@task(
    help={
        "service": f"Only this service's log ({SERVICES}).",
        "follow": "Keep printing new lines.",
        "lines": "How many lines to show first.",
    }
)
def logs(c, service=None, follow=False, lines=50):
    """Show the servers' logs."""
    args = ["logs", "--lines", str(lines), *(["--follow"] if follow else [])]
    _infra(c, *args, *([service] if service else []))


@task(help={"yes": "Do not ask for confirmation."})
def clean(c, yes=False):
    """Stop everything and delete the servers' data (dev and test); env files and certs stay."""
    if not yes:
        if not sys.stdin.isatty():
            raise Exit(
                "error: inv clean deletes the development data; pass --yes to confirm", code=1
            )
        answer = input("Delete all development data? Type 'yes' to confirm: ")
        if answer.strip().lower() != "yes":
            raise Exit("clean: nothing deleted", code=1)
    _infra(c, "clean")


@task(name="test-setup")
def test_setup(c):
    """Start the shared servers if they are down and rebuild the test database (dev apps untouched)."""
    _infra(c, "test-setup", env="test")


@task(
    help={
        "parallel": "Run the tests in parallel with pytest-xdist.",
        "workers": "xdist workers with --parallel (a number or 'auto').",
        "unit": "Run the unit tests (no servers needed).",
        "integration": "Run the integration tests (real PostgreSQL and Valkey).",
        "api": "Run the HTTP API tests.",
        "e2e": "Run the end-to-end tests (real HTTPS API, callback and sandbox servers).",
        "faults": "Run the fault drill (a private project's servers restarted under load).",
        "browser": "Run the browser tests (Chromium through the connect flow and /docs).",
        "cov": "Measure coverage and print a combined report (HTML in htmlcov/).",
        "contract_deep": "Only the OpenAPI contract test, deeper: 100 cases per operation and "
        "100 linked sequences from a random seed it prints (minutes, not seconds).",
        "contract_seed": "With --contract-deep: replay the run of this seed.",
        "pytest_args": "More pytest arguments as one string, e.g. --pytest-args='-k health -x'.",
    },
)
def test(
    c,
    parallel=False,
    workers=None,
    unit=False,
    integration=False,
    api=False,
    e2e=False,
    faults=False,
    browser=False,
    cov=False,
    contract_deep=False,
    contract_seed=None,
    pytest_args="",
):
    """Run the test suite against the isolated test database (all suites unless some are picked)."""
    args = ["test"]
    if parallel:
        args += ["--parallel", "--workers", str(workers or c.dashtam.workers)]
    picks = (
        ("unit", unit),
        ("integration", integration),
        ("api", api),
        ("e2e", e2e),
        ("faults", faults),
        ("browser", browser),
    )
    for suite, picked in picks:
        if picked:
            args += ["--suite", suite]
    if cov:
        args.append("--cov")
    if contract_deep or contract_seed is not None:
        args.append("--contract-deep")
    if contract_seed is not None:
        args += ["--contract-seed", str(contract_seed)]
    if pytest_args:
        args.append(f"--pytest-args={pytest_args}")
    _infra(c, *args, env="test")


@task(
    help={
        "use": "local or compose: what the tasks use in this checkout from now on "
        "(auto: back to the default, local); DASHTAM_RUNTIME still wins when set."
    }
)
def runtime(c, use=None):
    """Say which runtime (local processes or Docker Compose) the tasks use here, and why."""
    _infra(c, "runtime", *([use] if use else []))


@task(
    name="compose-files",
    help={"production": "PostgreSQL's and Valkey's users from env/.env.prod (the prod overlay)."},
)
def compose_files(c, production=False):
    """Write .dashtam/compose/ from the env files, for running docker compose by hand."""
    _infra(c, "compose-files", *(["--production"] if production else []))


@task(name="test-clean")
def test_clean(c):
    """Drop the test databases, the tests' Valkey data and their mail (dev data untouched)."""
    _infra(c, "test-clean", env="test")


@task(
    help={
        "test": "The test environment's mail instead of development's.",
        "to": "Only mail to this address.",
        "show": "Print one message in full: its id from the list, or 'latest'.",
        "clear": "Delete that environment's mail (the other's stays).",
    }
)
def mail(c, test=False, to="", show="", clear=False):
    """List the mail Dashtam sent (the local mail catcher keeps it; nothing is delivered)."""
    args = ["mail", *(["--test"] if test else []), *(["--clear"] if clear else [])]
    args += [*(["--to", to] if to else []), *(["--show", show] if show else [])]
    _infra(c, *args)


@task
def migrate(c):
    """Upgrade the dev database to the newest migration (adopting one built before migrations)."""
    _infra(c, "migrate", "upgrade")


@task(
    positional=["message"],
    help={
        "message": "What the revision does, e.g. 'add accounts table' (names the file).",
        "empty": "Write a revision even without model changes, to fill in by hand (data migrations).",
    },
)
def migration(c, message, empty=False):
    """Autogenerate a revision from the models into dashtam_core/migrations/versions (dev db at head)."""
    _infra(c, "migrate", "revision", message, *(["--empty"] if empty else []))


@task(
    name="migrate-down",
    positional=["revision"],
    help={
        "revision": "Where to go: a number of steps back (1 = the previous revision), a "
        "revision id, or base."
    },
)
def migrate_down(c, revision):
    """Downgrade the dev database: `inv migrate-down 1` undoes the newest migration."""
    # invoke has no optional positionals, and "-1" would read as a flag: steps are plain numbers.
    _infra(
        c,
        "migrate",
        "downgrade",
        f"-{revision}" if revision.isdigit() and len(revision) <= 3 else revision,
    )


@task(name="migrate-history")
def migrate_history(c):
    """List every migration, oldest first, marking the dev database's current one."""
    _infra(c, "migrate", "history")


@task(name="migrate-current")
def migrate_current(c):
    """Show the dev database's revision and whether it is at head."""
    _infra(c, "migrate", "current")


@task(name="rotate-token-key")
def rotate_token_key(c):
    """Add a provider-token vault key, restart the API with it, re-encrypt every token under it."""
    _infra(c, "rotate-token-key")


@task(
    name="user-create",
    positional=["email"],
    help={
        "email": "The account's e-mail address.",
        "admin": "An administrator (invites people when REGISTRATION=invite).",
        "name": "The person's name.",
    },
)
def user_create(c, email, admin=False, name=""):
    """Create an account in the dev environment; its generated password is printed once."""
    _infra(c, "users", "create", email, *(["--admin"] if admin else []), "--name", name)


@task(name="user-reset-password", positional=["email"], help={"email": "The account's e-mail."})
def user_reset_password(c, email):
    """A new password for an account (printed once); every session of it ends. No mail needed."""
    _infra(c, "users", "reset-password", email)


@task
def demo(c):
    """Connect a sandbox institution end to end on the running dev environment, step by step."""
    _infra(c, "demo")


@task(
    positional=["name"],
    help={
        "name": "Which benchmark: tests (suite serial vs parallel, clone vs build, rollback vs "
        "truncate), migrations (upgrade from empty vs create_all, the template build) or "
        "refresh (2,000 due connections, one refresher process vs two) or api (wrk against "
        "the API beside bare FastAPI, 1 and 2 workers) or faults (the fault drill on a "
        "private project: restarts, institution failures and a stop under load) or "
        "transactions (100,000 transactions ingested, then the same window read again) or "
        "webhooks (2,000 deliveries to a local receiver, one dispatcher process vs two; "
        "commit to delivery) or export (CSV and OFX of 100,000 and 1,000,000 transactions "
        "through the API: rows/s, the API process's peak memory).",
        "repeat": "Runs per micro-measurement; the median is reported.",
        "suite_repeat": "Runs of the whole suite, serial and parallel each.",
        "duration": "api: seconds of load per endpoint (wrk -d); faults: seconds per phase.",
        "clients": "api: wrk connections; faults: clients (two loops each).",
    },
)
def bench(c, name, repeat=3, suite_repeat=1, duration=10, clients=32):
    """Run a benchmark under bench/ and print its ratios (noisy machines: compare ratios)."""
    _infra(
        c,
        name,
        "--repeat",
        str(repeat),
        "--suite-repeat",
        str(suite_repeat),
        "--duration",
        str(duration),
        "--clients",
        str(clients),
        env="test",
        module="bench",
    )


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
namespace.configure({"dashtam": {"reload": True, "up_timeout": 90, "workers": "auto"}})
