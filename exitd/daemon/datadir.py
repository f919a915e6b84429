"""The datadir: config, secrets (mnemonic, auth token) and the database, created by `exitd init`.

Secret files are created with O_EXCL and mode 0600 in one step, so they are never briefly world-readable
and never silently overwritten: losing a mnemonic to an accidental re-init would lose the user's coins.
exitd refuses a datadir other users may write to, or secrets they may read, rather than warn: the daemon
spends money on the strength of these files.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from exitd.api.token import decode_token, new_token
from exitd.ark.bip39 import InvalidMnemonic
from exitd.config import CONFIG_FILENAME, Config
from exitd.wallet.seed import WalletSeed, normalized_mnemonic, write_private_file

LOCK_FILENAME = "exitd.lock"
# Errors of a datadir exitd may not write to (a disk remounted read-only, a changed owner).
UNWRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


class DatadirError(Exception):
    """The datadir is missing something or is not ours to change."""


class UnsafePermissions(DatadirError):
    """Other users may write the datadir or read a secret; the message names the path and the chmod."""


class DatadirLocked(DatadirError):
    """Another exitd runs on this datadir: two engines on one wallet would spend the same coins twice."""


@contextlib.contextmanager
def datadir_lock(datadir: Path) -> Iterator[Path]:
    """Hold an exclusive flock on `<datadir>/exitd.lock` (holding our PID) for as long as the block runs.

    The kernel drops a flock when its holder dies, however it dies, so a crashed daemon never leaves a stale
    lock behind; the file itself stays (removing it would race with the next daemon taking it).
    """
    path = datadir / LOCK_FILENAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        hint = " (the datadir is not writable: a read-only disk?)" if e.errno in UNWRITABLE else ""
        raise OSError(e.errno, f"cannot open the lock file {path}: {e.strerror}{hint}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise DatadirLocked(
                f"another exitd (PID {holder}) is running on {datadir}: it holds the lock {path}; "
                "stop it first, one datadir serves one daemon"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)


def check_datadir(config: Config) -> None:
    """What `exitd run` needs of the datadir before it takes the lock: `exitd init` ran on it, and only
    its owner may change it or read its secrets."""
    if not config.token_path.exists():
        raise DatadirError(
            f"{config.datadir} is not initialised; run 'exitd init --datadir {config.datadir}'"
        )
    check_permissions(config)


def _mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None


def _whom(bits: int) -> str:
    """'group', 'others' or 'group and others': who the group/other bits of a mode let in."""
    return " and ".join(who for who, mask in (("group", 0o070), ("others", 0o007)) if bits & mask)


def check_permissions(config: Config) -> None:
    """UnsafePermissions when the datadir is group/world-writable (another user could swap the wallet, the
    token or the database) or a secret is open to group or others."""
    mode = _mode(config.datadir)
    if mode is not None and mode & 0o022:
        raise UnsafePermissions(
            f"{config.datadir} is writable by {_whom(mode & 0o022)} (mode {mode:04o}), so another user "
            f"could replace the wallet, token or database; fix it with: chmod go-w {config.datadir}"
        )
    for path, holds in ((config.mnemonic_path, "the wallet mnemonic"), (config.token_path, "the REST token")):
        mode = _mode(path)
        if mode is not None and mode & 0o077:
            raise UnsafePermissions(
                f"{path} holds {holds} and is open to {_whom(mode & 0o077)} (mode {mode:04o}); "
                f"fix it with: chmod 600 {path}"
            )


def private_database(path: Path) -> None:
    """The database file and its -wal/-shm made 0600 before SQLite opens them: SQLite creates a database
    0644 but gives its -wal and -shm the database file's own mode, so creating it 0600 covers all three."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.close(fd)
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        mode = _mode(name)
        if mode is not None and mode & 0o077:
            name.chmod(0o600)


@contextlib.contextmanager
def held_datadir(config: Config) -> Iterator[Path]:
    """What `exitd run` holds while it runs: an initialised datadir only its owner may change, locked
    against a second daemon, with the SQLite files made 0600 before anything opens them. Light on imports
    on purpose: a second daemon is turned away before it loads the rest of exitd."""
    check_datadir(config)
    with datadir_lock(config.datadir) as lock:
        if not config.database.url:
            private_database(config.database_path)
        yield lock


def read_token(config: Config) -> str:
    try:
        return config.token_path.read_text().strip()
    except FileNotFoundError:
        raise DatadirError(f"no auth token at {config.token_path}; run 'exitd init' first") from None


def read_auth_secret(config: Config) -> bytes:
    return decode_token(read_token(config))


@dataclass(frozen=True)
class InitResult:
    created_mnemonic: bool
    created_token: bool
    created_config: bool


def init_datadir(config: Config, mnemonic: str | None = None, wallet: bool = True) -> InitResult:
    """Create what is missing; refuse to replace an existing mnemonic with a different one.

    Without `wallet` no mnemonic is made: the daemon then runs walletless until a client creates the
    wallet over REST (POST /api/v1/wallet/create), as barkd clients expect to.
    """
    # SQLAlchemy and alembic load only here: the CLI's client commands read the token from this module.
    from exitd.store.db import upgrade
    from exitd.store.meta import WALLET_CREATED_AT, write_meta

    if mnemonic is not None:
        try:
            mnemonic = normalized_mnemonic(mnemonic)
        except InvalidMnemonic as e:
            raise DatadirError(f"the mnemonic to import is not valid: {e}") from None
    config.datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_permissions(config)
    seed = WalletSeed(config.mnemonic_path)
    created_mnemonic = False
    if seed.exists:
        if mnemonic is not None and seed.mnemonic != mnemonic:
            raise DatadirError(
                f"{config.mnemonic_path} already holds a different mnemonic; exitd never overwrites one "
                "(move it away yourself if you really mean to replace this wallet)"
            )
    elif wallet:
        seed.create(mnemonic)
        created_mnemonic = True
    created_token = not config.token_path.exists()
    if created_token:
        write_private_file(config.token_path, new_token() + "\n")
    config_file = config.datadir / CONFIG_FILENAME
    created_config = not config_file.exists()
    if created_config:
        write_private_file(config_file, render_config(config))
    if not config.database.url:
        private_database(config.database_path)
    upgrade(config.database_url)
    if created_mnemonic and mnemonic is None:
        # A new mnemonic has no coins before now: the first import into bitcoind need not rescan the past.
        write_meta(config.database_url, WALLET_CREATED_AT, str(int(time.time())))
    return InitResult(created_mnemonic, created_token, created_config)


def render_config(config: Config) -> str:
    """A starting config for the datadir (0600: it may hold the RPC password). It names where the keys are
    documented from an installed exitd too: the README's Configuration table, and `exitd run --help`."""
    lines = [
        '# exitd configuration. Every key: the README\'s "Configuration" section (config.example.toml in',
        "# exitd's source); the command-line flags: exitd run --help.",
        f"network = {json.dumps(config.network)}",
        "",
        "[bitcoind]",
        f"rpc_url = {json.dumps(config.rpc_url)}",
    ]
    if config.bitcoind.rpc_cookie:
        lines.append(f"rpc_cookie = {json.dumps(config.bitcoind.rpc_cookie)}")
    elif config.bitcoind.rpc_user:
        lines.append(f"rpc_user = {json.dumps(config.bitcoind.rpc_user)}")
        lines.append(f"rpc_password = {json.dumps(config.bitcoind.rpc_password)}")
    lines += ["", "[rest]", f"host = {json.dumps(config.rest.host)}", f"port = {config.rest.port}", ""]
    return "\n".join(lines)
