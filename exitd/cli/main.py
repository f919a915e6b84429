"""`exitd` command line: set up a datadir, run the daemon, and drive a running daemon over its REST API.

The commands that drive a daemon (status, import, start, progress, claim, address, balance, cancel) are thin:
each makes the REST requests any barkd client would (client.py) and shows the answer, as a table for
people (console.py) or as the daemon's JSON with --json. Exit codes: see EXIT_CODES_HELP.
A command is a subparser in build_parser plus its entry in main's table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from exitd import __version__
from exitd.ark.bip39 import InvalidMnemonic
from exitd.cli import console
from exitd.cli.client import DaemonRefused, DaemonUnreachable, ExitdClient
from exitd.config import Config, ConfigError, Flag, load_config
from exitd.config import flags as config_flags
from exitd.daemon.datadir import DatadirError, held_datadir, init_datadir, read_token
from exitd.log import event, get_logger, setup_logging
from exitd.store.errors import StoreError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

EXIT_CODES_HELP = """exit codes:
  0    success
  1    a failure that may pass (the message says which); systemd restarts 'exitd run'
  2    a person must change something first, so systemd does not restart 'exitd run' (the unit's
       RestartPreventExitStatus=2): bad flags or config, a datadir not initialised or with unsafe
       permissions, another exitd running on the datadir, bitcoind on another chain or without wallet
       support, a wallet of another mnemonic in bitcoind, a token the daemon rejects
  3    the daemon is not reachable at its configured REST address
  130  interrupted (Ctrl-C); a running daemon keeps progressing exits"""


log = get_logger("cli")

# Exits `claim --all` does not mention: over, one way or the other.
FINISHED_STATES = frozenset({"claimed", "canceled"})
# How often `progress --wait` asks for the tip while it waits for a block.
BLOCK_POLL_SECONDS = 2.0


class UsageError(Exception):
    """The command line asks for something that cannot be done as written."""


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration (overrides the config file and EXITD_* variables)")
    group.add_argument("--config", type=Path, help="config file (default: <datadir>/exitd.toml)")
    for flag in config_flags():
        group.add_argument(flag.flag, dest=_dest(flag), help=flag.help)


def _dest(flag: Flag) -> str:
    return "config_" + flag.key.replace(".", "__")


# The config keys a command that drives a daemon takes as flags: where the daemon and its token are.
CLIENT_FLAG_HELP = {
    "datadir": "data directory holding auth_token (default: ~/.exitd)",
    "rest.host": "the daemon's REST address (default: rest.host, 127.0.0.1)",
    "rest.port": "the daemon's REST port (default: rest.port, 3000)",
}


def _add_client_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "the daemon to talk to (REST address from the config, token from the datadir)"
    )
    group.add_argument("--config", type=Path, help="config file (default: <datadir>/exitd.toml)")
    for flag in config_flags():
        if flag.key in CLIENT_FLAG_HELP:
            group.add_argument(flag.flag, dest=_dest(flag), help=CLIENT_FLAG_HELP[flag.key])
    parser.add_argument("--json", action="store_true", help="print the daemon's JSON answer, for scripts")


def _client_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str, description: str
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help, description=description)
    _add_client_flags(parser)
    return parser


def _fee_rate(text: str) -> int:
    try:
        rate = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of sat/kvB, got {text!r}") from None
    if rate <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of sat/kvB, got {rate}")
    return rate


def _amount(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number of sat, got {text!r}")
    return int(text)


def _add_selection(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("vtxos", nargs="*", metavar="VTXO", help=f"VTXO ids ('<txid>:<vout>') to {what}")
    parser.add_argument("--all", action="store_true", help=f"{what} every eligible VTXO")


def _add_client_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_vtxo_commands(sub)
    _add_exit_commands(sub)
    _add_wallet_commands(sub)


def _add_vtxo_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    imp = _client_command(
        sub,
        "import",
        "import bark VTXOs (hex, or files holding hex VTXOs, one per line)",
        "Import hex-encoded bark VTXOs (v1 or v2). Each argument is a hex VTXO or a file of them.",
    )
    imp.add_argument("sources", nargs="+", metavar="FILE|HEX")
    imp.add_argument(
        "--protect",
        action="store_true",
        help="let the guard exit them near expiry although no source (barkd) vouches they are still yours",
    )
    imp.add_argument(
        "--anchor-block",
        dest="anchor_blocks",
        action="append",
        type=block_hash_or_height,
        default=[],
        metavar="HASH|HEIGHT",
        help="a block holding the tx of a spent chain anchor, for a node without a tx index (repeatable)",
    )
    _client_command(
        sub,
        "vtxos",
        "list the VTXOs: state, where each came from, what barkd last said of it",
        "List every VTXO exitd holds. SOURCE is import or barkd; SEEN is barkd's last word on it.",
    )
    gone = _client_command(
        sub,
        "gone",
        "tell exitd a VTXO is no longer yours: nothing exits it from then on",
        "Mark a VTXO gone (spent, refreshed or forfeited in your wallet); the guard and starts leave it.",
    )
    gone.add_argument("vtxo", metavar="VTXO", help="VTXO id ('<txid>:<vout>')")


def _add_exit_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = _client_command(
        sub,
        "status",
        "show every exit: VTXO, amount, state, level, next action, error",
        "Show every exit of the running daemon. LEVEL is confirmed exit txs / exit depth.",
    )
    status.add_argument(
        "--live", action="store_true", help="only the exits still running (not claimed or canceled)"
    )
    start = _client_command(
        sub, "start", "start exits (--all, or the given VTXOs)", "Start the unilateral exit of VTXOs."
    )
    _add_selection(start, "exit")
    start.add_argument(
        "--force",
        action="store_true",
        help="start even exits not worth it (net below dust), too late, or the wallet cannot pay for yet",
    )
    progress = _client_command(
        sub,
        "progress",
        "run a progress cycle now and show where each exit is",
        "Run one progress cycle now (the daemon also runs one every block) and show the result.",
    )
    progress.add_argument(
        "--wait",
        action="store_true",
        help="keep going, a cycle per block, until all confirm, showing each exit as blocks come",
    )
    progress.add_argument(
        "--fee-rate", type=_fee_rate, metavar="SAT_PER_KVB", help="fee rate for new packages"
    )
    claim = _client_command(
        sub, "claim", "claim claimable exits to an address", "Spend claimable exit outputs to your address."
    )
    _add_selection(claim, "claim")
    claim.add_argument("--to", required=True, metavar="ADDRESS", help="destination bitcoin address")
    claim.add_argument("--fee-rate", type=_fee_rate, metavar="SAT_PER_KVB", help="fee rate of the claim tx")
    cancel = _client_command(
        sub,
        "cancel",
        "cancel an exit whose last tx is not yet broadcast",
        "Cancel an exit; possible until its final transaction is broadcast.",
    )
    cancel.add_argument("vtxo", metavar="VTXO", help="VTXO id ('<txid>:<vout>')")


def _add_wallet_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _client_command(
        sub,
        "address",
        "print a new address of the on-chain wallet (fund it: it pays the CPFP fees)",
        "Print the next unused receive address of exitd's on-chain wallet.",
    )
    _client_command(sub, "balance", "show the on-chain wallet's balance", "Show the on-chain wallet balance.")
    send = _client_command(
        sub,
        "send",
        "send coins of the on-chain (fee) wallet to an address",
        "Send AMOUNT sat from exitd's on-chain wallet (it pays the CPFP fees) to ADDRESS.",
    )
    send.add_argument("address", metavar="ADDRESS")
    send.add_argument("amount", type=_amount, metavar="AMOUNT_SAT")
    drain = _client_command(
        sub,
        "drain",
        "send every confirmed coin of the on-chain wallet to an address",
        "Empty exitd's on-chain wallet to ADDRESS, less the fee (coins reserved by running exits stay).",
    )
    drain.add_argument("address", metavar="ADDRESS")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exitd",
        description="Unilateral exits of bark VTXOs against your own bitcoind, behind barkd's REST API.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    init.add_argument(
        "--no-wallet",
        action="store_true",
        help="make no mnemonic: the daemon runs walletless until POST /api/v1/wallet/create makes one",
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

    demo = sub.add_parser(
        "demo",
        help="watch exitd exit VTXOs of every shape on a private regtest chain (about a minute)",
        description="Start a private regtest bitcoind and exitd in a temporary directory, exit forged VTXOs "
        "(a board, four leaves of a round tree, an arkoor chain) all the way to claimed, show a summary, "
        "and remove everything again. bitcoind is found at $BITCOIND, on PATH, or built once.",
    )
    demo.add_argument("--keep", action="store_true", help="keep the demo's directory and print where it is")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON, for scripts")
    _add_client_commands(sub)
    return parser


def _config_from_args(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {flag.key: getattr(args, _dest(flag), None) for flag in config_flags()}
    return load_config(args.config, overrides)


def _cmd_init(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    if args.no_wallet and args.mnemonic_file:
        raise UsageError("--no-wallet and --mnemonic-file contradict each other")
    mnemonic = None
    if args.mnemonic_file:
        try:
            mnemonic = args.mnemonic_file.read_text()
        except OSError as e:
            raise UsageError(f"cannot read --mnemonic-file {args.mnemonic_file}: {e.strerror}") from None
    result = init_datadir(config, mnemonic, wallet=not args.no_wallet)
    print(f"datadir: {config.datadir}")
    if result.created_mnemonic:
        how = "imported" if mnemonic else "generated"
        print(f"wallet mnemonic {how}: {config.mnemonic_path} (mode 0600; back it up, it holds your coins)")
    elif config.mnemonic_path.exists():
        print(f"wallet mnemonic kept: {config.mnemonic_path}")
    else:
        print("no wallet yet: create it with POST /api/v1/wallet/create once the daemon runs")
    print(f"REST auth token: {config.token_path} (print it with 'exitd token')")
    if result.created_config:
        print(f"config written: {config.datadir / 'exitd.toml'}")
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    setup_logging(config.log.level, config.log.format, config.log.file)
    with contextlib.ExitStack() as held:
        try:
            # Before the daemon's modules load: a second daemon on this datadir leaves at once.
            held.enter_context(held_datadir(config))
        except DatadirError as e:
            event(log, logging.CRITICAL, "fatal", error=str(e))
            return _fatal(config, e)
        except OSError as e:
            # A disk that is full or read-only may come back: systemd's restart is the right answer.
            event(log, logging.CRITICAL, "fatal", error=str(e))
            if config.log.file:
                print(f"exitd: {e}", file=sys.stderr)
            return EXIT_FAILURE
        from exitd.daemon.lifecycle import Daemon, FatalStartupError

        try:
            asyncio.run(Daemon(config).run())
        except (FatalStartupError, DatadirError) as e:
            return _fatal(config, e)
    return EXIT_OK


def _fatal(config: Config, error: Exception) -> int:
    """The status of what a restart cannot fix; logged as `fatal` already, and with a log file, printed
    too for whoever started exitd."""
    if config.log.file:
        print(f"exitd: {error}", file=sys.stderr)
    return EXIT_CONFIG


def _cmd_demo(args: argparse.Namespace) -> int:
    from exitd.cli.client import ClientError
    from exitd.cli.demo import DemoFailed, Terminated, run_demo
    from exitd.regtest.node import RegtestError
    from exitd.regtest.obtain import BitcoindNotFound

    try:
        run_demo(args.keep, args.json)
    except (DemoFailed, ClientError, RegtestError, BitcoindNotFound) as e:
        print(f"exitd demo: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except Terminated:
        print("exitd demo: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    return EXIT_OK


def _cmd_token(args: argparse.Namespace) -> int:
    print(read_token(_config_from_args(args)))
    return EXIT_OK


# Commands that drive a running daemon: (its JSON answer, the same for a person).
Answer = tuple[Any, str]


def _selection(args: argparse.Namespace) -> list[str] | None:
    """The VTXOs named, or None for --all; exactly one of the two."""
    if args.all == bool(args.vtxos):
        raise UsageError(f"'exitd {args.command}' takes --all or VTXO ids, exactly one of the two")
    return None if args.all else list(args.vtxos)


def block_hash_or_height(text: str) -> str | int:
    """A height is a number; anything else goes to the daemon as a block hash, which checks it."""
    return int(text) if text.isdigit() else text


def read_vtxo_sources(sources: list[str]) -> list[str]:
    """Hex VTXOs from the command line: each source is a file of whitespace-separated hex VTXOs, or one."""
    encoded: list[str] = []
    for source in sources:
        if os.path.isfile(source):
            found = Path(source).read_text().split()
            if not found:
                raise UsageError(f"{source} holds no VTXO")
            encoded += found
        elif source and all(c in string.hexdigits for c in source):
            encoded.append(source)
        else:
            raise UsageError(f"{source[:40]!r} is neither a file nor a hex-encoded VTXO")
    return encoded


def _status(client: ExitdClient, args: argparse.Namespace) -> Answer:
    statuses = client.exit_statuses("live" if args.live else "all")
    amounts = {v["id"]: int(v["amount_sat"]) for v in client.vtxos()}
    funding = _funding_lines(client) if statuses else []
    source = console.source_text(client.source())
    node = _node_lines(client)
    return statuses, "\n\n".join([console.status_table(statuses, amounts), *funding, source, node])


def _node_lines(client: ExitdClient) -> str:
    """The node as exitd needs it, under the table: one line, and one per problem."""
    try:
        return console.node_text(client.node_status())
    except DaemonRefused as e:
        return f"bitcoind: unknown ({e})"


def _vtxos(client: ExitdClient, _args: argparse.Namespace) -> Answer:
    vtxos = client.vtxos()
    return vtxos, "\n\n".join([console.source_text(client.source()), console.vtxo_table(vtxos)])


def _gone(client: ExitdClient, args: argparse.Namespace) -> Answer:
    answer = client.mark_gone(args.vtxo)
    return answer, f"{answer['id']} is marked gone: nothing exits it"


def _funding_lines(client: ExitdClient) -> list[str]:
    """The funding plan, under the status table while anything is left to fund; a daemon that cannot
    estimate (no wallet yet, node down) costs the table nothing."""
    try:
        funding = client.fee_estimate()["funding"]
    except DaemonRefused as e:
        return [f"funding: unknown ({e})"]
    return [console.funding_text(funding)] if funding["blocks_needed"] else []


def _import(client: ExitdClient, args: argparse.Namespace) -> Answer:
    imported = client.import_vtxos(read_vtxo_sources(args.sources), args.protect, args.anchor_blocks)
    return imported, console.vtxo_table(imported)


def _start(client: ExitdClient, args: argparse.Namespace) -> Answer:
    answer = client.start_exits(_selection(args), args.force)
    return answer, console.start_text(answer)


def _progress(client: ExitdClient, args: argparse.Namespace) -> Answer:
    if not args.wait:
        answer = client.progress(False, args.fee_rate)
        return answer, console.progress_text(answer)
    out = sys.stderr if args.json else sys.stdout
    print("waiting for every exit to confirm; Ctrl-C stops waiting, not the exits", file=sys.stderr)
    view = console.ExitsView(out)
    while True:
        answer = client.progress(False, args.fee_rate)
        height = client.tip()
        view.show(height, client.exit_statuses("live"))
        if answer["done"]:
            return answer, console.progress_conclusion(answer)
        _wait_for_block(client, height)


def _wait_for_block(client: ExitdClient, height: int) -> None:
    """Until the daemon's node is past `height`: short requests, so the view never sits on one for hours."""
    while client.tip() <= height:
        time.sleep(BLOCK_POLL_SECONDS)


