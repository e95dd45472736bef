"""The mail catcher as the local runtime's third server: infra/mailcatcher.py (its SMTP server
inside a small HTTPS app) under uvicorn, as whoever runs `inv` (it reads the project's
certificate key), keeping the mail in the servers' data."""

import os
import signal
import sys
from pathlib import Path

from infra.envfiles import Credentials
from infra.layout import ROOT
from infra.runtime import process
from infra.runtime.data import START_TIMEOUT, ServerData


def mail_url(creds: Credentials) -> str:
    """The mail catcher's HTTPS address: every runtime publishes it on the same port."""
    return f"https://localhost:{creds.mail_http_port}"


class MailCatcher:
    name = "mail"

    def __init__(self, data: ServerData):
        self.data = data
        self.layout = data.layout

    @property
    def dir(self) -> Path:
        return self.data.dir("mail")

    @property
    def pid_file(self) -> Path:
        return self.layout.pid_file(self.name)

    def tracked(self) -> process.Tracked | None:
        return process.running(self.pid_file)

    def port(self, creds: Credentials) -> int:
        return creds.mail_http_port

    def healthy(self, creds: Credentials) -> bool:
        from infra.apps import check_health

        code, _ = check_health(f"{mail_url(creds)}/health", self.layout.ca_file, timeout=2)
        return code == 200

    def start(self, creds: Credentials) -> bool:
        """Start the mail catcher unless running; True if this call started it."""
        if self.tracked():
            return False
        ports = (creds.mail_smtp_port, creds.mail_http_port)
        for port, setting in zip(ports, ("SMTP", "HTTP"), strict=True):
            process.require_free_port(
                port, f"the mail catcher's {setting} server", f"MAIL_CATCHER_{setting}_PORT"
            )
        self.data.own_dir(self.dir)
        cert, key = self.layout.certs_dir / "server.pem", self.layout.certs_dir / "server-key.pem"
        argv = [sys.executable, "-m", "uvicorn", "infra.mailcatcher:create_app", "--factory"]
        # infra/ is the checkout's, also for a project elsewhere (infra/private_project.py).
        argv += ["--app-dir", str(ROOT), "--host", "127.0.0.1", "--port", str(ports[1])]
        argv += ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
        argv += ["--no-server-header", "--no-access-log"]
        env = {
            **os.environ,
            "DASHTAM_MAIL_DIR": str(self.dir),
            "DASHTAM_MAIL_SMTP_PORT": str(ports[0]),
            "DASHTAM_MAIL_TLS_CERT": str(cert),
            "DASHTAM_MAIL_TLS_KEY": str(key),
        }
        process.start_server(
            argv,
            what="the mail catcher",
            ports=ports,
            ready=lambda: self.healthy(creds),
            pid_file=self.pid_file,
            log_file=self.layout.log_file(self.name),
            stop_signal=signal.SIGKILL,
            timeout=START_TIMEOUT,
            env=env,
            cwd=self.layout.root,
        )
        return True

    def stop(self) -> bool:
        return process.stop(self.pid_file, sig=signal.SIGTERM, timeout=15)
