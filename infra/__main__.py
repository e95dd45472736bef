"""``python -m infra <command>``: the workflows behind tasks.py, with one-line failures."""

import argparse
import gc
import shlex
import signal
import sys

from infra import workflows
from infra.errors import InfraError
from infra.layout import Layout


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infra")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup")
    certs = sub.add_parser("certs")
    certs.add_argument("--force", action="store_true")
    certs.add_argument("--trust", action="store_true")
    certs.add_argument("--untrust", action="store_true")
    up = sub.add_parser("up")
    up.add_argument("--no-reload", action="store_true")
    up.add_argument("--workers", type=int, default=0)
    up.add_argument("--timeout", type=float, default=90.0)
    sub.add_parser("down")
    sub.add_parser("status")
    logs = sub.add_parser("logs")
    logs.add_argument("service", nargs="?")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("-n", "--lines", type=int, default=50)
    sub.add_parser("clean")
    sub.add_parser("test-setup")
    test = sub.add_parser("test")
    test.add_argument("--parallel", action="store_true")
    test.add_argument("--workers", default="auto")
    test.add_argument("--suite", action="append", default=[], choices=workflows.TEST_SUITES)
    test.add_argument("--cov", action="store_true")
    test.add_argument("--contract-deep", action="store_true")
    test.add_argument("--contract-seed", type=int)
    # One quoted string (pass it as --pytest-args="-k x -x"): hatch run would eat a bare "--".
    test.add_argument("--pytest-args", default="")
    sub.add_parser("test-clean")
    mail = sub.add_parser("mail")
    mail.add_argument("--test", action="store_true")
    mail.add_argument("--to", default="")
    mail.add_argument("--show", default="")
    mail.add_argument("--clear", action="store_true")
    compose_files = sub.add_parser("compose-files")
    compose_files.add_argument("--production", action="store_true")
    runtime = sub.add_parser("runtime")
    runtime.add_argument("choice", nargs="?")
    sub.add_parser("demo")
    sub.add_parser("rotate-token-key")
    users = sub.add_parser("users")
    users.add_argument("users_args", nargs=argparse.REMAINDER)
    migrate = sub.add_parser("migrate")
    migrate.add_argument("migration_command", choices=workflows.MIGRATION_COMMANDS)
    migrate.add_argument("migration_args", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    layout = Layout()
    try:
        match args.command:
            case "setup":
                workflows.setup(layout)
            case "certs":
                workflows.certs(layout, force=args.force, trust=args.trust, untrust=args.untrust)
            case "up":
                workflows.up(
                    layout,
                    reload=not args.no_reload and not args.workers,
                    workers=args.workers,
                    timeout=args.timeout,
                )
            case "down":
                workflows.down(layout)
            case "status":
                return workflows.status(layout)
            case "logs":
                workflows.logs(layout, service=args.service, follow=args.follow, lines=args.lines)
            case "clean":
                workflows.clean(layout)
            case "test-setup":
                workflows.test_setup(layout)
            case "test":
                return workflows.test(
                    layout,
                    parallel=args.parallel,
                    workers=args.workers,
                    suites=args.suite,
                    pytest_args=shlex.split(args.pytest_args),
                    cov=args.cov,
                    contract_deep=args.contract_deep,
                    contract_seed=args.contract_seed,
                )
            case "test-clean":
                workflows.test_clean(layout)
            case "mail":
                workflows.mail(layout, test=args.test, to=args.to, show=args.show, clear=args.clear)
            case "compose-files":
                from infra.runtime import compose

                for path in compose.prepare(layout, production=args.production):
                    print(f"  wrote {path.relative_to(layout.root)}")
            case "runtime":
                workflows.runtime(layout, args.choice)
            case "migrate":
                workflows.migrate(layout, args.migration_command, *args.migration_args)
            case "rotate-token-key":
                workflows.rotate_token_key(layout)
            case "users":
                workflows.users(layout, *args.users_args)
            case "demo":
                from infra import demo

                demo.run(layout)
    except InfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    if hasattr(signal, "SIGPIPE"):
        # `inv status | head -1` ends quietly, like any Unix tool, not with a traceback.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    code = main()
    # What the run made stays until the process ends: without this the interpreter's
    # collections at exit walk all of it (~0.15 s after `inv up` has printed its summary).
    gc.freeze()
    sys.exit(code)
