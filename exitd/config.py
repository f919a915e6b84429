"""Configuration: a TOML file, overridden by `EXITD_*` environment variables, overridden by CLI flags.

Every key is declared once in `SCHEMA`; an unknown key or a bad value stops start-up with a message that
names the key, because a daemon that silently ignores a typo in `rpc_cookie` fails much later and worse.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class BitcoindConfig:
    rpc_url: str = ""
    rpc_user: str = ""
    rpc_password: str = field(default="", repr=False)
    rpc_cookie: str = ""
    # bitcoind's watch-only wallet of exitd's coins; empty: exitd-<wallet fingerprint>.
    wallet_name: str = ""
    timeout: float = 30.0


@dataclass(frozen=True)
class RestConfig:
    host: str = "127.0.0.1"
    port: int = 3000
    max_body_bytes: int = 1 << 20
    # Seconds a client has to send a request body in full: one trickling it would hold its connection open.
    body_timeout: float = 30.0
    # /metrics without the bearer token (for a Prometheus that cannot send one); off: it needs the token.
    metrics_open: bool = False
    # Names of per-transaction exit sub-states: barkd 0.1.4's (the contract) or 0.6.0's.
    substate_vocabulary: str = "0.1.4"


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    format: str = "text"
    # Append to this file instead of stderr; reopened when rotated away (logrotate without copytruncate).
    file: str = ""


@dataclass(frozen=True)
class FeesConfig:
    """Fee rates in sat/kvB; the fallback is used when the node has no estimate (regtest, fresh node)."""

    fallback_rate: int = 2000
    # The exit fee policy (exitd/engine/fee_policy.py documents the curve).
    max_rate: int = 500_000
    expiry_margin: int = 6
    budget_ratio: float = 0.5


@dataclass(frozen=True)
class WalletConfig:
    # bark's VTXO keys m/350'/0'/i are searched up to this index to find the owner of an imported VTXO.
    vtxo_key_search_limit: int = 1000
    # Where bitcoind searches a restored wallet's coins from when it first imports the descriptors (when
    # none was given to POST /api/v1/wallet/create). None: from the genesis block, or for a mnemonic exitd
    # generated, from the moment it did.
    birthday_height: int | None = None


@dataclass(frozen=True)
class GuardConfig:
    """Guard mode (exitd/engine/guard.py documents it): exits start before expiry and when someone else
    began them, and are claimed to `claim_address` on their own."""

    enabled: bool = True
    # An exit starts when expiry_height - tip <= exit depth + exit delta + slack_blocks.
    slack_blocks: int = 144
    # VTXOs below this amount (sat) are not exited by the guard; a vtxo-at-risk alert tells of them.
    min_amount: int = 0
    # "": claims only on request; "wallet": to a new address of exitd's wallet; or an address.
    claim_address: str = ""
    # sat/kvB; auto-claims pay the ~3-block estimate, at most this.
    claim_max_rate: int = 20_000
    # Exit VTXOs that only came by import (no source vouches they are still the user's) too. Off: such a
    # VTXO is guarded only when imported with `protect`, since bark may have refreshed or spent it since.
    protect_imports: bool = False


@dataclass(frozen=True)
class AlertsConfig:
    """Alerts are log lines; with a webhook URL also an HTTP POST each (exitd/engine/alerts.py)."""

    webhook_url: str = field(default="", repr=False)  # it may carry a token
    # Seconds per POST attempt, and attempts per alert (exponential backoff from 1 s, at most 60 s apart).
    timeout: float = 5.0
    max_attempts: int = 8
    # Alerts waiting to be sent; more are dropped (and the drop logged).
    queue_size: int = 1000


@dataclass(frozen=True)
class DatabaseConfig:
    # "": the SQLite file exitd.sqlite3 in the datadir; or postgresql+asyncpg://user:password@host/db.
    url: str = field(default="", repr=False)  # it may carry a password
    # With several exitd on one PostgreSQL database: seconds within which a standby takes over from a
    # leader that died or lost the database (exitd/store/leader.py).
    failover_timeout: float = 15.0


@dataclass(frozen=True)
class BarkdConfig:
    """A running barkd that exitd follows as the source of truth of which VTXOs are still the user's
    (exitd/source/barkd.py). Off while `url` is empty."""

    url: str = ""
    # A file holding barkd's auth token (sent as a bearer token); empty: barkd asks for none.
    token_file: str = ""
    # Seconds between two reads of barkd's VTXO list (barkd 0.6's notifications also trigger one).
    sync_interval: float = 60.0


# Named points in the engine where a test may have the daemon die at once (exitd/engine/packages.py for
# packages, exitd/engine/engine.py for claims).
CRASH_POINTS = ("after_child_stored", "after_submit", "before_claim_broadcast", "after_claim_broadcast")


@dataclass(frozen=True)
class TestingConfig:
    """TEST ONLY. Fault injection: the daemon exits abruptly (as if SIGKILLed) on reaching this point."""

    crash_point: str = ""


@dataclass(frozen=True)
class Config:
    network: str = "regtest"
    datadir: Path = DEFAULT_DATADIR
    bitcoind: BitcoindConfig = field(default_factory=BitcoindConfig)
    rest: RestConfig = field(default_factory=RestConfig)
    log: LogConfig = field(default_factory=LogConfig)
    fees: FeesConfig = field(default_factory=FeesConfig)
    wallet: WalletConfig = field(default_factory=WalletConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    barkd: BarkdConfig = field(default_factory=BarkdConfig)
    testing: TestingConfig = field(default_factory=TestingConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)

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


# section -> key -> parser. The empty section holds top-level keys.
SCHEMA: dict[str, dict[str, Callable[[Any], Any]]] = {
    "": {"network": _choice(*NETWORKS), "datadir": _parse_str},
    "bitcoind": {
        "rpc_url": _rpc_url,
        "rpc_user": _parse_str,
        "rpc_password": _parse_str,
        "rpc_cookie": _parse_str,
        "wallet_name": _parse_str,
        "timeout": _positive_float,
    },
    "rest": {
        "host": _parse_str,
        "port": _bounded(0, 65535),
        "max_body_bytes": _bounded(1024, 1 << 30),
        "body_timeout": _positive_float,
        "metrics_open": _parse_bool,
        "substate_vocabulary": _choice("0.1.4", "0.6.0"),
    },
    "log": {"level": _choice(*LOG_LEVELS), "format": _choice(*LOG_FORMATS), "file": _parse_str},
    "fees": {
        "fallback_rate": _bounded(100, 10_000_000),
        "max_rate": _bounded(1000, 10_000_000),
        "expiry_margin": _bounded(0, 10_000),
        "budget_ratio": _ratio,
    },
    "wallet": {"vtxo_key_search_limit": _bounded(1, 1_000_000), "birthday_height": _bounded(0, 10_000_000)},
    "guard": {
        "enabled": _parse_bool,
        "slack_blocks": _bounded(0, 100_000),
        "min_amount": _bounded(0, 21_000_000 * 100_000_000),
        "claim_address": _parse_str,
        "claim_max_rate": _bounded(1000, 10_000_000),
        "protect_imports": _parse_bool,
    },
    "alerts": {
        "webhook_url": _optional_url("http://127.0.0.1:9000/exitd"),
        "timeout": _positive_float,
        "max_attempts": _bounded(1, 100),
        "queue_size": _bounded(1, 1_000_000),
    },
    "barkd": {
        "url": _optional_url("http://127.0.0.1:3000"),
        "token_file": _parse_str,
        "sync_interval": _positive_float,
    },
    "testing": {"crash_point": _choice("", *CRASH_POINTS)},
    "database": {"url": _database_url, "failover_timeout": _failover_timeout},
}

# Keys earlier versions read: a config that still sets one is told why it went.
REMOVED_KEYS = {
    "fees.min_rate": " (removed: the fee floor is read from bitcoind, minrelaytxfee and mempoolminfee)",
    "fees.escalation_window": " (removed: each level pays bitcoind's estimate for the blocks it has left)",
}

SECTION_TYPES: dict[str, type] = {
    "bitcoind": BitcoindConfig,
    "rest": RestConfig,
    "log": LogConfig,
    "fees": FeesConfig,
    "wallet": WalletConfig,
    "guard": GuardConfig,
    "alerts": AlertsConfig,
    "barkd": BarkdConfig,
    "testing": TestingConfig,
    "database": DatabaseConfig,
}


def _dotted(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def env_name(section: str, key: str) -> str:
    """`EXITD_REST_PORT` for rest.port, `EXITD_NETWORK` for network."""
    return "EXITD_" + (f"{section}_{key}" if section else key).upper()


def _flatten_file(data: Mapping[str, Any], source: str) -> dict[tuple[str, str], Any]:
    flat: dict[tuple[str, str], Any] = {}
    for name, value in data.items():
        if isinstance(value, dict):
            if name not in SCHEMA or name == "":
                raise ConfigError(f"{source}: unknown section [{name}]")
            for key, inner in value.items():
                if key not in SCHEMA[name]:
                    why = REMOVED_KEYS.get(f"{name}.{key}", "")
                    raise ConfigError(f"{source}: unknown key '{name}.{key}'{why}")
                flat[(name, key)] = inner
        elif name in SCHEMA[""]:
            flat[("", name)] = value
        else:
            raise ConfigError(f"{source}: unknown key '{name}'")
    return flat


def read_config_file(path: Path) -> dict[tuple[str, str], Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return _flatten_file(data, str(path))


def _env_values(environ: Mapping[str, str]) -> dict[tuple[str, str], Any]:
    known = {env_name(s, k): (s, k) for s, keys in SCHEMA.items() for k in keys}
    values = {known[name]: value for name, value in environ.items() if name in known}
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
    cli: dict[tuple[str, str], Any] = {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, key = dotted.rpartition(".")
        if section not in SCHEMA or key not in SCHEMA[section]:
            raise ConfigError(f"unknown config key '{dotted}'")
        cli[(section, key)] = value

    explicit = config_path is not None or "EXITD_CONFIG" in environ
    if config_path is None and "EXITD_CONFIG" in environ:
        config_path = Path(environ["EXITD_CONFIG"])
    datadir_raw = cli.get(("", "datadir")) or env.get(("", "datadir"))
    default_datadir = Path(datadir_raw).expanduser() if datadir_raw else DEFAULT_DATADIR
    if config_path is None:
        config_path = default_datadir / CONFIG_FILENAME
    file_values = read_config_file(config_path) if explicit or config_path.exists() else {}

    merged = {**file_values, **env, **cli}
    parsed: dict[tuple[str, str], Any] = {}
    for (section, key), raw in merged.items():
        try:
            parsed[(section, key)] = SCHEMA[section][key](raw)
        except ValueError as e:
            raise ConfigError(f"bad value for '{_dotted(section, key)}': {e}") from None

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
