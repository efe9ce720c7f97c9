"""A real Label Studio server for the round-trip test: the program lives in its own virtual
environment (``.venv-label-studio``, made by ``make label-studio`` from
``tests/annotation/label-studio-requirements.txt``), never in the project's, because it pins its own
versions of half the scientific stack."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def label_studio_venv() -> Path:
    """The Label Studio environment: ``$CRAYON_LABEL_STUDIO_VENV``, else ``.venv-label-studio`` in the checkout."""
    return Path(os.environ.get("CRAYON_LABEL_STUDIO_VENV", ROOT / ".venv-label-studio"))


def missing_label_studio() -> str | None:
    """Why no Label Studio can be run here, or ``None``."""
    if not (label_studio_venv() / "bin" / "label-studio").is_file():
        return f"no Label Studio in {label_studio_venv()}: `make test` installs it there (`make label-studio`); the install failed or was not run"
    return None


@dataclass
class Server:
    """A running Label Studio: its address, the folder it may serve local files from, and the admin's API token."""

    url: str
    document_root: Path
    token: str
    env: dict[str, str]

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Token {token or self.token}"}, timeout=60)

    def add_user(self, email: str) -> str:
        """Create the user ``email`` in the admin's organisation (``label-studio init``, as an
        administrator adds a colleague); their API token."""
        token = secrets.token_hex(20)
        command = [str(label_studio_venv() / "bin" / "label-studio"), "init", "--quiet", "--data-dir", self.env["LABEL_STUDIO_BASE_DATA_DIR"],
                   "--username", email, "--password", secrets.token_hex(8), "--user-token", token]
        subprocess.run(command, env=self.env, check=True, capture_output=True, timeout=300)
        return token


@contextmanager
def label_studio(document_root: Path) -> Iterator[Server]:
    """Label Studio on a free port of 127.0.0.1, serving local files under ``document_root``, with
    an admin user; stopped and its data removed afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as data:
        token = secrets.token_hex(20)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO", "DJANGO"))},
            "LABEL_STUDIO_BASE_DATA_DIR": data,
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "COLLECT_ANALYTICS": "false",
        }
        command = [
            str(label_studio_venv() / "bin" / "label-studio"), "start", "--no-browser", "--host", "127.0.0.1", "--port", str(port),
            "--data-dir", data, "--username", "admin@lab.org", "--password", secrets.token_hex(8), "--user-token", token, "--enable-legacy-api-token",
        ]
        log = Path(data) / "server.log"
        with open(log, "w") as output:
            process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 300
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"Label Studio stopped while starting:\n{log.read_text()[-4000:]}")
                try:
                    if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Label Studio did not start within 300 s:\n{log.read_text()[-4000:]}")
                time.sleep(1)
            yield Server(url, document_root, token, env)
        finally:
            os.killpg(process.pid, 15)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
            shutil.rmtree(data, ignore_errors=True)
