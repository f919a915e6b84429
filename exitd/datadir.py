"""The datadir: config, secrets (mnemonic, auth token) and the database, created by `exitd init`.

Secret files are created with O_EXCL and mode 0600 in one step, so they are never briefly world-readable
and never silently overwritten: losing a mnemonic to an accidental re-init would lose the user's coins.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from exitd.ark.bip39 import InvalidMnemonic
from exitd.config import CONFIG_FILENAME, Config
from exitd.token import decode_token, new_token
from exitd.wallet.seed import WalletSeed, normalized_mnemonic, write_private_file


class DatadirError(Exception):
    """The datadir is missing something or is not ours to change."""


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

    config.datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if mnemonic is not None:
        try:
            mnemonic = normalized_mnemonic(mnemonic)
        except InvalidMnemonic as e:
            raise DatadirError(f"the mnemonic to import is not valid: {e}") from None
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
    upgrade(config.database_path)
    if created_mnemonic and mnemonic is None:
        # A new mnemonic has no coins before now: the first import into bitcoind need not rescan the past.
        write_meta(config.database_path, WALLET_CREATED_AT, str(int(time.time())))
    return InitResult(created_mnemonic, created_token, created_config)


def render_config(config: Config) -> str:
    """A starting config for the datadir (0600: it may hold the RPC password); see config.example.toml."""
    lines = [
        "# exitd configuration; every key is documented in config.example.toml",
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