def _claim(client: ExitdClient, args: argparse.Namespace) -> Answer:
    """Claim, then tell what the claim tx spends (exits, amounts), its fee and txid, and, for --all, the
    exits not claimable yet and why."""
    selection = _selection(args)
    before = client.exit_statuses(transactions=False)
    answer = client.claim(selection, args.to, args.fee_rate)
    outcome = {**answer, "destination": args.to, "net_sat": answer["amount_sat"] - answer["fee_sat"]}
    claimed = set(answer["vtxos"])
    outcome["not_claimed"] = [
        {"vtxo_id": s["vtxo_id"], "reason": console.why_not_claimable(s["state"])}
        for s in before
        if selection is None and s["vtxo_id"] not in claimed and s["state"]["type"] not in FINISHED_STATES
    ]
    return outcome, console.claim_text(outcome)


def _address(client: ExitdClient, _args: argparse.Namespace) -> Answer:
    answer = client.next_address()
    return answer, answer["address"]


def _balance(client: ExitdClient, _args: argparse.Namespace) -> Answer:
    answer = client.balance()
    return answer, console.balance_text(answer)


def _cancel(client: ExitdClient, args: argparse.Namespace) -> Answer:
    """Cancel, warning of the exit's packages already out: cancelling calls none of them back."""
    status = client.exit_status(args.vtxo)
    answer = client.cancel(args.vtxo)
    transactions = status["state"].get("transactions") or []
    out = [
        {"txid": tx["txid"], "child_txid": tx["status"].get("child_txid")}
        for tx in transactions
        if tx["status"]["type"] in console.IN_FLIGHT_TX_STATUSES
    ]
    outcome = {"message": answer["message"], "vtxo_id": args.vtxo, "packages_out": out}
    return outcome, console.cancel_text(outcome)


