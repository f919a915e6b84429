"""Find a bitcoind >= 29 for regtest, or build Bitcoin Core v31.1 from sources on PyPI.

Resolution order: `$BITCOIND`, `bitcoind` on PATH, `shared/bin/bitcoind` beside the exitd checkout (the one
these sources are in, or the one holding the virtual environment that runs them), the build cache, and
finally a build. The sdist of `lnurlcash-kernel==0.2.3` vendors the full Bitcoin Core v31.1 tree, so a
machine that reaches only the package registries can still make one (about 20 minutes on 2 cores), cached
outside the checkout.

A build is long and its tools are chatty: it says in one line what it does and how to skip it before it
starts, then shows one line of progress while apt's, pip's and the compiler's output go to a log file. A
failed build is one line naming that log (BuildFailed), never a traceback.
"""

from __future__ import annotations

import hashlib
import os
import re
import select
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

SDIST_REQUIREMENT = "lnurlcash-kernel==0.2.3"
SDIST_SHA256 = "1d0976bace6d9278467213a47c4a868d6bed17637d190307d6f75c39ead3bcb6"
RUNTIME_PACKAGES = ("libevent-2.1-7", "libevent-extra-2.1-7", "libevent-pthreads-2.1-7", "libsqlite3-0")
BUILD_PACKAGES = (
    "cmake",
    "ninja-build",
    "g++",
    "pkg-config",
    "libboost-dev",
    "libevent-dev",
    "libsqlite3-dev",
)
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DENABLE_WALLET=ON",
    "-DBUILD_DAEMON=ON",
    "-DBUILD_CLI=ON",
    "-DBUILD_TESTS=OFF",
    "-DBUILD_BENCH=OFF",
    "-DBUILD_GUI=OFF",
    "-DBUILD_TX=OFF",
    "-DBUILD_UTIL=OFF",
    "-DBUILD_WALLET_TOOL=OFF",
    "-DBUILD_BITCOIN_BIN=OFF",
    "-DBUILD_FUZZ_BINARY=OFF",
    "-DENABLE_IPC=OFF",
    "-DWITH_ZMQ=OFF",
    "-DWITH_CCACHE=OFF",
)
SKIP_HINT = "set BITCOIND=/path/to/bitcoind (v29 or later) to use one you have"
# Ninja's status line: "[done/total] what".
NINJA_PROGRESS = re.compile(r"^\[(\d+)/(\d+)\] ")

LineHandler = Callable[[str], None]


class BitcoindNotFound(Exception):
    pass


class BuildFailed(BitcoindNotFound):
    """A build (or an install of bitcoind's libraries) stopped; the message names the log to read."""


@dataclass(frozen=True)
class Recipe:
    """How to make bitcoind from a source archive on a package registry."""

    name: str
    minutes: int  # how long it takes on 2 cores, to say before it starts
    packages: tuple[str, ...]  # Debian packages the build needs
    fetch: tuple[str, ...]  # a command that puts the archive (*.tar.gz) in its working directory
    sha256: str  # of that archive
    source: str  # glob of the source tree inside the unpacked archive
    configure: tuple[str, ...]  # run in the source tree
    compile: tuple[str, ...]  # run in the source tree; ninja's "[n/m]" lines tell its progress
    binaries: tuple[str, ...] = ("bitcoind", "bitcoin-cli")  # found below <source>/build


BITCOIN_CORE = Recipe(
    name="Bitcoin Core v31.1",
    minutes=20,
    packages=BUILD_PACKAGES,
    fetch=(
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "-d",
        ".",
        SDIST_REQUIREMENT,
    ),
    sha256=SDIST_SHA256,
    source="*/vendor/bitcoin",
    configure=("cmake", "-B", "build", "-G", "Ninja", *CMAKE_FLAGS),
    compile=("cmake", "--build", "build", f"-j{os.cpu_count() or 2}", "--target", "bitcoind", "bitcoin-cli"),
)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(base) / "exitd" / "bitcoin-core-31.1"


def checkouts() -> list[Path]:
    """exitd checkouts this process runs from: the tree of these sources (an editable install, or a run in
    the tree), and the one holding the virtual environment that runs them (<checkout>/.venv)."""
    candidates = dict.fromkeys([Path(__file__).resolve().parents[2], Path(sys.prefix).parent])
    return [c for c in candidates if (c / "pyproject.toml").is_file() and (c / "exitd").is_dir()]


