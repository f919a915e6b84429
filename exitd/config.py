"""Configuration: a TOML file, overridden by `EXITD_*` environment variables, overridden by CLI flags.

Every key is declared once, as a field of its section's dataclass made by `setting`: its default, the parser
of its value and, for the few that have one, its command-line flag. The schema, the environment names and
the flags are read from those declarations. An unknown key or a bad value stops start-up with a message
naming the key and where the value came from, because a daemon that silently ignores a typo in
`rpc_cookie` fails much later and worse.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from exitd.wallet.address import InvalidAddress, decode_address

NETWORKS = ("mainnet", "testnet", "signet", "regtest")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
DEFAULT_DATADIR = Path("~/.exitd").expanduser()
DEFAULT_RPC_PORTS = {"mainnet": 8332, "testnet": 18332, "signet": 38332, "regtest": 18443}
CONFIG_FILENAME = "exitd.toml"


class ConfigError(Exception):
    """A configuration problem a person must fix before exitd can start."""


def _parse_str(value: Any) -> str:
    """A string; never one holding a NUL, which no path, URL or name may contain (the OS refuses them)."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    if "\0" in value:
        raise ValueError("a NUL character is not allowed")
    return value


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ValueError(f"expected an integer, got {value!r}")


def _parse_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number, got {value!r}") from None


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.lower() in ("1", "true", "yes", "on")
    raise ValueError(f"expected true or false, got {value!r}")


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _parse_str(value).lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return text

    return parse