def _sent(client: ExitdClient, destination: str, amount: int | None, send: Callable[[], str]) -> Answer:
    """Run `send`, then read what it broadcast from the wallet: the fee is the wallet's coins it spent less
    every output; `amount` None (a drain) is its one output."""
    from bitcoin.core import CTransaction, b2lx  # here: every other command starts without it

    coins = {c["outpoint"]: int(c["amount_sat"]) for c in client.utxos()}
    txid = send()
    raw = next(t["tx"] for t in client.transactions() if t["txid"] == txid)
    tx = CTransaction.deserialize(bytes.fromhex(raw))
    spent = sum(coins[f"{b2lx(txin.prevout.hash)}:{txin.prevout.n}"] for txin in tx.vin)
    outputs = sum(txout.nValue for txout in tx.vout)
    outcome = {
        "txid": txid,
        "destination": destination,
        "amount_sat": outputs if amount is None else amount,
        "fee_sat": spent - outputs,
    }
    return outcome, console.sent_text(outcome)


def _send(client: ExitdClient, args: argparse.Namespace) -> Answer:
    return _sent(client, args.address, args.amount, lambda: client.send(args.address, args.amount))


def _drain(client: ExitdClient, args: argparse.Namespace) -> Answer:
    return _sent(client, args.address, None, lambda: client.drain(args.address))


