"""ETL: a CSV read as a stream -> parse, validate, enrich in parallel -> SQLite and a report.

    python examples/etl_csv.py [--rows 50000]

The CSV is read by a generator (the file never sits in memory). Rows are parsed and
validated in parallel; valid rows are enriched and written to SQLite by a single writer
stage; invalid rows go down a second branch into a report. Both branches run as one graph
through ``Pipeline.wait_for_all_results``.
"""

from __future__ import annotations

import argparse
import csv
import random
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


def enrich(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "country_name": COUNTRIES[row["country"]], "domain": row["email"].split("@")[1]}


class SqliteWriter:
    """The single writer: one connection, rows inserted in order, committed at the end."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("DROP TABLE IF EXISTS sales")
        self.db.execute("CREATE TABLE sales (id INTEGER, email TEXT, country TEXT, amount REAL, domain TEXT)")

    def insert(self, batch: list[dict[str, Any]]) -> int:
        self.db.executemany(
            "INSERT INTO sales VALUES (?, ?, ?, ?, ?)",
            [(r["id"], r["email"], r["country_name"], r["amount"], r["domain"]) for r in batch],
        )
        return len(batch)

    def close(self) -> None:
        self.db.commit()
        self.db.close()


def main(argv: list[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--data", type=Path, default=HERE / "_data" / "sales.csv")
    parser.add_argument("--db", type=Path, default=HERE / "_out" / "sales.sqlite")
    parser.add_argument("--report", type=Path, default=HERE / "_out" / "rejected.csv")
    args = parser.parse_args(argv)
    make_csv(args.data, args.rows)
    args.db.parent.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    parsed = Pipeline(read_rows(args.data)).task(validate, count=2)
    good = (
        parsed.filter(lambda r: not r["errors"], name="valid")
        .task(enrich)
        .batch(500)
        .class_task(SqliteWriter, SqliteWriter.insert, [str(args.db)], close_method=SqliteWriter.close)
    )
    bad = parsed.filter(lambda r: bool(r["errors"]), name="invalid")
    written, rejected = Pipeline.wait_for_all_results([good, bad])
    elapsed = time.perf_counter() - t0

    with args.report.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "errors"])
        for r in rejected:
            w.writerow([r["id"], "; ".join(r["errors"])])
    with sqlite3.connect(args.db) as db:
        (stored,) = db.execute("SELECT COUNT(*) FROM sales").fetchone()
    assert stored == sum(written)
    assert stored + len(rejected) == args.rows, "every row went somewhere"
    print(f"{args.rows:,} rows in {elapsed:.2f} s ({args.rows / elapsed:,.0f} rows/s)")
    print(f"  {stored:,} valid rows -> {args.db}")
    print(f"  {len(rejected):,} rejected rows -> {args.report}")
    return {"stored": stored, "rejected": len(rejected)}


if __name__ == "__main__":
    main()
