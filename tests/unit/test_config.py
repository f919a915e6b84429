import re
from pathlib import Path

import pytest

from exitd.config import ConfigError, load_config


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
