import re
from dataclasses import fields
from pathlib import Path

import pytest

from exitd.config import KEYS, SECTION_TYPES, BitcoindConfig, Config, ConfigError, flags, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exitd.toml"
    path.write_text(text)
    return path


def test_defaults_without_file(tmp_path: Path) -> None:
    config = load_config(overrides={"datadir": str(tmp_path)}, environ={})
    assert config.network == "regtest"
    assert config.rest.host == "127.0.0.1" and config.rest.port == 3000
    assert config.rpc_url == "http://127.0.0.1:18443"
    assert config.datadir == tmp_path.resolve()
    assert config.database_path == tmp_path.resolve() / "exitd.sqlite3"
    assert config.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'exitd.sqlite3'}"


def test_database_url_names_postgresql_and_nothing_else(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://exitd:secret@127.0.0.1:5432/exitd"
    config = load_config(overrides={"datadir": str(tmp_path)}, environ={"EXITD_DATABASE_URL": url})
    assert config.database_url == url and "secret" not in repr(config)
    path = write(tmp_path, '[database]\nurl = "mysql://root@localhost/exitd"\n')
    with pytest.raises(ConfigError, match=r"'database\.url': expected a PostgreSQL URL"):
        load_config(path, environ={})
    assert config.database.failover_timeout == 15.0
    env = {"EXITD_DATABASE_URL": url, "EXITD_DATABASE_FAILOVER_TIMEOUT": "1"}
    with pytest.raises(ConfigError, match=r"'database\.failover_timeout': expected seconds in \[3, 600\]"):
        load_config(overrides={"datadir": str(tmp_path)}, environ=env)


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    path = write(tmp_path, 'network = "signet"\n[rest]\nport = 4000\nhost = "127.0.0.2"\n')
    config = load_config(path, environ={})
    assert (config.network, config.rest.port, config.rpc_url) == ("signet", 4000, "http://127.0.0.1:38332")
    config = load_config(path, environ={"EXITD_REST_PORT": "5000"})
    assert config.rest.port == 5000 and config.rest.host == "127.0.0.2"
    config = load_config(path, overrides={"rest.port": 6000}, environ={"EXITD_REST_PORT": "5000"})
    assert config.rest.port == 6000


def test_default_file_is_found_in_datadir(tmp_path: Path) -> None:
    write(tmp_path, '[log]\nformat = "json"\n')
    config = load_config(overrides={"datadir": str(tmp_path)}, environ={})
    assert config.log.format == "json"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("netwrk = 'regtest'\n", "'netwrk'"),
        ("[bitcoind]\nrpc_usr = 'x'\n", "'bitcoind.rpc_usr'"),
        ("[restt]\nport = 1\n", "[restt]"),
        ("network = 'moonnet'\n", "'network'"),
        ("[rest]\nport = 70000\n", "'rest.port'"),
        ("[rest]\nport = 'abc'\n", "'rest.port'"),
        ("[rest]\nport = true\n", "'rest.port'"),
        ("[bitcoind]\nrpc_url = 'ftp://x'\n", "'bitcoind.rpc_url'"),
        ("[bitcoind]\nrpc_url = 'http://u:p@127.0.0.1:1'\n", "'bitcoind.rpc_url'"),
        ("[log]\nlevel = 'loud'\n", "'log.level'"),
        ("[bitcoind]\ntimeout = -1\n", "'bitcoind.timeout'"),
    ],
)
def test_bad_keys_and_values_are_named(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_config(write(tmp_path, text), environ={})


def test_bad_env_value_and_unknown_env_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("'rest.port'")):
        load_config(overrides={"datadir": str(tmp_path)}, environ={"EXITD_REST_PORT": "http"})
    with pytest.raises(ConfigError, match="EXITD_REST_PROT"):
        load_config(overrides={"datadir": str(tmp_path)}, environ={"EXITD_REST_PROT": "1"})


def test_not_toml_and_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "network = \n"), environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})