def find_bitcoind(build: bool = True) -> Path:
    """The bitcoind to run; builds one into the cache only when nothing else is found and `build` is set."""
    env = os.environ.get("BITCOIND")
    if env:
        path = Path(env).absolute()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BitcoindNotFound(f"$BITCOIND={env} is not an executable file")
        return path if runs(path) else _unrunnable(path)
    on_path = shutil.which("bitcoind")
    if on_path:
        return Path(on_path) if runs(Path(on_path)) else _unrunnable(Path(on_path))
    beside = [checkout.parent / "shared" / "bin" / "bitcoind" for checkout in checkouts()]
    for candidate in [*beside, cache_dir() / "bitcoind"]:
        if candidate.is_file() and os.access(candidate, os.X_OK) and runs(candidate):
            return candidate
    if not build:
        raise BitcoindNotFound(
            "no bitcoind found: set $BITCOIND, put bitcoind on PATH, or run python -m exitd.regtest.obtain"
        )
    return build_bitcoind()


def _version_check(binary: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), "-version"], capture_output=True, text=True, timeout=30)


def runs(binary: Path) -> bool:
    """Whether the binary starts; installs its shared libraries first when they are missing and we may."""
    result = _version_check(binary)
    if result.returncode == 0:
        return True
    if "error while loading shared libraries" in result.stderr:
        apt = _apt_commands(missing_packages(RUNTIME_PACKAGES), f"{binary} needs")
        log_path = cache_dir() / "apt.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        print(f"exitd: installing bitcoind's libraries with apt (output: {log_path})", file=sys.stderr)
        with log_path.open("wb") as log:
            for label, command in apt:
                _run_logged(label, command, None, log, log_path, lambda _line: None)
        return _version_check(binary).returncode == 0
    return False


def _unrunnable(binary: Path) -> Path:
    raise BitcoindNotFound(f"{binary} does not run: {_version_check(binary).stderr.strip()}")


def bitcoin_cli_beside(bitcoind: Path) -> Path | None:
    cli = bitcoind.with_name("bitcoin-cli")
    return cli if cli.is_file() else None


def missing_packages(packages: Sequence[str]) -> list[str]:
    """Those of the Debian `packages` not installed; none off Debian, where we cannot tell (or install)."""
    if shutil.which("dpkg") is None:
        return []
    return [p for p in packages if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]


def _apt_commands(packages: Sequence[str], who: str) -> list[tuple[str, list[str]]]:
    """(label, command) of the apt-get runs that install `packages`, which `who` ("building bitcoind
    needs"); BitcoindNotFound when we may not run them."""
    if not packages:
        return []
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BitcoindNotFound(
            f"{who} these Debian packages: {' '.join(packages)}; install them as root, or {SKIP_HINT}"
        )
    return [
        ("updating apt's package lists", ["apt-get", "update", "-q"]),
        ("installing packages", ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]),
    ]


def _run_logged(
    label: str, command: Sequence[str], cwd: Path | None, log: BinaryIO, log_path: Path, on_line: LineHandler
) -> None:
    """Run `command` with its output appended to `log`, each line also handed to `on_line`; BuildFailed if
    it cannot start or exits non-zero."""
    log.write(f"\n=== {label}: {' '.join(command)}\n".encode())
    log.flush()
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    try:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except OSError as e:
        raise BuildFailed(f"{label} could not start ({e.strerror}: {command[0]}); see {log_path}") from None
    assert proc.stdout is not None
    fd, pending = proc.stdout.fileno(), b""
    with proc:
        while True:
            ready, _, _ = select.select([fd], [], [], 1.0)
            chunk = os.read(fd, 65536) if ready else None
            if chunk == b"":
                break
            if chunk:
                log.write(chunk)
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    on_line(line.decode(errors="replace"))
            else:
                on_line("")  # a second without output: the elapsed time still moves
    log.flush()
    if proc.returncode != 0:
        raise BuildFailed(f"{label} failed (exit status {proc.returncode}); see {log_path}")


