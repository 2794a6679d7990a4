"""The twistd plugin: found by twistd from the editable install and from a plain install
into another directory, with its options."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

from chathub.passwd import set_password
from tests.support import ANY_PORT, REPO, LineClient, TwistdServer, server_config

TWISTD = "from twisted.scripts.twistd import run; run()"


def run_python(*args: str, cwd, pythonpath: list[str] | None = None, flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    return subprocess.run(
        [sys.executable, *flags, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_twistd_help_lists_chathub(tmp_path):
    # from a directory that is not the source tree, without PYTHONPATH: the editable install
    result = run_python("-c", TWISTD, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = [line for line in result.stdout.splitlines() if line.strip().startswith("chathub ")]
    assert listed and "multi-protocol chat hub" in listed[0]


def test_chathub_options(tmp_path):
    result = run_python("-c", TWISTD, "chathub", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for option in ("--config=", "--auth=", "--line=", "--irc=", "--http=", "--data-dir=", "--no-guests", "--help-auth"):
        assert option in result.stdout, option
    result = run_python("-c", TWISTD, "chathub", "--help-auth", cwd=tmp_path)
    assert "memory" in result.stdout and "file" in result.stdout


def test_bad_auth_option_is_a_usage_error(tmp_path):
    result = run_python("-c", TWISTD, "-n", "chathub", "--auth", "nosuchchecker:x", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr


@pytest.fixture(scope="module")
def installed_site(tmp_path_factory):
    """``pip install --no-deps --no-build-isolation --target SITE`` of a copy of the source
    tree (so the build leaves nothing in the repository)."""
    base = tmp_path_factory.mktemp("install")
    source = base / "src"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", "var", "node_modules", "bench", ".pytest_cache", "dropin.cache"),
    )
    site = base / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(site), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (site / "twisted" / "plugins" / "chathub_plugin.py").exists()
    assert not (site / "twisted" / "plugins" / "__init__.py").exists()  # never shadow Twisted's own
    shutil.rmtree(source)  # nothing may come from the copied source tree
    return site


def installed_path(site) -> list[str]:
    """The installed copy first, then the interpreter's site-packages for Twisted and the other
    dependencies; with ``python -S`` no .pth file (the editable install's) is read."""
    return [str(site), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]


def test_installed_copy_is_what_gets_imported(installed_site, tmp_path):
    result = run_python(
        "-c",
        "import sys, chathub, twisted.plugins.chathub_plugin as p; print(chathub.__file__); print(p.__file__); "
        f"print({str(REPO)!r} in sys.path)",
        cwd=tmp_path,
        pythonpath=installed_path(installed_site),
        flags=("-S",),
    )
    assert result.returncode == 0, result.stderr
    chathub_file, plugin_file, repo_on_path = result.stdout.split()
    assert chathub_file.startswith(str(installed_site))
    assert plugin_file.startswith(str(installed_site))
    assert repo_on_path == "False"


def test_installed_copy_lists_and_starts(installed_site, tmp_path):
    path = installed_path(installed_site)
    result = run_python("-c", TWISTD, "--help", cwd=tmp_path, pythonpath=path, flags=("-S",))
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line.strip().startswith("chathub ")]

    # start it, with the listener and the data directory given on the command line (the
    # file's UNIX listener, had it been used, has no port to read back)
    data_dir = tmp_path / "data"
    set_password(str(data_dir / "passwd"), "alice", "installed-pw")
    server = TwistdServer(
        tmp_path / "run",
        server_config(tmp_path / "ignored-data", line=f"unix:{tmp_path / 'ignored.sock'}"),
        ("--line", ANY_PORT, "--data-dir", str(data_dir)),
        pythonpath=path,
        python_flags=("-S",),
    )
    try:
        server.start()
        client = LineClient(server.port("line"))
        try:
            client.expect("Welcome")
            client.send("/nick alice installed-pw")
            client.expect(r"^\* you are alice, logged in to account alice")
        finally:
            client.close()
        assert not (tmp_path / "ignored.sock").exists()  # the file's listener never listened
        assert not (tmp_path / "ignored-data").exists()
        assert server.exceptions == []
        assert "installed-pw" not in "\n".join(server.log)
    finally:
        server.stop()


def test_installed_copy_parses_reuseport_endpoints(installed_site, tmp_path):
    # twisted/plugins/chathub_reuseport.py is shipped beside chathub_plugin.py and found there
    result = run_python(
        "-c",
        "from twisted.internet import reactor; from twisted.internet.endpoints import serverFromString; "
        "import twisted.plugins.chathub_reuseport as p, chathub.protocols.reuseport as m; "
        "e = serverFromString(reactor, 'reuseport:6667:interface=127.0.0.1'); "
        "print(type(e).__module__); print(p.__file__); print(m.__file__)",
        cwd=tmp_path,
        pythonpath=installed_path(installed_site),
        flags=("-S",),
    )
    assert result.returncode == 0, result.stderr
    endpoint_module, plugin_file, module_file = result.stdout.split()
    assert endpoint_module == "chathub.protocols.reuseport"
    assert plugin_file.startswith(str(installed_site)) and module_file.startswith(str(installed_site))