def test_auth_combinations(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        load_config(
            write(tmp_path, "[bitcoind]\nrpc_cookie='c'\nrpc_user='u'\nrpc_password='p'\n"), environ={}
        )
    with pytest.raises(ConfigError, match="together"):
        load_config(write(tmp_path, "[bitcoind]\nrpc_user='u'\n"), environ={})


def test_password_not_in_repr(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[bitcoind]\nrpc_user='u'\nrpc_password='hunter2'\n"), environ={})
    assert "hunter2" not in repr(config)


# BIP350's example P2TR address of mainnet.
MAINNET_ADDRESS = "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y"


def test_guard_is_on_by_default_and_claims_only_when_told(tmp_path: Path) -> None:
    config = load_config(overrides={"datadir": str(tmp_path)}, environ={})
    assert config.guard.enabled and config.guard.claim_address == ""
    assert config.alerts.webhook_url == ""
    path = write(tmp_path, '[guard]\nenabled = false\nclaim_address = "wallet"\n')
    config = load_config(path, environ={"EXITD_ALERTS_WEBHOOK_URL": "https://hooks.example/x"})
    assert not config.guard.enabled and config.guard.claim_address == "wallet"
    assert config.alerts.webhook_url == "https://hooks.example/x"
    path = write(tmp_path, f'network = "mainnet"\n[guard]\nclaim_address = "{MAINNET_ADDRESS}"\n')
    assert load_config(path, environ={}).guard.claim_address == MAINNET_ADDRESS


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (f"[guard]\nclaim_address = '{MAINNET_ADDRESS}'\n", "'guard.claim_address'"),  # on regtest
        ("[guard]\nslack_blocks = -1\n", "'guard.slack_blocks'"),
        ("[guard]\nclaim_max_rate = 10\n", "'guard.claim_max_rate'"),
        ("[alerts]\nwebhook_url = 'hooks.example/x'\n", "'alerts.webhook_url'"),
        ("[alerts]\nmax_attempts = 0\n", "'alerts.max_attempts'"),
    ],
)
def test_bad_guard_and_alert_values_are_named(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_config(write(tmp_path, text), environ={})


def test_a_bad_value_says_where_it_came_from(tmp_path: Path) -> None:
    path = write(tmp_path, "[rest]\nport = 70000\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert str(raised.value) == (
        f"bad value for 'rest.port': expected an integer in [0, 65535], got 70000 (from {path})"
    )
    with pytest.raises(
        ConfigError, match=re.escape("got 'http' (from environment variable EXITD_REST_PORT)")
    ):
        load_config(overrides={"datadir": str(tmp_path)}, environ={"EXITD_REST_PORT": "http"})
    with pytest.raises(ConfigError, match=re.escape("got 'loud' (from flag --log-level)")):
        load_config(overrides={"datadir": str(tmp_path / "none"), "log.level": "loud"}, environ={})


def test_each_key_is_declared_once_and_everything_else_is_read_from_it() -> None:
    """The schema, the environment names and the flags come from the dataclass fields; every field of
    every section is a declared key with a default its own parser accepts."""
    assert set(KEYS) == {"", *SECTION_TYPES}
    defaults = Config()
    for section, keys in KEYS.items():
        holder = getattr(defaults, section) if section else defaults
        assert set(keys) == {f.name for f in fields(holder) if not f.metadata.get("section")}
        for name, declared in keys.items():
            value = getattr(holder, name)
            if value is not None and not isinstance(value, Path):
                assert declared.metadata["parse"](value) == value, (section, name)
    assert {f.flag: f.key for f in flags()} == {
        "--network": "network",
        "--datadir": "datadir",
        "--rpc-url": "bitcoind.rpc_url",
        "--rpc-user": "bitcoind.rpc_user",
        "--rpc-password": "bitcoind.rpc_password",
        "--rpc-cookie": "bitcoind.rpc_cookie",
        "--rest-host": "rest.host",
        "--rest-port": "rest.port",
        "--log-level": "log.level",
        "--log-format": "log.format",
        "--log-file": "log.file",
    }
    assert "secret" not in repr(Config(bitcoind=BitcoindConfig(rpc_password="secret")))
