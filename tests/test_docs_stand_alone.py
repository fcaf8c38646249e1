"""The repository stands alone: no tracked file points readers at documents they do not have (an
outside specification by section number, design or API notes kept elsewhere, a sibling folder).
Code and docs cite the project's own docs/ instead (docs/architecture.md, docs/api.md, ...)."""

import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
SECTION = "\u00a7"

# Built from pieces so that this file does not match its own patterns.
FORBIDDEN = [
    re.compile("spec" + r"\s*" + SECTION, re.IGNORECASE),
    re.compile("DESIGN" + r"\.md", re.IGNORECASE),
    re.compile(r"(?<!docs/)" + "API" + r"\.md"),
    re.compile(r"\.\./" + "shared"),
    re.compile("shared" + "/spec"),
]


def outside_references(text: str) -> list[str]:
    """The forbidden references on one line of text, as matched."""
    return [match.group(0) for pattern in FORBIDDEN for match in pattern.finditer(text)]


def tracked_files() -> list[pathlib.Path]:
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in listing.decode().split("\0") if name]


def read_text(path: pathlib.Path) -> str | None:
    """The file's text; None for a binary file or one deleted from the work tree."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def test_patterns_catch_every_kind_of_outside_reference():
    for line in (
        "as the spec " + SECTION + "4.1 says",
        "(Spec " + SECTION + "2.2 step 7)",
        "see DESIGN" + ".md",
        "see API" + ".md",
        "in .." + "/shared/notes.txt",
    ):
        assert outside_references(line), line
    for line in ("see docs/api.md", "docs/architecture.md " + SECTION + "4", "RFC 6238 " + SECTION + "5.2"):
        assert outside_references(line) == [], line


def test_no_tracked_file_refers_to_documents_outside_the_repository():
    files = tracked_files()
    assert ROOT / "README.md" in files, "git ls-files did not list the repository's files"
    offenders = []
    for path in files:
        text = read_text(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            found = outside_references(line)
            if found:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {', '.join(found)}")
    assert offenders == [], "references to documents outside the repository:\n" + "\n".join(offenders)
