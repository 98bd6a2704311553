"""The results store, OUTDIR/results.sqlite: table `points`, one row per design point keyed by
the hash of its configuration (settings, parameters, status, error, flattened report totals),
and table `sweep`, the settings and parameters the directory's points share. Only the parent
process writes, one committed transaction per finished point."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path
from typing import Any

from isa import SpikeforgeError

DB = "results.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS points (hash TEXT PRIMARY KEY, status TEXT NOT NULL, error TEXT);
CREATE TABLE IF NOT EXISTS sweep (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Store:
    """An open results store; `add` inserts one row (adding missing columns) in one transaction."""

    def __init__(self, outdir: str | Path):
        self.db = sqlite3.connect(Path(outdir) / DB, isolation_level=None)  # transactions are explicit
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        self.columns = [r[1] for r in self.db.execute("PRAGMA table_info(points)")]

    def close(self) -> None:
        self.db.close()

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM sweep")}

    def claim(self, settings: dict[str, Any], files: dict[str, str], where: str) -> None:
        """Record the sweep's settings, or check that they are those of the points already stored:
        a directory may gain points (models, values, samples), not change what its points mean."""
        old = self.meta()
        for key, value in settings.items():
            if old.get("settings", settings)[key] != value:
                raise SpikeforgeError(f"holds a sweep with {key} = {old['settings'][key]!r}, this spec has "
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


def read(outdir: str | Path) -> tuple[dict[str, Any], list[str], list[dict[str, Any]]]:
    """The sweep's meta (settings, files), columns and rows, ordered by model and parameters."""
    path = Path(outdir) / DB
    if not path.is_file():
        raise SpikeforgeError(f"no {DB} here: not a sweep output directory (spikeforge sweep SPEC -o OUTDIR)", str(outdir))
    store = Store(outdir)
    try:
        meta = store.meta()
        order = [c for c in ["model", *meta.get("settings", {}).get("params", []), "hash"] if c in store.columns]
        cur = store.db.execute(f"SELECT * FROM points ORDER BY {', '.join(_q(c) for c in order)}")
        columns = [d[0] for d in cur.description]
        rows = [dict(zip(columns, r)) for r in cur]
    finally:
        store.close()
    return meta, columns, rows


def export_csv(outdir: str | Path, file: str | Path) -> int:
    """Write the sweep's table as CSV (header, one line per point); returns the number of points."""
    _, columns, rows = read(outdir)
    try:
        with open(file, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(columns)
            w.writerows([r[c] for c in columns] for r in rows)
    except OSError as e:
        raise SpikeforgeError(f"cannot write ({e.strerror})", str(file)) from None
    return len(rows)
