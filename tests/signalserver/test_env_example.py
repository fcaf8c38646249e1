import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_lists_every_variable_the_settings_read():
    read = set()
    for source in (ROOT / "signalserver").glob("settings*.py"):
        read |= set(re.findall(r"env(?:_bool|_int|_list)?\(\s*\"([A-Z0-9_]+)\"", source.read_text()))
    listed = set(re.findall(r"^([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    assert read, "no variables found: the pattern no longer matches settings.py"
    assert read - listed == set()
