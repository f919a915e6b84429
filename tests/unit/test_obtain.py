"""Obtaining bitcoind on a fresh machine: the build's one-line announcement, its progress line, its log, its
one-line failures, and an unpack that works on Python 3.11.2 (no tarfile filters); with a tiny source
archive and a fake compiler, so the whole recipe runs in a second."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from exitd.regtest import obtain
from exitd.regtest.obtain import BitcoindNotFound, BuildFailed, Recipe, build_bitcoind, find_bitcoind

# The fake tree's "compiler": ninja-like status lines, chatter, and the two binaries.
FAKE_BUILD = """
import pathlib, sys
for n in (1, 2, 3):
    print(f"[{n}/3] Building CXX object src/part{n}.o", flush=True)
    print("warning: chatter from the compiler", flush=True)
if len(sys.argv) > 1:
    print("error: " + sys.argv[1], flush=True)
    sys.exit(2)
bin = pathlib.Path("build/bin")
bin.mkdir(parents=True)
for name in ("bitcoind", "bitcoin-cli"):
    (bin / name).write_text("#!/bin/sh\\necho " + name + " v31.1\\n")
    (bin / name).chmod(0o755)
"""


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def fake_archive(directory: Path) -> Path:
    """fake-0.1.tar.gz holding fake-0.1/vendor/bitcoin/build.py, as the sdist holds Bitcoin Core."""
    tree = directory / "tree" / "fake-0.1" / "vendor" / "bitcoin"
    tree.mkdir(parents=True)
    (tree / "build.py").write_text(FAKE_BUILD)
    archive = directory / "fake-0.1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(directory / "tree" / "fake-0.1", arcname="fake-0.1")
    return archive


def fake_recipe(archive: Path, *compile_args: str, sha256: str | None = None) -> Recipe:
    return Recipe(
        name="Fake Core v0.1",
        minutes=1,
        packages=(),
        fetch=(sys.executable, "-c", f"import shutil; shutil.copy({str(archive)!r}, '.')"),
        sha256=sha256 or hashlib.sha256(archive.read_bytes()).hexdigest(),
        source="*/vendor/bitcoin",
        configure=(sys.executable, "-c", "print('-- Configuring done')"),
        compile=(sys.executable, "build.py", *compile_args),
    )


@pytest.mark.parametrize("extraction_filters", [True, False], ids=["python>=3.11.4", "python3.11.2"])
def test_a_build_announces_itself_shows_steps_and_logs_the_tools_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extraction_filters: bool
) -> None:
    if not extraction_filters:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    target, out = tmp_path / "cache", io.StringIO()
    built = build_bitcoind(fake_recipe(fake_archive(tmp_path)), target, out)
    assert built == target / "bitcoind" and os.access(built, os.X_OK)
    assert subprocess.run([built], capture_output=True, text=True).stdout == "bitcoind v31.1\n"
    assert (target / "bitcoin-cli").is_file()
    announcement, *progress = out.getvalue().splitlines()
    log = target / "build.log"
    assert announcement == (
        f"exitd: no bitcoind found, so building Fake Core v0.1 from source (about 1 minutes on 2 cores, once)"
        f" into {target}; to skip it, set BITCOIND=/path/to/bitcoind (v29 or later) to use one you have."
        f" Build output: {log}"
    )
    assert [line.rsplit(",", 1)[0] for line in progress[:-1]] == [
        "building bitcoind: step 1/4 downloading the sources",
        "building bitcoind: step 2/4 unpacking",
        "building bitcoind: step 3/4 configuring",
        "building bitcoind: step 4/4 compiling",
    ]
    assert progress[-1].startswith("building bitcoind: done in 0m0") and progress[-1].endswith(str(built))
    assert "chatter" not in out.getvalue()
    text = log.read_text()
    assert "-- Configuring done" in text and text.count("warning: chatter from the compiler") == 3


def test_on_a_terminal_the_progress_is_one_line_rewritten_in_place(tmp_path: Path) -> None:
    out = Terminal()
    build_bitcoind(fake_recipe(fake_archive(tmp_path)), tmp_path / "cache", out)
    announcement, rest, done = out.getvalue().split("\n", 2)
    assert announcement.startswith("exitd: no bitcoind found") and done == ""
    redraws = rest.split("\r\033[K")
    assert redraws[0] == "" and redraws[-1].startswith("building bitcoind: done in ")
    assert "building bitcoind: step 2/4 unpacking, 0m0" in redraws[2]
    assert redraws[4].startswith("building bitcoind: step 4/4 compiling, 0m0")


def test_a_failed_build_is_one_line_naming_its_log(tmp_path: Path) -> None:
    target, out = tmp_path / "cache", io.StringIO()
    with pytest.raises(BuildFailed) as failed:
        build_bitcoind(fake_recipe(fake_archive(tmp_path), "no space left"), target, out)
    log = target / "build.log"
    assert str(failed.value) == (
        f"building Fake Core v0.1 failed: compiling failed (exit status 2); see {log}"
    )
    assert "error: no space left" in log.read_text() and "no space left" not in out.getvalue()
    assert not (target / "bitcoind").exists()


def test_an_archive_with_another_digest_is_refused_before_it_is_unpacked(tmp_path: Path) -> None:
    archive = fake_archive(tmp_path)
    with pytest.raises(
        BuildFailed,
        match=r"^building Fake Core v0\.1 failed: fake-0\.1\.tar\.gz has sha256 [0-9a-f]{64}, expected 0+$",
    ):
        build_bitcoind(fake_recipe(archive, sha256="0" * 64), tmp_path / "cache", io.StringIO())


def test_a_tool_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    recipe = fake_recipe(fake_archive(tmp_path))
    recipe = Recipe(**{**recipe.__dict__, "configure": ("no-such-cmake", "-B", "build")})
    with pytest.raises(
        BuildFailed, match=r"configuring could not start \(No such file or directory: no-such-cmake\)"
    ):
        build_bitcoind(recipe, tmp_path / "cache", io.StringIO())


def test_missing_build_packages_are_named_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(obtain, "missing_packages", lambda packages: list(packages))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    recipe = Recipe(**{**fake_recipe(fake_archive(tmp_path)).__dict__, "packages": ("cmake", "g++")})
    out = io.StringIO()
    with pytest.raises(
        BitcoindNotFound, match=r"^building bitcoind needs these Debian packages: cmake g\+\+; "
    ):
        build_bitcoind(recipe, tmp_path / "cache", out)
    assert out.getvalue() == "" and not (tmp_path / "cache").exists()


def test_shared_bin_is_looked_up_beside_the_checkout_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoy = tmp_path / "shared" / "bin" / "bitcoind"
    decoy.parent.mkdir(parents=True)
    decoy.write_text("#!/bin/sh\necho decoy\n")
    decoy.chmod(0o755)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.delenv("BITCOIND", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    try:
        found: Path | None = find_bitcoind(build=False)
    except BitcoindNotFound:
        found = None
    assert found != decoy
    # A checkout holding the virtual environment that runs exitd is one to look beside.
    checkout = tmp_path / "checkout"
    (checkout / "exitd").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("")
    monkeypatch.setattr(sys, "prefix", str(checkout / ".venv"))
    assert checkout in obtain.checkouts()


def test_obtain_from_the_command_line_fails_in_one_line(tmp_path: Path) -> None:
    env = os.environ | {"BITCOIND": str(tmp_path / "nothing")}
    result = subprocess.run(
        [sys.executable, "-m", "exitd.regtest.obtain"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr == f"exitd: $BITCOIND={tmp_path / 'nothing'} is not an executable file\n"
