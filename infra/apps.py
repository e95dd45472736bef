"""The API and callback servers: uvicorn over HTTPS, in the background, tracked by pid files."""

import os
import shutil
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from infra.errors import InfraError
from infra.files import read_env
from infra.layout import Layout
from infra.runtime import process

PACKAGES = ("dashtam-api", "dashtam-callback", "dashtam-core", "dashtam-models")


@dataclass(frozen=True)
class App:
    name: str
    factory: str
    host_key: str
    port_key: str
    default_port: int
    # Served by several worker processes, they write their Prometheus samples into one folder
    # (made empty at each start) so that any of them can answer a scrape for all; one process
    # keeps them in memory, which costs a request a third as much (dashtam_api/metrics.py).
    metrics: bool = False


APPS = (
    App("api", "dashtam_api.main:create_app", "API_HOST", "API_PORT", 8000, metrics=True),
    App("callback", "dashtam_callback.main:create_app", "CALLBACK_HOST", "CALLBACK_PORT", 8182),
)


# Settings a child process must take from its env file, not from whatever shell started `inv`.
ENV_FILE_DECIDES = ("ENVIRONMENT", "DATABASE_URL", "REDIS_URL")


DEFAULT_SHUTDOWN_GRACE = 10  # seconds; SHUTDOWN_GRACE_SECONDS in the env file


