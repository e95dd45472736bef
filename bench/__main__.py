"""``python -m bench <name>``: run one benchmark and print its table."""

import argparse
import sys

from infra import commands
from infra.errors import InfraError


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    # What `inv bench` passes (infra/commands.py), then knobs of single benchmarks.
    commands.add_arguments(parser, "bench")
    parser.add_argument("--tiny-tests", type=int, default=200)
    parser.add_argument("--connections", type=int, default=2000, help="refresh: due connections")
    parser.add_argument(
        "--transactions", type=int, default=100_000, help="transactions: how many to ingest"
    )
    parser.add_argument("--events", type=int, default=2000, help="webhooks: events to deliver")
    args = parser.parse_args()
    try:
        if args.name == "transactions":
            from bench import transactions

            transactions.run(repeat=args.repeat, count=args.transactions)
            transactions.reads(duration=args.duration, connections=args.clients)
            return 0
        if args.name == "export":
            from bench import export

            export.run(repeat=args.repeat)
            return 0
        if args.name == "import":
            from bench import imports

            imports.run(repeat=args.repeat)
            return 0
        if args.name == "faults":
            from bench import faults

            faults.run(clients=args.clients, phase_seconds=args.duration)
        elif args.name == "api":
            from bench import api

            api.run(duration=args.duration, connections=args.clients)
        elif args.name == "webhooks":
            from bench import webhooks

            webhooks.run(repeat=args.repeat, events=args.events)
        elif args.name == "refresh":
            from bench import refresh

            refresh.run(repeat=args.repeat, connections=args.connections)
        elif args.name == "migrations":
            from bench import migrations

            migrations.run(repeat=args.repeat)
        else:
            from bench import tests

            tests.run(
                repeat=args.repeat, suite_repeat=args.suite_repeat, tiny_tests=args.tiny_tests
            )
    except InfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