def _bounded(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        number = _parse_int(value)
        if not low <= number <= high:
            raise ValueError(f"expected an integer in [{low}, {high}], got {number}")
        return number

    return parse


def _positive_float(value: Any) -> float:
    number = _parse_float(value)
    if number <= 0:
        raise ValueError(f"expected a positive number, got {number}")
    return number


def _ratio(value: Any) -> float:
    number = _parse_float(value)
    if not 0 < number <= 1:
        raise ValueError(f"expected a share in (0, 1], got {number}")
    return number


def _optional_url(example: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _parse_str(value)
        parsed = urlparse(text)
        if text and (parsed.scheme not in ("http", "https") or not parsed.hostname):
            raise ValueError(f'expected an http(s) URL like {example}, or "" for none')
        return text

    return parse


def _database_url(value: Any) -> str:
    text = _parse_str(value)
    if text and not text.startswith("postgresql+asyncpg://"):
        raise ValueError(
            "expected a PostgreSQL URL like postgresql+asyncpg://exitd:secret@127.0.0.1:5432/exitd, "
            'or "" for the SQLite file in the datadir'
        )
    return text


def _failover_timeout(value: Any) -> float:
    number = _parse_float(value)
    if not 3 <= number <= 600:
        raise ValueError(f"expected seconds in [3, 600], got {number:g}")
    return number


def _rpc_url(value: Any) -> str:
    text = _parse_str(value)
    if text == "":
        return text
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"expected an http(s) URL like http://127.0.0.1:18443, got {text!r}")
    if parsed.username or parsed.password:
        raise ValueError("put RPC credentials in bitcoind.rpc_user/rpc_password or rpc_cookie, not the URL")
    return text


def setting(
    default: Any, parse: Callable[[Any], Any], *, flag: str = "", help: str = "", secret: bool = False
) -> Any:
    """Declare one config key (a dataclass field): its default, the parser of a value from the file, the
    environment or a flag, and its command-line `flag` with `help`, if it has one. A `secret` is kept out of
    the dataclass's repr."""
    return field(default=default, repr=not secret, metadata={"parse": parse, "flag": flag, "help": help})


def section(cls: type) -> Any:
    """A [section] of the file: a field holding that section's dataclass."""
    return field(default_factory=cls, metadata={"section": True})


@dataclass(frozen=True)
class BitcoindConfig:
    rpc_url: str = setting(
        "", _rpc_url, flag="--rpc-url", help="bitcoind RPC URL, e.g. http://127.0.0.1:18443"
    )
    rpc_user: str = setting("", _parse_str, flag="--rpc-user", help="bitcoind RPC user")
    rpc_password: str = setting(
        "",
        _parse_str,
        flag="--rpc-password",
        help="bitcoind RPC password (prefer the config file: argv is visible)",
        secret=True,
    )
    rpc_cookie: str = setting("", _parse_str, flag="--rpc-cookie", help="bitcoind RPC cookie file")
    # bitcoind's watch-only wallet of exitd's coins; empty: exitd-<wallet fingerprint>.
    wallet_name: str = setting("", _parse_str)
    timeout: float = setting(30.0, _positive_float)


@dataclass(frozen=True)
class RestConfig:
    host: str = setting(
        "127.0.0.1", _parse_str, flag="--rest-host", help="REST listen address (default: 127.0.0.1)"
    )
    port: int = setting(3000, _bounded(0, 65535), flag="--rest-port", help="REST listen port (default: 3000)")
    max_body_bytes: int = setting(1 << 20, _bounded(1024, 1 << 30))
    # Seconds a client has to send a request body in full: one trickling it would hold its connection open.
    body_timeout: float = setting(30.0, _positive_float)
    # /metrics without the bearer token (for a Prometheus that cannot send one); off: it needs the token.
    metrics_open: bool = setting(False, _parse_bool)
    # Names of per-transaction exit sub-states: barkd 0.1.4's (the contract) or 0.6.0's.
    substate_vocabulary: str = setting("0.1.4", _choice("0.1.4", "0.6.0"))


@dataclass(frozen=True)
class LogConfig:
    level: str = setting(
        "info",
        _choice(*LOG_LEVELS),
        flag="--log-level",
        help="log level: debug, info (default), warning, error",
    )
    format: str = setting(
        "text", _choice(*LOG_FORMATS), flag="--log-format", help="log format: text (default) or json"
    )
    # Append to this file instead of stderr; reopened when rotated away (logrotate without copytruncate).
    file: str = setting(
        "", _parse_str, flag="--log-file", help="append logs to this file instead of stderr (logrotate-safe)"
    )


@dataclass(frozen=True)
class FeesConfig:
    """Fee rates in sat/kvB; the fallback is used when the node has no estimate (regtest, fresh node)."""

    fallback_rate: int = setting(2000, _bounded(100, 10_000_000))
    # The exit fee policy (exitd/engine/fee_policy.py documents the curve).
    max_rate: int = setting(500_000, _bounded(1000, 10_000_000))
    expiry_margin: int = setting(6, _bounded(0, 10_000))
    budget_ratio: float = setting(0.5, _ratio)
    # sat: an exit whose amount less its CPFP and claim fees is below this (or below dust) is refused
    # unless forced (exitd/engine/admission.py).
    min_net_recovered: int = setting(0, _bounded(0, 21_000_000 * 100_000_000))


@dataclass(frozen=True)
class WalletConfig:
    # bark's VTXO keys m/350'/0'/i are searched up to this index to find the owner of an imported VTXO.
    vtxo_key_search_limit: int = setting(1000, _bounded(1, 1_000_000))
    # Where bitcoind searches a restored wallet's coins from when it first imports the descriptors (when
    # none was given to POST /api/v1/wallet/create). None: from the genesis block, or for a mnemonic exitd
    # generated, from the moment it did.
    birthday_height: int | None = setting(None, _bounded(0, 10_000_000))


@dataclass(frozen=True)
class GuardConfig:
    """Guard mode (exitd/engine/guard.py documents it): exits start before expiry and when someone else
    began them, and are claimed to `claim_address` on their own."""

    enabled: bool = setting(True, _parse_bool)
    # An exit starts when expiry_height - tip <= exit depth + exit delta + slack_blocks.
    slack_blocks: int = setting(144, _bounded(0, 100_000))
    # VTXOs below this amount (sat) are not exited by the guard; a vtxo-at-risk alert tells of them.
    min_amount: int = setting(0, _bounded(0, 21_000_000 * 100_000_000))
    # "": claims only on request; "wallet": to a new address of exitd's wallet; or an address.
    claim_address: str = setting("", _parse_str)
    # sat/kvB; auto-claims pay the ~3-block estimate, at most this; no claim is replaced above it either.
    claim_max_rate: int = setting(20_000, _bounded(1000, 10_000_000))
    # Exit VTXOs that only came by import (no source vouches they are still the user's) too. Off: such a
    # VTXO is guarded only when imported with `protect`, since bark may have refreshed or spent it since.
    protect_imports: bool = setting(False, _parse_bool)


@dataclass(frozen=True)
class ClaimsConfig:
    """Claims in flight (exitd/engine/replacement.py): a claim waiting in the mempool below the market is
    replaced by RBF, paid from the claimed amount."""

    # Blocks a claim paying less than the claim rate of the moment (the cheaper of the 144-block estimate
    # and the next block's rate, at most guard.claim_max_rate) waits in the mempool before it is replaced.
    replace_after_blocks: int = setting(3, _bounded(1, 10_000))


@dataclass(frozen=True)
class AlertsConfig:
    """Alerts are log lines; with a webhook URL also an HTTP POST each (exitd/engine/alerts.py)."""

    webhook_url: str = setting("", _optional_url("http://127.0.0.1:9000/exitd"), secret=True)  # a token?
    # Seconds per POST attempt, and attempts per alert (exponential backoff from 1 s, at most 60 s apart).
    timeout: float = setting(5.0, _positive_float)
    max_attempts: int = setting(8, _bounded(1, 100))
    # Alerts waiting to be sent; more are dropped (and the drop logged).
    queue_size: int = setting(1000, _bounded(1, 1_000_000))


@dataclass(frozen=True)
class DatabaseConfig:
    # "": the SQLite file exitd.sqlite3 in the datadir; or postgresql+asyncpg://user:password@host/db.
    url: str = setting("", _database_url, secret=True)  # it may carry a password
    # With several exitd on one PostgreSQL database: seconds within which a standby takes over from a
    # leader that died or lost the database (exitd/store/leader.py).
    failover_timeout: float = setting(15.0, _failover_timeout)


@dataclass(frozen=True)
class BarkdConfig:
    """A running barkd that exitd follows as the source of truth of which VTXOs are still the user's
    (exitd/source/barkd.py). Off while `url` is empty."""

    url: str = setting("", _optional_url("http://127.0.0.1:3000"))
    # A file holding barkd's auth token (sent as a bearer token); empty: barkd asks for none.
    token_file: str = setting("", _parse_str)
    # Seconds between two reads of barkd's VTXO list (barkd 0.6's notifications also trigger one).
    sync_interval: float = setting(60.0, _positive_float)


# Named points in the engine where a test may have the daemon die at once (exitd/engine/packages.py for
# packages, exitd/engine/engine.py for claims).
CRASH_POINTS = ("after_child_stored", "after_submit", "before_claim_broadcast", "after_claim_broadcast")


@dataclass(frozen=True)
class TestingConfig:
    """TEST ONLY. Fault injection: the daemon exits abruptly (as if SIGKILLed) on reaching this point."""

    crash_point: str = setting("", _choice("", *CRASH_POINTS))


@dataclass(frozen=True)
class Config:
    network: str = setting(
        "regtest", _choice(*NETWORKS), flag="--network", help="bitcoin network (default: regtest)"
    )
    # Given as a string (file, environment, flag); load_config makes it an absolute Path.
    datadir: Path = setting(
        DEFAULT_DATADIR, _parse_str, flag="--datadir", help="data directory (default: ~/.exitd)"
    )
    bitcoind: BitcoindConfig = section(BitcoindConfig)
    rest: RestConfig = section(RestConfig)
    log: LogConfig = section(LogConfig)
    fees: FeesConfig = section(FeesConfig)
    wallet: WalletConfig = section(WalletConfig)
    guard: GuardConfig = section(GuardConfig)
    claims: ClaimsConfig = section(ClaimsConfig)
    alerts: AlertsConfig = section(AlertsConfig)
    barkd: BarkdConfig = section(BarkdConfig)
    testing: TestingConfig = section(TestingConfig)
    database: DatabaseConfig = section(DatabaseConfig)

    @property
    def database_path(self) -> Path:
        """The SQLite file, when `database.url` names no other database."""
        return self.datadir / "exitd.sqlite3"

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite+aiosqlite:///{self.database_path}"

    @property
    def mnemonic_path(self) -> Path:
        return self.datadir / "mnemonic"

    @property
    def token_path(self) -> Path:
        return self.datadir / "auth_token"

    @property
    def api_vocabulary(self) -> str:
        return self.rest.substate_vocabulary

    @property
    def rpc_url(self) -> str:
        return self.bitcoind.rpc_url or f"http://127.0.0.1:{DEFAULT_RPC_PORTS[self.network]}"


def _keys(cls: type) -> dict[str, Field[Any]]:
    return {f.name: f for f in fields(cls) if "parse" in f.metadata}


# [section] -> its dataclass, and section -> key -> declaration ("" holds the top-level keys), read from
# the dataclasses above.
SECTION_TYPES: dict[str, type] = {
    f.name: f.default_factory  # type: ignore[misc]
    for f in fields(Config)
    if f.metadata.get("section") and f.default_factory is not MISSING
}
KEYS: dict[str, dict[str, Field[Any]]] = {"": _keys(Config)} | {
    name: _keys(cls) for name, cls in SECTION_TYPES.items()
}


@dataclass(frozen=True)
class Flag:
    """A key settable by a command-line flag."""

    key: str  # dotted: "rest.port"
    flag: str  # "--rest-port"
    help: str


def flags() -> list[Flag]:
    return [
        Flag(_dotted(section, name), f.metadata["flag"], f.metadata["help"])
        for section, keys in KEYS.items()
        for name, f in keys.items()
        if f.metadata["flag"]
    ]


# Keys earlier versions read: a config that still sets one is told why it went.
REMOVED_KEYS = {
    "fees.min_rate": " (removed: the fee floor is read from bitcoind, minrelaytxfee and mempoolminfee)",
    "fees.escalation_window": " (removed: each level pays bitcoind's estimate for the blocks it has left)",
}


def _dotted(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def env_name(section: str, key: str) -> str:
    """`EXITD_REST_PORT` for rest.port, `EXITD_NETWORK` for network."""
    return "EXITD_" + (f"{section}_{key}" if section else key).upper()


# A raw value and where it came from ("/etc/exitd/exitd.toml", "environment variable EXITD_REST_PORT",
# "flag --rest-port"), for the message when it is bad.
Sourced = tuple[Any, str]


def _flatten_file(data: Mapping[str, Any], source: str) -> dict[tuple[str, str], Sourced]:
    flat: dict[tuple[str, str], Sourced] = {}
    for name, value in data.items():
        if isinstance(value, dict):
            if name not in KEYS or name == "":
                raise ConfigError(f"{source}: unknown section [{name}]")
            for key, inner in value.items():
                if key not in KEYS[name]:
                    why = REMOVED_KEYS.get(f"{name}.{key}", "")
                    raise ConfigError(f"{source}: unknown key '{name}.{key}'{why}")
                flat[(name, key)] = (inner, source)
        elif name in KEYS[""]:
            flat[("", name)] = (value, source)
        else:
            raise ConfigError(f"{source}: unknown key '{name}'")
    return flat


def read_config_file(path: Path) -> dict[tuple[str, str], Sourced]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return _flatten_file(data, str(path))


def _env_values(environ: Mapping[str, str]) -> dict[tuple[str, str], Sourced]:
    known = {env_name(s, k): (s, k) for s, keys in KEYS.items() for k in keys}
    values = {
        known[name]: (value, f"environment variable {name}")
        for name, value in environ.items()
        if name in known
    }
    unknown = sorted(
        name
        for name in environ
        if name.startswith("EXITD_") and name not in known and name not in NON_CONFIG_ENV
    )
    if unknown:
        raise ConfigError(f"unknown environment variable {unknown[0]} (not a config key)")
    return values


# Environment variables of ours that are not config keys.
NON_CONFIG_ENV = frozenset({"EXITD_CONFIG", "EXITD_DATADIR_FOR_TESTS"})


def load_config(
    config_path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build the Config from file < environment < `overrides` (dotted keys, from CLI flags).

    The file defaults to `<datadir>/exitd.toml` and may be absent only when it was not asked for explicitly.
    """
    environ = os.environ if environ is None else environ
    env = _env_values(environ)
    flag_of = {f.key: f.flag for f in flags()}
    cli: dict[tuple[str, str], Sourced] = {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section_name, _, key = dotted.rpartition(".")
        if section_name not in KEYS or key not in KEYS[section_name]:
            raise ConfigError(f"unknown config key '{dotted}'")
        cli[(section_name, key)] = (value, f"flag {flag_of.get(dotted, dotted)}")

    explicit = config_path is not None or "EXITD_CONFIG" in environ
    if config_path is None and "EXITD_CONFIG" in environ:
        config_path = Path(environ["EXITD_CONFIG"])
    datadir_raw = (cli.get(("", "datadir")) or env.get(("", "datadir")) or ("", ""))[0]
    default_datadir = Path(datadir_raw).expanduser() if datadir_raw else DEFAULT_DATADIR
    if config_path is None:
        config_path = default_datadir / CONFIG_FILENAME
    file_values = read_config_file(config_path) if explicit or config_path.exists() else {}

    merged = {**file_values, **env, **cli}
    parsed: dict[tuple[str, str], Any] = {}
    for (section_name, key), (raw, source) in merged.items():
        try:
            parsed[(section_name, key)] = KEYS[section_name][key].metadata["parse"](raw)
        except ValueError as e:
            raise ConfigError(f"bad value for '{_dotted(section_name, key)}': {e} (from {source})") from None

    sections = {
        name: cls(**{k: v for (s, k), v in parsed.items() if s == name})
        for name, cls in SECTION_TYPES.items()
    }
    datadir_value = parsed.get(("", "datadir"))
    datadir = Path(datadir_value).expanduser() if datadir_value else default_datadir
    config = Config(network=parsed.get(("", "network"), "regtest"), datadir=datadir.resolve(), **sections)
    _check_consistency(config)
    return config


def _check_consistency(config: Config) -> None:
    auth = config.bitcoind
    if auth.rpc_cookie and (auth.rpc_user or auth.rpc_password):
        raise ConfigError("set either 'bitcoind.rpc_cookie' or 'bitcoind.rpc_user'/'rpc_password', not both")
    if bool(auth.rpc_user) != bool(auth.rpc_password):
        raise ConfigError("'bitcoind.rpc_user' and 'bitcoind.rpc_password' must be set together")
    claim_address = config.guard.claim_address
    if claim_address not in ("", "wallet"):
        try:
            decode_address(claim_address, config.network)
        except InvalidAddress as e:
            raise ConfigError(
                f'bad value for \'guard.claim_address\': {e} (or "wallet", or "" for none)'
            ) from None
