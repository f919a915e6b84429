"""Run the real `exitd` as a subprocess against a regtest node, and talk to it over loopback HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from exitd.regtest.node import RegtestNode, free_port


class DaemonProcess:
    def __init__(self, datadir: Path, node: RegtestNode, extra_config: str = "") -> None:
        self.datadir = datadir
        self.node = node
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = datadir / "daemon.log"
        self.config_path = datadir / "exitd.toml"
        datadir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            f'network = "regtest"\ndatadir = "{datadir}"\n\n'
            f'[bitcoind]\nrpc_url = "{node.rpc_url}"\nrpc_cookie = "{node.cookie_file}"\n\n'
            f'[rest]\nhost = "127.0.0.1"\nport = {self.port}\n\n[log]\nlevel = "debug"\n{extra_config}'
        )

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "exitd.cli", *args, "--config", str(self.config_path)]

    def init(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command("init", *extra), capture_output=True, text=True, check=True)

    @property
    def token(self) -> str:
        return (self.datadir / "auth_token").read_text().strip()

    def start(self, timeout: float = 30.0, env: dict[str, str] | None = None) -> None:
        """Run the daemon until it serves /ping; `env` adds variables (NOTIFY_SOCKET, EXITD_*...)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXITD_")} | (env or {})
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command("run"), stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"exitd exited with {self.process.returncode}:\n{self.log_path.read_text()}"
                )
            try:
                if self.request("GET", "/ping", auth=False)[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"exitd did not serve /ping in time:\n{self.log_path.read_text()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 20.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def request(
        self, method: str, path: str, body: Any = None, auth: bool | str = True, raw: bytes | None = None
    ) -> tuple[int, Any]:
        """(status, decoded JSON or text) of one HTTP request to the daemon."""
        headers = {"Content-Type": "application/json"}
        if auth is True:
            headers["Authorization"] = f"Bearer {self.token}"
        elif isinstance(auth, str):
            headers["Authorization"] = auth
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, payload, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            status, payload, ctype = e.code, e.read(), e.headers.get("Content-Type", "")
        if "json" in ctype:
            return status, json.loads(payload)
        return status, payload.decode()

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


@contextmanager
def running_daemon(
    datadir: Path,
    node: RegtestNode,
    extra_config: str = "",
    init_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Iterator[DaemonProcess]:
    """The real exitd, initialised (`exitd init *init_args`) and serving; stopped however the block ends."""
    proc = DaemonProcess(datadir, node, extra_config)
    proc.init(*init_args)
    proc.start(env=env)
    try:
        yield proc
    finally:
        proc.stop()
