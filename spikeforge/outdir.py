"""Output files and directories: checked writable before any work starts, written all or nothing
(through a temporary folder beside the target, named after the writing process so that one a
killed process left behind is removed by the next run)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from spikeforge.isa import SpikeforgeError

TMP_PREFIX = ".spikeforge-"
_TMP = re.compile(re.escape(TMP_PREFIX) + r"(\d+)-")


def check_writable(out: str, kind: str = "directory") -> None:
    """OUTDIR (or an output file, `kind="file"`) can be written: it is not in the way, and the
    nearest existing folder takes a new entry (a probe folder, removed at once)."""
    target = Path(out)
    if kind == "directory" and target.exists() and not target.is_dir():
        raise SpikeforgeError("exists and is not a directory", out)
    if kind == "file" and target.is_dir():
        raise SpikeforgeError("is a directory", out)
    folder = target if kind == "directory" else target.parent
    folder = next((p for p in [folder, *folder.absolute().parents] if p.exists()), Path("/"))
    if not folder.is_dir():
        raise SpikeforgeError(f"cannot create it: '{folder}' is not a directory", out)
    try:
        os.rmdir(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=folder))
    except OSError as e:
        raise SpikeforgeError(f"cannot write in '{folder}' ({e.strerror})", out) from None


def remove_stale(folder: Path) -> None:
    """Remove the temporary folders and files in `folder` whose writing process is gone."""
    for tmp in folder.glob(TMP_PREFIX + "*"):
        m = _TMP.match(tmp.name)
        if m and not _alive(int(m.group(1))):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def write_all(out: str, files: dict[str, Callable[[Path], object]]) -> None:
    """Write files into OUTDIR all or nothing: each `write(path)` into a temporary folder beside
    OUTDIR, then that folder renamed to OUTDIR (new), or each file moved in (existing)."""
    check_writable(out)
    target = Path(out)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(target.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=target.parent))
    except OSError as e:
        raise SpikeforgeError(f"cannot write ({e.strerror})", out) from None
    try:
        for name, write in files.items():
            write(tmp / name)
        if not target.exists():
            os.rename(tmp, target)  # a new OUTDIR appears whole
            return
        for f in tmp.iterdir():
            os.replace(f, target / f.name)
    except OSError as e:
        raise SpikeforgeError(f"cannot write ({e.strerror})", out) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_file(path: str, write: Callable[[Path], object]) -> None:
    """Write one file atomically: `write(tmp)` beside it, then moved over it."""
    check_writable(path, "file")
    target = Path(path)
    tmp = target.with_name(f"{TMP_PREFIX}{os.getpid()}-{target.name}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(target.parent)
        write(tmp)
        os.replace(tmp, target)
    except OSError as e:
        raise SpikeforgeError(f"cannot write ({e.strerror})", path) from None
    finally:
        tmp.unlink(missing_ok=True)
