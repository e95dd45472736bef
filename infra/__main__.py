"""``python -m infra <command>``: the workflows behind tasks.py, with one-line failures."""

import gc
import shlex
import signal
import sys

from infra import commands, workflows
from infra.errors import InfraError
from infra.layout import Layout


def main(argv: list[str] | None = None) -> int:
    args = commands.parser().parse_args(argv)
    layout = Layout()
    try:
        match args.command:
            case "setup":
                workflows.setup(layout)
            case "certs":
                workflows.certs(layout, force=args.force, trust=args.trust, untrust=args.untrust)
            case "up":
                workflows.up(layout, reload=args.reload, workers=args.workers, timeout=args.timeout)
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
                    suites=[suite for suite in commands.TEST_SUITES if getattr(args, suite)],
                    # One quoted string (--pytest-args="-k x -x"): hatch run would eat a "--".
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
                workflows.runtime(layout, args.use)
            case "migrate":
                workflows.migrate(layout, "upgrade")
            case "migration":
                workflows.migrate(
                    layout, "revision", args.message, *(["--empty"] if args.empty else [])
                )
            case "migrate-down":
                # "-1" would read as a flag in the task: steps are plain numbers there.
                revision = args.revision
                steps = revision.isdigit() and len(revision) <= 3
                workflows.migrate(layout, "downgrade", f"-{revision}" if steps else revision)
            case "migrate-history":
                workflows.migrate(layout, "history")
            case "migrate-current":
                workflows.migrate(layout, "current")
            case "rotate-token-key":
                workflows.rotate_token_key(layout)
            case "user-create":
                admin = ["--admin"] if args.admin else []
                workflows.users(layout, "create", args.email, *admin, "--name", args.name)
            case "user-reset-password":
                workflows.users(layout, "reset-password", args.email)
            case "demo":
                if args.source == "simplefin":
                    from infra import demo_simplefin

                    demo_simplefin.run(layout)
                elif args.source == "plaid":
                    from infra import demo_plaid

                    demo_plaid.run(layout)
                else:
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
