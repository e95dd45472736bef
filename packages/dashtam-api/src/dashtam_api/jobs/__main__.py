"""`dashtam-jobs`: the refresher, the sync loop and the webhook dispatcher outside the API.

    dashtam-jobs run                     all of them, until stopped (a jobs-only process)
    dashtam-jobs refresh [--until-idle]  one refresher round (or rounds until nothing is due)
    dashtam-jobs sync [--until-idle]     one sync round (or rounds until nothing is due)
    dashtam-jobs webhooks [--until-idle] send the webhook deliveries that are due

Settings come from the env file like the API's (DASHTAM_ENV_FILE / ENVIRONMENT). Each run
prints one line of counts, e.g. ``refresh: refreshed=200 busy=13 not_due=4``.
"""

import argparse
import asyncio
import logging
import signal
import sys

from dashtam_api.context import AppContext
from dashtam_api.jobs import loops
from dashtam_core.cli import CommandError, run
from dashtam_core.config import get_settings

ROUNDS = {
    "refresh": loops.refresh_round,
    "sync": loops.sync_round,
    "webhooks": loops.webhooks_round,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dashtam-jobs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "run", help="run the refresher, the sync loop and the webhook dispatcher until stopped"
    )
    for name in ROUNDS:
        job = sub.add_parser(name, help=f"one {name} round")
        job.add_argument(
            "--until-idle", action="store_true", help="repeat rounds until nothing is due"
        )
    return parser


async def _main(args: argparse.Namespace) -> int:
    # httpx logs every request at INFO: one line per refresh is noise, not a record.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = get_settings()
    if not settings.TOKEN_ENCRYPTION_KEYS:
        raise CommandError("TOKEN_ENCRYPTION_KEYS is empty: run `inv setup`")
    ctx = AppContext.open(settings)
    try:
        if args.command == "run":
            jobs = loops.Jobs(ctx)
            jobs.start()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            await jobs.stop()
            return 0
        round_ = ROUNDS[args.command]
        counts = await (loops.until_idle(round_, ctx) if args.until_idle else round_(ctx))
        summary = " ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "nothing due"
        print(f"{args.command}: {summary}", flush=True)
        return 1 if counts.get("crashed") or counts.get("unavailable") else 0
    finally:
        await ctx.close()


def main() -> None:
    args = _parser().parse_args(sys.argv[1:])
    run("dashtam-jobs", lambda: _main(args))


if __name__ == "__main__":
    main()
