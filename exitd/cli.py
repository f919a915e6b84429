"""`exitd` command line: set up a datadir, run the daemon, print the token.

Exit codes: 0 success, 1 a runtime failure (node, store), 2 a usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from exitd import __version__
from exitd.ark.bip39 import InvalidMnemonic
from exitd.config import LOG_FORMATS, LOG_LEVELS, NETWORKS, Config, ConfigError, load_config
from exitd.datadir import DatadirError, init_datadir, read_token
from exitd.log import setup_logging
from exitd.store.db import StoreError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

# CLI flag dest -> dotted config key.
FLAG_KEYS = {
    "datadir": "datadir",
    "network": "network",
    "rpc_url": "bitcoind.rpc_url",
    "rpc_user": "bitcoind.rpc_user",
    "rpc_password": "bitcoind.rpc_password",
    "rpc_cookie": "bitcoind.rpc_cookie",
    "rest_host": "rest.host",
    "rest_port": "rest.port",
    "log_level": "log.level",
    "log_format": "log.format",
}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration (overrides the config file and EXITD_* variables)")
    group.add_argument("--config", type=Path, help="config file (default: <datadir>/exitd.toml)")
    group.add_argument("--datadir", help="data directory (default: ~/.exitd)")
    group.add_argument("--network", choices=NETWORKS, help="bitcoin network (default: regtest)")
    group.add_argument("--rpc-url", help="bitcoind RPC URL, e.g. http://127.0.0.1:18443")
    group.add_argument("--rpc-user", help="bitcoind RPC user")
    group.add_argument(
        "--rpc-password", help="bitcoind RPC password (prefer the config file: argv is visible)"
    )
    group.add_argument("--rpc-cookie", help="bitcoind RPC cookie file")
    group.add_argument("--rest-host", help="REST listen address (default: 127.0.0.1)")
    group.add_argument("--rest-port", type=int, help="REST listen port (default: 3000)")
    group.add_argument("--log-level", choices=LOG_LEVELS, help="log level (default: info)")
    group.add_argument("--log-format", choices=LOG_FORMATS, help="log format (default: text)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exitd",
        description="Unilateral exits of bark VTXOs against your own bitcoind, behind barkd's REST API.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    init = sub.add_parser(
        "init",
        help="create the datadir: wallet mnemonic, REST auth token, config and database",
        description="Create what the datadir lacks. An existing mnemonic is never overwritten.",
    )
    init.add_argument(
        "--mnemonic-file",
        type=Path,
        help="import this BIP39 mnemonic (e.g. your bark wallet's) instead of generating a new one",
    )
    _add_config_flags(init)

    run = sub.add_parser(
        "run",
        help="run the daemon in the foreground (stops cleanly on SIGINT/SIGTERM)",
        description="Serve the REST API and advance exits on every block until stopped.",
    )
    _add_config_flags(run)

    token = sub.add_parser(
        "token", help="print the REST bearer token", description="Print the REST bearer token."
    )
    _add_config_flags(token)

    sub.add_parser("version", help="print exitd's version", description="Print exitd's version.")
    return parser


def _config_from_args(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {key: getattr(args, dest, None) for dest, key in FLAG_KEYS.items()}
    return load_config(args.config, overrides)


def _cmd_init(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    mnemonic = args.mnemonic_file.read_text() if args.mnemonic_file else None
    result = init_datadir(config, mnemonic)
    print(f"datadir: {config.datadir}")
    if result.created_mnemonic:
        how = "imported" if mnemonic else "generated"
        print(f"wallet mnemonic {how}: {config.mnemonic_path} (mode 0600; back it up, it holds your coins)")
    else:
        print(f"wallet mnemonic kept: {config.mnemonic_path}")
    print(f"REST auth token: {config.token_path} (print it with 'exitd token')")
    if result.created_config:
        print(f"config written: {config.datadir / 'exitd.toml'}")
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from exitd.daemon import Daemon, FatalStartupError

    config = _config_from_args(args)
    setup_logging(config.log.level, config.log.format)
    if not config.mnemonic_path.exists() or not config.token_path.exists():
        raise DatadirError(
            f"{config.datadir} is not initialised; run 'exitd init --datadir {config.datadir}'"
        )
    try:
        asyncio.run(Daemon(config).run())
    except FatalStartupError as e:
        print(f"exitd: {e}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _cmd_token(args: argparse.Namespace) -> int:
    print(read_token(_config_from_args(args)))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "version":
        print(f"exitd {__version__}")
        return EXIT_OK
    commands = {"init": _cmd_init, "run": _cmd_run, "token": _cmd_token}
    try:
        return commands[args.command](args)
    except (ConfigError, DatadirError, InvalidMnemonic) as e:
        print(f"exitd: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (StoreError, OSError) as e:
        print(f"exitd: {e}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