class BuildProgress:
    """One line telling how far a build is: step n/N, what it does, ninja's [done/total], time elapsed.

    On a terminal the line is rewritten in place; elsewhere (a CI log) each step gets a line of its own.
    """

    def __init__(self, out: TextIO, total: int) -> None:
        self.out = out
        self.total = total
        self.tty = out.isatty()
        self.started = time.monotonic()
        self.index = 0
        self.label = ""
        self.detail = ""
        self.drawn = 0.0

    def step(self, label: str) -> None:
        self.index += 1
        self.label, self.detail = label, ""
        self._draw()

    def line(self, text: str) -> None:
        """A line of the running step's output: ninja's status moves the counter; every call may redraw."""
        match = NINJA_PROGRESS.match(text)
        if match:
            self.detail = f"[{match.group(1)}/{match.group(2)}]"
        if self.tty and time.monotonic() - self.drawn >= 0.5:
            self._draw()

    def done(self, message: str | None = None) -> None:
        """The end of the line: `message` replaces it (a failure leaves it to the error that follows)."""
        if self.tty:
            self.out.write("\r\033[K")
            self.out.flush()
        if message:
            print(message, file=self.out, flush=True)

    def elapsed(self) -> str:
        minutes, seconds = divmod(int(time.monotonic() - self.started), 60)
        return f"{minutes}m{seconds:02d}s"

    def _draw(self) -> None:
        detail = f" {self.detail}" if self.detail else ""
        text = f"building bitcoind: step {self.index}/{self.total} {self.label}{detail}, {self.elapsed()}"
        if self.tty:
            self.out.write(f"\r\033[K{text}")
            self.out.flush()
        else:
            print(text, file=self.out, flush=True)
        self.drawn = time.monotonic()


def unpack(archive: Path, sha256: str, into: Path) -> None:
    """Extract `archive` into `into` once its digest is the expected one."""
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != sha256:
        raise BuildFailed(f"{archive.name} has sha256 {digest}, expected {sha256}")
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
        else:
            # Python before 3.11.4 (Debian 12's 3.11.2) has no extraction filters. The archive is the one
            # whose digest is pinned above, and its build scripts run next anyway: it is trusted as a whole.
            tar.extractall(into)


def build_bitcoind(
    recipe: Recipe = BITCOIN_CORE, target: Path | None = None, out: TextIO | None = None
) -> Path:
    """Build `recipe`'s binaries into `target` (the cache); returns the bitcoind there."""
    target = target or cache_dir()
    out = out or sys.stderr
    apt = _apt_commands(missing_packages(recipe.packages), "building bitcoind needs")  # refuses up front
    target.mkdir(parents=True, exist_ok=True)
    log_path = target / "build.log"
    print(
        f"exitd: no bitcoind found, so building {recipe.name} from source (about {recipe.minutes} minutes on"
        f" 2 cores, once) into {target}; to skip it, {SKIP_HINT}. Build output: {log_path}",
        file=out,
        flush=True,
    )
    progress = BuildProgress(out, total=len(apt) + 4)
    with log_path.open("wb") as log, tempfile.TemporaryDirectory(prefix="exitd-bitcoind-build-") as tmp:
        work = Path(tmp)

        def run(label: str, command: Sequence[str], cwd: Path | None) -> None:
            progress.step(label)
            _run_logged(label, command, cwd, log, log_path, progress.line)

        try:
            for label, command in apt:
                run(label, command, None)
            run("downloading the sources", recipe.fetch, work)
            progress.step("unpacking")
            archive = next(work.glob("*.tar.gz"), None)
            if archive is None:
                raise BuildFailed(f"the download left no source archive; see {log_path}")
            unpack(archive, recipe.sha256, work)
            source = next(work.glob(recipe.source), None)
            if source is None:
                raise BuildFailed(f"{archive.name} holds no {recipe.source}")
            run("configuring", recipe.configure, source)
            run("compiling", recipe.compile, source)
            for name in recipe.binaries:
                built = next((p for p in (source / "build").rglob(name) if p.is_file()), None)
                if built is None:
                    raise BuildFailed(f"the build made no {name}; see {log_path}")
                shutil.copy2(built, target / name)
        except BuildFailed as e:
            progress.done()
            raise BuildFailed(f"building {recipe.name} failed: {e}") from None
        except (OSError, tarfile.TarError) as e:
            progress.done()
            raise BuildFailed(f"building {recipe.name} failed: {e}; see {log_path}") from None
        except KeyboardInterrupt:
            progress.done()  # the interrupted notice gets a line of its own
            raise
    progress.done(f"building bitcoind: done in {progress.elapsed()}: {target / 'bitcoind'}")
    return target / "bitcoind"


def main() -> int:
    try:
        print(find_bitcoind())
    except BitcoindNotFound as e:
        print(f"exitd: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nexitd: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
