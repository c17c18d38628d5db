"""ETL: a CSV read as a stream -> parse and validate in parallel -> SQLite, resumable.

    python examples/etl_csv.py [--rows 50000] [--start-over] [--die-after BATCHES]

The CSV is read by a generator (the file never sits in memory). Rows are parsed and
validated in parallel, gathered into batches of 500, and a single writer stage stores each
batch in SQLite in one transaction: valid rows in ``sales``, invalid ones (with what is
wrong) in ``rejected``.

The run is resumable: it records in ``sales.progress`` which rows are finished. Kill it at
any moment (``--die-after 20`` kills it with SIGKILL after 20 batches, as an OOM killer
would) and run it again: it goes on from where it stopped. Rows that were in flight at the
kill run twice; the sink makes that harmless, which is the recipe for exactly-once: each
batch is one transaction, and rows are keyed by their ``id`` (``INSERT OR REPLACE``), so a
batch written again replaces itself. Run it a third time and it says it has finished.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from olympipe import Pipeline

HERE = Path(__file__).parent
COUNTRIES = {"FR": "France", "DE": "Germany", "JP": "Japan", "BR": "Brazil"}


def make_csv(path: Path, rows: int) -> None:
    rnd = random.Random(4)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "email", "country", "amount"])
        for i in range(rows):
            email = f"user{i}@example.com" if rnd.random() > 0.05 else f"user{i}-at-example"
            country = rnd.choice([*COUNTRIES, "XX"]) if rnd.random() > 0.02 else ""
            amount = f"{rnd.uniform(1, 500):.2f}" if rnd.random() > 0.03 else "n/a"
            w.writerow([i, email, country, amount])


def read_rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="") as f:
        yield from csv.DictReader(f)


def row_id(row: dict[str, str]) -> str:
    """What identifies a row across runs (the resume key)."""
    return row["id"]


def validate(row: dict[str, str]) -> dict[str, Any]:
    """Parse a row; ``errors`` lists what is wrong with it."""
    errors = []
    if "@" not in row["email"]:
        errors.append("bad email")
    if row["country"] not in COUNTRIES:
        errors.append(f"unknown country {row['country']!r}")
    try:
        amount = float(row["amount"])
    except ValueError:
        amount = 0.0
        errors.append(f"bad amount {row['amount']!r}")
    return {
        "id": int(row["id"]),
        "email": row["email"],
        "country": row["country"],
        "amount": amount,
        "errors": errors,
    }


class SqliteWriter:
    """The single writer: one connection, one transaction per batch, rows keyed by id."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS sales"
            " (id INTEGER PRIMARY KEY, email TEXT, country TEXT, amount REAL, domain TEXT)"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS rejected (id INTEGER PRIMARY KEY, errors TEXT)")

    def write(self, batch: list[dict[str, Any]]) -> int:
        good = [r for r in batch if not r["errors"]]
        bad = [r for r in batch if r["errors"]]
        with self.db:  # one transaction: the whole batch is stored, or none of it
            self.db.executemany(
                "INSERT OR REPLACE INTO sales VALUES (?, ?, ?, ?, ?)",
                [
                    (r["id"], r["email"], COUNTRIES[r["country"]], r["amount"], r["email"].split("@")[1])
                    for r in good
                ],
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO rejected VALUES (?, ?)",
                [(r["id"], "; ".join(r["errors"])) for r in bad],
            )
        return len(batch)

    def close(self) -> None:
        self.db.close()


def main(argv: list[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--data", type=Path, default=HERE / "_data" / "sales.csv")
    parser.add_argument("--db", type=Path, default=HERE / "_out" / "sales.sqlite")
    parser.add_argument("--report", type=Path, default=HERE / "_out" / "rejected.csv")
    parser.add_argument("--start-over", action="store_true", help="forget the progress and the tables")
    parser.add_argument("--die-after", type=int, default=None, help="SIGKILL the run after this many batches")
    args = parser.parse_args(argv)
    progress = args.db.with_suffix(".progress")
    if args.start_over:
        for path in (args.db, progress):
            path.unlink(missing_ok=True)
    if args.start_over or not args.data.exists():
        make_csv(args.data, args.rows)
    args.db.parent.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    run = (
        Pipeline(read_rows(args.data), resume=progress, resume_key=row_id)
        .task(validate, count=2)
        .batch(500)
        .class_task(SqliteWriter, SqliteWriter.write, [str(args.db)], close_method=SqliteWriter.close)
    )
    # A batch is finished once the caller has taken its count: the progress file moves on.
    for batches, _written in enumerate(run, 1):
        if batches == args.die_after:
            os.kill(os.getpid(), signal.SIGKILL)  # the whole run dies, as under the OOM killer
    elapsed = time.perf_counter() - t0
    read = run.stats().source_items

    with sqlite3.connect(args.db) as db:
        (stored,) = db.execute("SELECT COUNT(*) FROM sales").fetchone()
        rejected = db.execute("SELECT id, errors FROM rejected ORDER BY id").fetchall()
    with args.report.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "errors"])
        w.writerows(rejected)
    print(f"{read:,} rows read by this run in {elapsed:.2f} s")
    print(f"  {stored:,} valid rows -> {args.db}")
    print(f"  {len(rejected):,} rejected rows -> {args.report}")
    return {"read": read, "stored": stored, "rejected": len(rejected)}


if __name__ == "__main__":
    main()
