"""The results store, OUTDIR/results.sqlite: table `points`, one row per design point keyed by
the hash of its configuration (settings, parameters, status, error, flattened report totals),
and table `sweep`, the settings and parameters the directory's points share. Only the parent
process writes, one committed transaction per finished point."""

from __future__ import annotations

import csv
import fcntl
import json
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from spikeforge.isa import SpikeforgeError
from spikeforge.outdir import check_writable, write_file

DB = "results.sqlite"
LOCK = ".lock"
SCHEMA = """
CREATE TABLE IF NOT EXISTS points (hash TEXT PRIMARY KEY, status TEXT NOT NULL, error TEXT);
CREATE TABLE IF NOT EXISTS sweep (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def writer_lock(outdir: Path):
    """Hold OUTDIR's writer lock (an flock on OUTDIR/.lock, released when the process ends, even
    by SIGKILL); a second writer gets an error at once."""
    with open(outdir / LOCK, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SpikeforgeError("another `spikeforge sweep` is writing to this directory: wait for it to finish, "
                                  "or use another OUTDIR", str(outdir)) from None
        yield


class Store:
    """An open results store; `add` inserts one row (adding missing columns) in one transaction.
    `readonly` opens an existing store for reading, its integrity and schema checked first."""

    def __init__(self, outdir: str | Path, readonly: bool = False):
        path = Path(outdir) / DB
        try:
            if readonly:
                self.db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
                _check(self.db, path)
            else:
                self.db = sqlite3.connect(path, isolation_level=None)  # transactions are explicit
                if path.stat().st_size:
                    _check(self.db, path)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.executescript(SCHEMA)
            self.columns = [r[1] for r in self.db.execute("PRAGMA table_info(points)")]
        except sqlite3.Error as e:
            raise SpikeforgeError(f"cannot open the results store ({e})", str(path)) from None

    def close(self) -> None:
        self.db.close()

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM sweep")}

    def claim(self, settings: dict[str, Any], files: dict[str, str], where: str) -> None:
        """Record the sweep's settings, or check that they are those of the points already stored:
        a directory may gain points (models, values, samples), not change what its points mean."""
        old = self.meta()
        stored = old.get("settings", settings)
        for key, value in settings.items():
            if key not in stored:
                raise SpikeforgeError(f"holds a sweep of an older spikeforge, without the setting {key!r}: use "
                                      "another OUTDIR", where)
            if stored[key] != value:
                raise SpikeforgeError(f"holds a sweep with {key} = {stored[key]!r}, this spec has "
                                      f"{value!r}: use another OUTDIR (a spec may only add points to it)", where)
        for path, digest in files.items():
            if old.get("files", {}).get(path, digest) != digest:
                raise SpikeforgeError(f"'{path}' changed since the sweep's points were stored: use another OUTDIR",
                                      where)
        self.db.execute("BEGIN")
        for key, value in (("settings", settings), ("files", {**old.get("files", {}), **files})):
            self.db.execute("INSERT OR REPLACE INTO sweep VALUES (?, ?)", (key, json.dumps(value, sort_keys=True)))
        self.db.execute("COMMIT")

    def done(self) -> set[str]:
        return {h for (h,) in self.db.execute("SELECT hash FROM points")}

    def add(self, row: dict[str, Any]) -> None:
        """Insert one finished point (a new hash) atomically."""
        self.db.execute("BEGIN")
        try:
            for name in row:
                if name not in self.columns:
                    self.db.execute(f"ALTER TABLE points ADD COLUMN {_q(name)}")
                    self.columns.append(name)
            names = ", ".join(_q(n) for n in row)
            self.db.execute(f"INSERT INTO points ({names}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")


def _check(db: sqlite3.Connection, path: Path) -> None:
    """A results store: an intact SQLite database with the tables `points` and `sweep`."""
    try:
        ok = db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        tables = {name: {r[1] for r in db.execute(f"PRAGMA table_info({name})")} for name in ("points", "sweep")}
    except sqlite3.DatabaseError as e:
        raise SpikeforgeError(f"not a results store: {e}", str(path)) from None
    if not ok:
        raise SpikeforgeError("the results store is corrupt (SQLite quick_check failed)", str(path))
    if not {"hash", "status", "error"} <= tables["points"] or tables["sweep"] != {"key", "value"}:
        raise SpikeforgeError("not a spikeforge results store (no `points` and `sweep` tables)", str(path))


def read(outdir: str | Path) -> tuple[dict[str, Any], list[str], list[dict[str, Any]]]:
    """The sweep's meta (settings, files), columns and rows, ordered by model and parameters."""
    path = Path(outdir) / DB
    if not path.is_file():
        raise SpikeforgeError(f"no {DB} here: not a sweep output directory (spikeforge sweep SPEC -o OUTDIR)", str(outdir))
    store = Store(outdir, readonly=True)
    try:
        meta = store.meta()
        order = [c for c in ["model", *meta.get("settings", {}).get("params", []), "hash"] if c in store.columns]
        cur = store.db.execute(f"SELECT * FROM points ORDER BY {', '.join(_q(c) for c in order)}")
        columns = [d[0] for d in cur.description]
        rows = [dict(zip(columns, r)) for r in cur]
    except (sqlite3.Error, ValueError) as e:
        raise SpikeforgeError(f"cannot read the results store ({e})", str(path)) from None
    finally:
        store.close()
    return meta, columns, rows


def export_csv(outdir: str | Path, file: str | Path) -> int:
    """Write the sweep's table as CSV (header, one line per point); returns the number of points."""
    check_writable(str(file), "file")
    _, columns, rows = read(outdir)

    def write(path: Path) -> None:
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(columns)
            w.writerows([r[c] for c in columns] for r in rows)

    write_file(str(file), write)
    return len(rows)
