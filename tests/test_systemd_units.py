"""The systemd units in deploy/systemd: one per Procfile line, running the same command, restarted on
failure, hardened, and accepted by `systemd-analyze verify` (Debian's systemd; `make test` installs
it) without a single complaint. verify needs the binaries the units start to exist, so it checks a
copy with /opt/signalserver replaced by this checkout."""

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.servers import PROJECT, procfile_command

SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"
UNITS = PROJECT / "deploy" / "systemd"
INSTALL_DIR = "/opt/signalserver"
ENVIRONMENT_FILE = "/etc/signalserver/signalserver.env"
PROCESS_TYPES = ["web", "worker", "beat"]
HARDENING = {
    "Restart": "on-failure",
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "CapabilityBoundingSet": "",
}


def unit_path(process_type: str) -> Path:
    return UNITS / f"signalserver-{process_type}.service"


def directives(text: str) -> dict[str, list[str]]:
    """Every `Key=value` of a unit file, by key, in order (comments and sections left out)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def verify(tmp_path: Path, units: dict[str, str]) -> tuple[int, str]:
    """`systemd-analyze verify` of the units (name → text) with this checkout as the install
    directory: its exit status and what it printed. It reports options it cannot parse, and
    ignores them, with exit status 0: a clean unit is one with nothing printed."""
    if not Path(SYSTEMD_ANALYZE).exists():
        pytest.fail(f"{SYSTEMD_ANALYZE} is missing: run `make {SYSTEMD_ANALYZE}` (apt-get install systemd)")
    environment_file = tmp_path / "signalserver.env"
    environment_file.write_text((PROJECT / ".env.example").read_text())
    paths = []
    for name, text in units.items():
        path = tmp_path / name
        path.write_text(text.replace(INSTALL_DIR, str(PROJECT)).replace(ENVIRONMENT_FILE, str(environment_file)))
        paths.append(str(path))
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", *paths], capture_output=True, text=True, timeout=60)
    return result.returncode, (result.stdout + result.stderr).strip()


def test_every_unit_passes_systemd_analyze_verify_without_a_complaint(tmp_path):
    units = {unit_path(kind).name: unit_path(kind).read_text() for kind in PROCESS_TYPES}
    assert verify(tmp_path, units) == (0, "")


def test_the_check_catches_a_mistyped_option(tmp_path):
    text = unit_path("web").read_text().replace("ProtectSystem=strict", "ProtectSystem=strictly")
    status, output = verify(tmp_path, {"signalserver-web.service": text})
    assert "Failed to parse protect system value" in output, (status, output)


@pytest.mark.parametrize("process_type", PROCESS_TYPES)
def test_each_unit_runs_its_procfile_line_restarts_on_failure_and_is_hardened(process_type):
    unit = directives(unit_path(process_type).read_text())
    # The Procfile's `${NAME:-default}` becomes `${NAME}` in ExecStart= plus NAME=default in
    # Environment= (which the EnvironmentFile= overrides, as the environment overrides the default).
    procfile = procfile_command(process_type)
    defaults = dict(re.findall(r"\$\{(\w+):-([^}]*)\}", procfile))
    expected = re.sub(r"\$\{(\w+):-[^}]*\}", r"${\1}", procfile).replace(".venv/bin/", f"{INSTALL_DIR}/.venv/bin/", 1)
    assert unit["ExecStart"] == [expected]
    environment = dict(item.split("=", 1) for value in unit.get("Environment", []) for item in shlex.split(value))
    assert environment == defaults
    assert unit["EnvironmentFile"] == [ENVIRONMENT_FILE]
    assert unit["WorkingDirectory"] == [INSTALL_DIR]
    assert unit["User"] == ["signalserver"]
    for key, value in HARDENING.items():
        assert unit.get(key) == [value], key
