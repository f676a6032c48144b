#!/usr/bin/python3
"""Enqueue jobrunner jobs from a Python application with psycopg2 (Debian: python3-psycopg2).

What it shows (docs/job-model.md, "Producers in other languages"):
  1. a job enqueued in the application's own transaction, with the application's row: both
     are committed together, or neither is;
  2. a rolled-back transaction enqueues nothing;
  3. many jobs in one statement (jr_enqueue_many);
  4. a job's status and result (jr_job_status), optionally waiting until it has finished.

The database URL comes from DATABASE_URL; connect as a role that is a member of
jobrunner_producer (GRANT jobrunner_producer TO your_app_role) and may create the example's
table "signups" in its own schema. Prints one JSON object with the ids, for the test suite
(tests/host/producers_test.cpp) and for you.

Usage: DATABASE_URL=postgresql://... python3 enqueue.py [--wait SECONDS] [--count N]
"""
import argparse
import json
import os
import sys
import time

import psycopg2
from psycopg2.extras import Json

KIND = "echo"  # the demo plugin's kind: it returns its payload as the result
SOURCE = "python"


class Rollback(Exception):
    """Raised to abandon a transaction on purpose."""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wait", type=float, default=0,
                        help="seconds to wait for the first job to finish (default: do not wait)")
    parser.add_argument("--count", type=int, default=100, help="jobs in the bulk enqueue")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL")
    if not url:
        sys.exit("enqueue.py: set DATABASE_URL to the runner's database")

    conn = psycopg2.connect(url)
    # "with conn" is one transaction: committed when the block ends, rolled back on an exception.
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS signups ("
                    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                    " email text NOT NULL, source text NOT NULL, welcome_job bigint)")

    # 1. The application's row and its job, in one transaction.
    with conn, conn.cursor() as cur:
        cur.execute("INSERT INTO signups (email, source) VALUES (%s, %s) RETURNING id",
                    ("ada@example.com", SOURCE))
        signup_id = cur.fetchone()[0]
        cur.execute("SELECT jr_enqueue(%s, %s, %s)",
                    (KIND, Json({"signup_id": signup_id, "email": "ada@example.com",
                                 "source": SOURCE}),
                     Json({"max_attempts": 5, "timeout_seconds": 30})))
        job_id = cur.fetchone()[0]
        cur.execute("UPDATE signups SET welcome_job = %s WHERE id = %s", (job_id, signup_id))

    # 2. The same, abandoned: neither the row nor the job exists afterwards.
    rolled_back_job_id = None
    try:
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO signups (email, source) VALUES (%s, %s) RETURNING id",
                        ("rolled-back@example.com", SOURCE))
            cur.execute("SELECT jr_enqueue(%s, %s, %s)",
                        (KIND, Json({"signup_id": cur.fetchone()[0], "source": SOURCE}),
                         Json({"max_attempts": 5})))
            rolled_back_job_id = cur.fetchone()[0]
            raise Rollback()
    except Rollback:
        pass

    # 3. Many jobs, one statement: one id per payload, in the payloads' order.
    payloads = [{"n": n, "source": SOURCE} for n in range(args.count)]
    with conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM jr_enqueue_many(%s, %s, %s) AS id",
                    (KIND, Json(payloads), Json({"priority": 10, "max_attempts": 3})))
        bulk_job_ids = [row[0] for row in cur.fetchall()]

    # 4. The status of the first job (a dict: psycopg2 decodes jsonb), NULL -> None if unknown.
    conn.autocommit = True  # each poll sees the newest committed state
    deadline = time.monotonic() + args.wait
    with conn.cursor() as cur:
        while True:
            cur.execute("SELECT jr_job_status(%s)", (job_id,))
            status = cur.fetchone()[0]
            finished = status is not None and status["state"] in (
                "completed", "discarded", "cancelled")
            if finished or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
    conn.close()

    print(json.dumps({"source": SOURCE, "signup_id": signup_id, "job_id": job_id,
                      "rolled_back_job_id": rolled_back_job_id,
                      "bulk_job_ids": bulk_job_ids, "status": status}))


if __name__ == "__main__":
    main()
