#!/usr/bin/env python3
"""What reading the audit log would cost if it were stored as one SQLite row per batch of records (a JSON array of
arrays, expanded by a view over json_each) instead of one row per record, as today.

A batch store makes the writer's work per record several times smaller (scripts/bench-sqlite-insert-cost.sh); this
measures the other side: the reports the admin API, `gateway report` and the spend rebuild at startup run. Both
layouts get the same records (26 columns, as AuditWriter writes them) in a temporary directory; each query runs
once on each and the time per stored record is printed. Uses the system's SQLite (Python's sqlite3 module), which is
the one the gateway links on Debian 12.

Usage: python3 scripts/bench/audit-batch-read-cost.py [--records N] [--batch B]
"""
import argparse
import json
import os
import sqlite3
import tempfile
import time

COLUMNS = ("request_id key_id key_name groups tags client_address start_ns end_ns total_latency_us "
           "upstream_latency_us overhead_us ttfb_us requested_model deployment attempts status error_code "
           "prompt_tokens completion_tokens cost_micro_usd streamed bytes_in bytes_out request_body response_body "
           "attempt_log").split()

QUERIES = [
    ("spend by key (startup rebuild)", "SELECT key_id, SUM(cost_micro_usd) FROM audit WHERE start_ns >= 0 GROUP BY key_id"),
    ("count", "SELECT COUNT(*) FROM audit"),
    ("logs, newest 100, every column", "SELECT * FROM audit ORDER BY start_ns DESC, id DESC LIMIT 100"),
]


def record(i):
    start = 1_750_000_000_000_000_000 + i * 20_000
    return [f"gw-{i:016x}", f"key_{i % 50}", f"name{i % 50}", "team-a" if i % 3 else "team-b", "", "127.0.0.1:5000",
            start, start + 500_000, 500, 480, 20, 300, "gpt-4o-mini", "mock/gpt-4o-mini", 1, 200, None, 75, 16, 21,
            0, 300, 812, None, None, None]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    n, batch = args.records, args.batch
    with tempfile.TemporaryDirectory() as tmp:
        rows = sqlite3.connect(os.path.join(tmp, "rows.db"))
        rows.execute(f"CREATE TABLE audit (id INTEGER PRIMARY KEY, {', '.join(COLUMNS)})")
        rows.executemany(f"INSERT INTO audit ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                         (record(i) for i in range(n)))
        rows.commit()

        batches = sqlite3.connect(os.path.join(tmp, "batches.db"))
        batches.execute("CREATE TABLE audit_batches (id INTEGER PRIMARY KEY, min_start_ns INTEGER, "
                        "max_start_ns INTEGER, records TEXT)")
        for first in range(0, n, batch):
            items = [record(i) for i in range(first, min(n, first + batch))]
            batches.execute("INSERT INTO audit_batches (min_start_ns, max_start_ns, records) VALUES (?, ?, ?)",
                            (items[0][6], items[-1][6], json.dumps(items, separators=(",", ":"))))
        columns = ", ".join(f"j.value->>{index} AS {name}" for index, name in enumerate(COLUMNS))
        batches.execute(f"CREATE VIEW audit AS SELECT (b.id << 16) + j.key AS id, {columns} "
                        "FROM audit_batches b, json_each(b.records) j")
        batches.commit()

        print(f"SQLite {sqlite3.sqlite_version}, {n} records, {batch} per batch row: µs per stored record")
        print(f"{'query':34s} {'row per record':>15s} {'row per batch':>15s}")
        for label, sql in QUERIES:
            figures = []
            for db in (rows, batches):
                start = time.perf_counter()
                db.execute(sql).fetchall()
                figures.append((time.perf_counter() - start) * 1e6 / n)
            print(f"{label:34s} {figures[0]:15.2f} {figures[1]:15.2f}")


if __name__ == "__main__":
    main()