CLIENT_COMMANDS: dict[str, Callable[[ExitdClient, argparse.Namespace], Answer]] = {
    "status": _status,
    "import": _import,
    "vtxos": _vtxos,
    "gone": _gone,
    "start": _start,
    "progress": _progress,
    "claim": _claim,
    "address": _address,
    "balance": _balance,
    "cancel": _cancel,
    "send": _send,
    "drain": _drain,
}


def _drive_daemon(args: argparse.Namespace) -> int:
    """Run a client command: the daemon's answer as JSON (--json) or for a person; errors in one line."""
    client = ExitdClient.from_config(_config_from_args(args))
    try:
        answer, text = CLIENT_COMMANDS[args.command](client, args)
    except DaemonUnreachable as e:
        print(f"exitd: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except DaemonRefused as e:
        message = " ".join(str(e).split())
        if e.status == 401:
            print(
                f"exitd: the daemon rejected the token in the datadir ({message}); check --datadir",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        print(f"exitd: {message} (HTTP {e.status})", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps(answer, indent=2) if args.json else text)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "version":
        print(f"exitd {__version__}")
        return EXIT_OK
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "init": _cmd_init,
        "run": _cmd_run,
        "token": _cmd_token,
        "demo": _cmd_demo,
        **dict.fromkeys(CLIENT_COMMANDS, _drive_daemon),
    }
    try:
        return commands[args.command](args)
    except (ConfigError, DatadirError, InvalidMnemonic, UsageError) as e:
        print(f"exitd: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except (StoreError, OSError) as e:
        print(f"exitd: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("exitd: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