def child_env(env_file: Path, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a process that runs with env_file (plus explicit overrides)."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_FILE_DECIDES}
    env["DASHTAM_ENV_FILE"] = str(env_file.resolve())
    env.update(overrides or {})
    return env


def run_module(
    module: str, env_file: Path, layout: Layout, *args: str, name: str | None = None
) -> None:
    """``python -m module args`` with ``env_file``'s settings (an initialiser such as
    dashtam_core.init_db, or a CLI such as dashtam_api.users); its failure is one line naming it
    and its exit code."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=child_env(env_file),
        cwd=layout.root,
        check=False,
    )
    if result.returncode != 0:
        label = name or module.rsplit(".", 1)[-1].replace("_", "-")
        raise InfraError(f"{label} failed (exit {result.returncode})", code=result.returncode)


def app_port(app: App, env_file: Path, port: int | None = None) -> int:
    return port or int(read_env(env_file).get(app.port_key, app.default_port))


def uvicorn_argv(
    app: App,
    *,
    layout: Layout,
    env_file: Path,
    reload: bool,
    port: int | None = None,
    workers: int = 0,
    overrides: dict[str, str] | None = None,
) -> list[str]:
    values = {**read_env(env_file), **(overrides or {})}
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        app.factory,
        "--factory",
        "--host",
        values.get(app.host_key, "127.0.0.1"),
        "--port",
        str(app_port(app, env_file, port)),
        "--ssl-certfile",
        str(layout.root / values.get("SSL_CERT_FILE", "certs/server.pem")),
        "--ssl-keyfile",
        str(layout.root / values.get("SSL_KEY_FILE", "certs/server-key.pem")),
        "--no-server-header",
        # uvicorn believes 127.0.0.1's X-Forwarded-For by default; the app decides instead,
        # from TRUSTED_PROXIES (empty here: the peer is the client).
        "--no-proxy-headers",
    ]
    if values.get("ACCESS_LOG", "false").strip().lower() not in ("1", "true", "yes", "on"):
        # A line per request costs a logging call on the hot path; off unless asked for.
        argv.append("--no-access-log")
    # On SIGTERM/SIGINT (inv down) requests under way get this long to finish; new connections
    # are refused meanwhile. Then the rest are cancelled and the app shuts down.
    argv += ["--timeout-graceful-shutdown", str(shutdown_grace(values))]
    if workers:
        argv += ["--workers", str(workers)]
    elif reload:
        argv.append("--reload")
        for package in PACKAGES:
            argv += ["--reload-dir", str(layout.root / "packages" / package / "src")]
    return argv


def start_app(
    app: App,
    *,
    layout: Layout,
    env_file: Path,
    reload: bool,
    pid_name: str | None = None,
    port: int | None = None,
    env_overrides: dict[str, str] | None = None,
    workers: int = 0,
) -> bool:
    """Start one server unless running; True if this call started it."""
    pid_file = layout.pid_file(pid_name or app.name)
    if process.running(pid_file):
        return False
    port = app_port(app, env_file, port)
    process.require_free_port(port, f"the {app.name} server", f"{app.port_key} in {env_file.name}")
    if app.metrics and workers > 1:
        env_overrides = {
            **(env_overrides or {}),
            "PROMETHEUS_MULTIPROC_DIR": str(_empty_metrics_dir(layout, pid_name or app.name)),
        }
    process.spawn(
        uvicorn_argv(
            app,
            layout=layout,
            env_file=env_file,
            reload=reload,
            port=port,
            workers=workers,
            overrides=env_overrides,
        ),
        pid_file=pid_file,
        log_file=layout.log_file(pid_name or app.name),
        env=child_env(env_file, env_overrides),
        cwd=layout.root,
    )
    return True


def _empty_metrics_dir(layout: Layout, name: str) -> Path:
    """The samples of an earlier run (its pids are gone) would otherwise be added to this one's."""
    folder = layout.run_dir / f"metrics-{name}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, mode=0o700)
    return folder


def health_url(app: App, env_file: Path, port: int | None = None) -> str:
    return f"https://localhost:{app_port(app, env_file, port)}/health"


def check_health(url: str, ca_file: Path, timeout: float = 3.0) -> tuple[int | None, dict | str]:
    """(status code, body) of a health endpoint, verifying the project's CA; (None, reason) if down."""
    # Imported on first use, after `inv up` has started the apps (see infra/mail.py).
    import httpx

    try:
        context = ssl.create_default_context(cafile=str(ca_file))
        response = httpx.get(url, verify=context, timeout=timeout)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text[:200]


def wait_healthy(
    app: App,
    *,
    layout: Layout,
    env_file: Path,
    timeout: float,
    pid_name: str | None = None,
    port: int | None = None,
) -> dict:
    url = health_url(app, env_file, port)
    pid_file = layout.pid_file(pid_name or app.name)
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        code, body = check_health(url, layout.ca_file)
        if code == 200:
            return body  # type: ignore[return-value]
        last = body
        if process.running(pid_file) is None:
            port = app_port(app, env_file, port)
            if not process.port_bindable(port):
                # Taken between the check before its start and its bind (its imports take
                # seconds): a private project picks another (infra/ports.py).
                raise process.PortTaken(
                    f"the {app.name} server could not listen: port {port} was taken meanwhile",
                    (port,),
                )
            log = layout.log_file(pid_name or app.name)
            raise InfraError(
                f"the {app.name} server exited; last lines of {log}:\n{process.tail(log)}"
            )
        # A refused connection costs well under a millisecond: look often, so that `inv up`
        # returns as soon as the server answers.
        time.sleep(0.05)
    raise InfraError(f"the {app.name} server is not healthy at {url} after {timeout:.0f}s: {last}")


def shutdown_grace(values: dict[str, str]) -> int:
    return int(float(values.get("SHUTDOWN_GRACE_SECONDS") or DEFAULT_SHUTDOWN_GRACE))


def stop_app(app: App, *, layout: Layout, pid_name: str | None = None) -> bool:
    """SIGTERM, then the grace period the server was started with (and time to shut its app
    down) before it is killed."""
    pid_file = layout.pid_file(pid_name or app.name)
    argv = process.recorded_argv(pid_file)
    grace = (
        int(argv[argv.index("--timeout-graceful-shutdown") + 1])
        if "--timeout-graceful-shutdown" in argv
        else DEFAULT_SHUTDOWN_GRACE
    )
    return process.stop(pid_file, timeout=grace + 10)
