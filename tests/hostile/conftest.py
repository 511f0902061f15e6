"""The hostile-input harness: run the CLI in process inside a guarded workspace.

Every hostile case builds its files under a workspace, runs ``segvalue`` in process and
checks the exit code, the message, that no traceback reached the user, and that nothing
outside the places the command may write changed: a checksum of the whole surrounding
tree (content, file type and mode of every entry) is taken before and after.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from segvalue.cli.main import cli


def tree_checksum(root: Path, *, skip: Iterable[Path] = ()) -> dict[str, str]:
    """Relative path -> digest of every file, folder and link under ``root``.

    Entries under any of ``skip`` (the places a command is allowed to write) are left out.
    """
    skipped = [Path(p).resolve() for p in skip]
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if (here / d).resolve() not in skipped)
        for name in sorted(dirs + files):
            path = here / name
            if path.resolve() in skipped:
                continue
            info = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[rel] = f"file {stat.S_IMODE(info.st_mode):o} {digest}"
            elif stat.S_ISLNK(info.st_mode):
                found[rel] = f"link {os.readlink(path)}"
            else:
                found[rel] = f"dir {stat.S_IMODE(info.st_mode):o}"
    return found


@dataclass
class Outcome:
    """What one CLI invocation did."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        """Both streams, for message assertions."""
        return self.out + self.err


@dataclass
class Workspace:
    """A folder of inputs for one hostile case, and a guarded way to run the CLI in it."""

    root: Path
    capsys: pytest.CaptureFixture[str]

    def write(self, files: dict[str, str | bytes]) -> None:
        """Create files (and their folders) relative to the workspace."""
        for name, body in files.items():
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(body, bytes):
                path.write_bytes(body)
            else:
                path.write_text(body, encoding="utf-8")

    def run(self, argv: list[str], *, may_write: Iterable[str | Path] = ()) -> Outcome:
        """Run ``segvalue argv`` (``{ws}`` expands to the workspace) and guard the tree.

        ``may_write`` names the paths (relative to the workspace) the command may create or
        change; everything else under the workspace's parent must be byte-identical after.
        """
        args = [a.replace("{ws}", str(self.root)) for a in argv]
        allowed = [self.root / str(p).replace("{ws}", str(self.root)) for p in may_write]
        guarded = self.root.parent
        before = tree_checksum(guarded, skip=allowed)
        self.capsys.readouterr()
        code = cli(args)
        captured = self.capsys.readouterr()
        after = tree_checksum(guarded, skip=allowed)
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        assert not changed, f"segvalue {' '.join(argv)} changed {changed}"
        assert "Traceback" not in captured.out + captured.err
        return Outcome(code, captured.out, captured.err)


@pytest.fixture()
def ws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Workspace:
    """An empty workspace under ``tmp_path`` (its siblings are guarded too)."""
    root = tmp_path / "ws"
    root.mkdir()
    # A neighbour the command must never touch, whatever it is pointed at.
    (tmp_path / "neighbour").mkdir()
    (tmp_path / "neighbour" / "keep.txt").write_text("not segvalue's\n")
    return Workspace(root, capsys)
