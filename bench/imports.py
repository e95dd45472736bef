"""Imports as a person meets them: a CSV (with its mapping) and an OFX file of 10,000 and of
100,000 transactions uploaded to the API (one worker, over HTTPS) into a manual account. Rows per
second from the wall clock of the upload and import, the API process's peak memory (VmHWM)
beside what it held before (read a batch at a time, the peak must not grow with the file), and
the same file imported again (every row a duplicate, nothing written): its time against the
first.

Each first import runs in an API process of its own (a fresh peak), into a fresh account, on a
scratch clone of the test template; the files come from bench/files.py (deterministic).
"""

import json
import ssl
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from bench import api as api_bench
from bench.export import _peak_kib
from bench.files import CSV_MAPPING, big_csv, big_ofx
from bench.scratch import scratch_database, serve_api
from infra.layout import Layout
from infra.runtime import process

SIZES = (10_000, 100_000)
FORMATS = ("csv", "ofx")
WRITERS = {"csv": big_csv, "ofx": big_ofx}


def _import_once(layout, url, person, path: Path, fmt: str, mapping: str | None) -> dict:
    """A fresh API process, a fresh manual account, the file imported twice."""
    port = api_bench._free_port()
    base = f"https://localhost:{port}"
    overrides = {
        "DATABASE_URL": url.render_as_string(hide_password=False),
        "API_BASE_URL": base,
        "BACKGROUND_JOBS_ENABLED": "false",
    }
    pid_name = "bench-import"
    with serve_api(layout, pid_name=pid_name, port=port, overrides=overrides, workers=0):
        pid = process.running(layout.pid_file(pid_name)).pid
        tls = ssl.create_default_context(cafile=str(layout.ca_file))
        with httpx.Client(base_url=base, verify=tls, timeout=1800) as http:
            token = http.post("/api/v1/auth/login", json=person).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            account = http.post(
                "/api/v1/accounts",
                headers=auth,
                json={"name": f"Bench {uuid.uuid4().hex[:6]}", "account_type": "checking",
                      "currency": "USD"},
            ).json()  # fmt: skip
            form = {"format": fmt, **({"mapping": mapping} if mapping else {})}
            imports = f"/api/v1/accounts/{account['id']}/imports"
            before, _ = _peak_kib(pid)
            timings = []
            for _ in range(2):
                started = time.perf_counter()
                with path.open("rb") as file:
                    answer = http.post(
                        imports, headers=auth, files={"file": (path.name, file)}, data=form
                    )
                timings.append(time.perf_counter() - started)
                answer.raise_for_status()
                if len(timings) == 1:
                    first = answer.json()
                    after, _ = _peak_kib(pid)
            again = answer.json()
    return {
        "seconds": timings[0],
        "again_seconds": timings[1],
        "added": first["added"],
        "again_added": again["added"],
        "again_duplicates": again["duplicates"],
        "before": before,
        "after": after,
    }


def run(*, repeat: int) -> None:
    layout = Layout()
    results: dict[tuple[int, str], list[dict]] = {}
    mapping = json.dumps(CSV_MAPPING)
    with (
        tempfile.TemporaryDirectory() as folder,
        scratch_database(layout, "benchimport") as (
            _template,
            url,
        ),
    ):
        files = {}
        for size in SIZES:
            for fmt in FORMATS:
                files[(size, fmt)] = Path(folder) / f"bench-{size}.{fmt}"
                WRITERS[fmt](files[(size, fmt)], size, 35)
        port = api_bench._free_port()
        base = f"https://localhost:{port}"
        person = {"email": "bench-import@example.com", "password": uuid.uuid4().hex}
        overrides = {
            "DATABASE_URL": url.render_as_string(hide_password=False),
            "API_BASE_URL": base,
            "BACKGROUND_JOBS_ENABLED": "false",
        }
        with serve_api(layout, pid_name="bench-import", port=port, overrides=overrides):
            tls = ssl.create_default_context(cafile=str(layout.ca_file))
            with httpx.Client(base_url=base, verify=tls, timeout=60) as http:
                http.post("/api/v1/auth/register", json=person).raise_for_status()
        for _ in range(repeat):
            for size in SIZES:
                for fmt in FORMATS:
                    one = _import_once(
                        layout, url, person, files[(size, fmt)], fmt,
                        mapping if fmt == "csv" else None,
                    )  # fmt: skip
                    results.setdefault((size, fmt), []).append(one)
                    print(
                        f"  {fmt} {size:>8,} rows: {one['seconds']:6.2f}s ({one['added']:,} "
                        f"added), again {one['again_seconds']:5.2f}s ({one['again_added']} added, "
                        f"{one['again_duplicates']:,} duplicates), peak "
                        f"{one['before'] / 1024:.1f} -> {one['after'] / 1024:.1f} MiB",
                        flush=True,
                    )
    print()
    print(
        f"Imports through the API (one worker, HTTPS, upload included), median of {repeat} "
        "runs; the API process's peak memory (VmHWM) before the first import and after it:"
    )
    print(
        f"{'format':<6} {'rows':>9} {'seconds':>8} {'rows/s':>8} {'again s':>8} "
        f"{'again/first':>11} {'peak before':>12} {'peak after':>11} {'growth':>8}"
    )
    growth = {}
    for (size, fmt), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        seconds = statistics.median(r["seconds"] for r in runs)
        again = statistics.median(r["again_seconds"] for r in runs)
        before = statistics.median(r["before"] for r in runs) / 1024
        after = statistics.median(r["after"] for r in runs) / 1024
        growth[(size, fmt)] = after - before
        print(
            f"{fmt:<6} {size:>9,} {seconds:>8.2f} {size / seconds:>8,.0f} {again:>8.2f} "
            f"{again / seconds:>11.2f} {before:>10.1f} MB {after:>9.1f} MB "
            f"{after - before:>+7.1f}"
        )
    for fmt in FORMATS:
        small, big = growth[(SIZES[0], fmt)], growth[(SIZES[1], fmt)]
        print(
            f"{fmt}: the peak grew {small:+.1f} MiB for {SIZES[0]:,} rows and {big:+.1f} MiB "
            f"for {SIZES[1]:,} (10x the rows; constant memory: about the same)"
        )
