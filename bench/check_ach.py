"""check-ach at scale: ``python -m bench.check_ach [--scale PAYMENTS] [--jpm-share 0.25] [--workers 2]``.

Seeds ``--scale`` ACHSENT ACH debits by COPY (``--jpm-share`` subscription debits at JPM, the rest float debits at
Usio; 90 % submitted 10 days ago — past the three-business-day gate — and 10 % today), the JPM ones also in the
sandbox's JPM ledger (COMPLETED; 2 % RETURNED with AC04). Baseline, in the same run and on the same rows: one
``UPDATE … FROM`` that completes every eligible payment plus one ``INSERT … SELECT`` of their outbox rows, in a
transaction that is then rolled back (and the table vacuumed). Then the real thing: ``syncing.check_ach_schedule``
is published to a scheduler worker (queue ``default``) and check-ach workers (queue ``check-ach``, prefork,
``--workers`` processes) run the jobs; timed until every eligible payment is COMPLETED / FAILED with its event.
Target: ≤ 4x the baseline; worker peak RSS < 300 MB (the largest single worker process, sampled from /proc). The
scheduler's worker is stopped once the fan-out has succeeded: the outbox relay's after-commit kicks go to the same
queue, and the relay (measured by ``bench.outbox_relay``) must not compete here; events count once written.
The run is watched through the workers' job log lines (``JobLog``), not by counting rows while it runs; the
exact counts are taken once the clock has stopped, and must match.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from bench.common import (
    Result,
    RssSampler,
    Stack,
    Timer,
    analyze,
    parse_args,
    pg_scalar,
    report,
    server_versions,
    timed_rolled_back,
    wait_for,
)
from bench.seed import copy_payments, make_payment

RETURNED_EVERY = 50  # 2 % of the eligible JPM payments come back RETURNED


def plan(n: int, jpm_share: float):
    """Yield (index, provider, due) for n payments: providers interleaved, every 10th not yet due."""
    jpm_every = round(1 / jpm_share) if jpm_share > 0 else 0
    for index in range(n):
        provider = "jpm" if jpm_every and index % jpm_every == 0 else "usio"
        yield index, provider, index % 10 != 9


def seed(stack: Stack, n: int, jpm_share: float, now: datetime) -> dict:
    old, today = now - timedelta(days=10), now - timedelta(minutes=5)
    jpm_rows, counts = [], {"eligible": 0, "jpm_returned": 0, "jpm": 0}

    def payments():
        for index, provider, due in plan(n, jpm_share):
            payment = make_payment(index, provider=provider, status="ACHSENT", submit_date=old if due else today)
            if provider == "jpm":
                counts["jpm"] += 1
                returned = due and index % (RETURNED_EVERY * 4) == 0
                counts["jpm_returned"] += returned
                jpm_rows.append({"end_to_end_id": payment.confirmation_id,
                                 "status": "RETURNED" if returned else "COMPLETED",
                                 "return_code": "R02" if returned else None})
            counts["eligible"] += due
            yield payment

    with Timer() as t:
        copy_payments(payments())
        for start in range(0, len(jpm_rows), 20_000):
            stack.control("POST", "/_bench/jpm/seed", {"rows": jpm_rows[start:start + 20_000]})
        analyze()
    counts["seed_seconds"] = round(t.seconds, 1)
    return counts


BASELINE_UPDATE = """
UPDATE payments_payment p
   SET payment_status = 'COMPLETED', completion_date = now(), updated_at = now(), version = p.version + 1,
       event_type = CASE p.purpose WHEN 'subscription' THEN 'SUBSCRIPTION_COMPLETED' ELSE 'FLOAT_DEBIT_COMPLETED' END
  FROM (SELECT id FROM payments_payment
         WHERE payment_status IN ('ACHSENT', 'CLEARED') AND payment_type <> 'credit' AND purpose <> 'prenote'
           AND submit_date < %s) due
 WHERE p.id = due.id
"""
BASELINE_INSERT = """
INSERT INTO core_outboxevent (event_id, type, source, subject, aggregate_id, sequence, data, occurred_at, created_at)
SELECT gen_random_uuid(), p.event_type, 'PaymentService', coalesce(p.confirmation_id, p.id::text), p.id::text, 1,
       jsonb_build_object('id', p.id, 'confirmation_id', p.confirmation_id, 'user_id', p.user_id,
                          'purpose', p.purpose, 'payment_method', p.payment_method, 'payment_type', p.payment_type,
                          'payment_provider', p.payment_provider, 'amount', p.amount::text,
                          'payment_status', p.payment_status, 'event_type', p.event_type,
                          'submit_date', p.submit_date, 'completion_date', p.completion_date),
       now(), now()
  FROM payments_payment p
 WHERE p.payment_status = 'COMPLETED' AND p.submit_date < %s
"""


def baseline(gate: datetime) -> tuple[float, int]:
    def work(cursor) -> int:
        cursor.execute(BASELINE_UPDATE, [gate])
        updated = cursor.rowcount
        cursor.execute(BASELINE_INSERT, [gate])
        return updated

    return timed_rolled_back(work, vacuum=("payments_payment", "core_outboxevent"))


def progress() -> tuple[int, int]:
    """The exact counts: payments resolved, events written (full scans: only before and after the timed run)."""
    done = pg_scalar("SELECT count(*) FROM payments_payment WHERE payment_status IN ('COMPLETED', 'FAILED')")
    events = pg_scalar("SELECT count(*) FROM core_outboxevent")
    return done, events


class JobLog:
    """The payments the workers' jobs resolved so far, summed from their ``check-ach job finished`` log lines
    (written after each job's transactions committed), the log read incrementally. Watching the run this way costs
    next to nothing; two ``count(*)`` over a million rows every few seconds took ~40 % of a core from the run."""

    def __init__(self, path):
        self.path, self.offset, self.resolved, self.jobs = path, 0, 0, 0

    def read(self) -> int:
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            chunk = log.read()
        complete = chunk.rfind(b"\n") + 1  # a line still being written waits for the next read
        self.offset += complete
        for line in chunk[:complete].splitlines():
            if b'"check-ach job finished"' in line:
                stats = json.loads(line)["stats"]
                self.resolved += stats["completed"] + stats["failed"]
                self.jobs += 1
        return self.resolved


def main() -> None:
    def extra(parser):
        parser.add_argument("--jpm-share", type=float, default=0.25)
        parser.add_argument("--workers", type=int, default=2, help="check-ach worker processes (prefork)")
        parser.add_argument("--timeout", type=float, default=4 * 3600)

    args = parse_args(__doc__.splitlines()[0], default_scale=1_000_000, extra=extra)
    n = args.scale
    now = datetime.now(UTC)
    with Stack() as stack:
        stack.fresh_database()
        stack.clear_broker()
        stack.start_sandbox()
        counts = seed(stack, n, args.jpm_share, now)
        print(f"seeded {n:,} payments ({counts['jpm']:,} JPM) in {counts['seed_seconds']} s; "
              f"{counts['eligible']:,} past the gate", flush=True)
        base_seconds, base_rows = baseline(now - timedelta(days=5))
        print(f"baseline: {base_rows:,} rows in {base_seconds:.1f} s", flush=True)

        scheduler = stack.start_worker("bench-scheduler", ["default"], concurrency=1)
        workers = stack.start_worker("bench-checkach", ["check-ach"], concurrency=args.workers)
        from syncing.check_ach_jobs import check_ach_schedule_task

        expected_events = counts["eligible"]
        jobs = JobLog(workers.log_path)
        with RssSampler([workers.pid]) as rss, RssSampler([scheduler.pid]) as rss_scheduler, Timer() as t:
            check_ach_schedule_task.apply_async()
            last_report = time.monotonic()

            scheduling = True

            def finished():
                nonlocal last_report, scheduling
                workers.check_alive()
                if scheduling and "check_ach_schedule[" in scheduler.log() and " succeeded in " in scheduler.log():
                    # The fan-out is done. The after-commit relay kicks also go to ``default``: stop this worker so
                    # that no relay competes with check-ach here (bench.outbox_relay measures the relay).
                    scheduler.stop()
                    scheduling = False
                done = jobs.read()
                if time.monotonic() - last_report > 30:
                    last_report = time.monotonic()
                    print(f"  {done:,}/{counts['eligible']:,} resolved in {jobs.jobs:,} jobs, "
                          f"{time.perf_counter() - t.start:.0f} s", flush=True)
                return done >= counts["eligible"]

            wait_for(finished, timeout=args.timeout, what="check-ach to resolve every eligible payment", interval=1)
        done, events = progress()  # exact, after the clock stopped: the figures below are these
        if done < counts["eligible"] or events < expected_events:
            raise RuntimeError(f"the jobs' logs say {jobs.resolved:,} resolved, the database {done:,} payments and "
                               f"{events:,} events of {counts['eligible']:,}")
        failed = pg_scalar("SELECT count(*) FROM payments_payment WHERE payment_status = 'FAILED'")
        changes = pg_scalar("SELECT count(*) FROM payments_paymentstatuschange WHERE source = 'check_ach'")
        dead = pg_scalar("SELECT count(*) FROM core_deadletter")
        versions = server_versions()
    ratio = t.seconds / base_seconds if base_seconds else 0.0
    results = [
        Result("check_ach_seconds", t.seconds, "s", base_seconds, "s (UPDATE … FROM + INSERT … SELECT)", ratio,
               "<= 4x baseline", ratio <= 4,
               {"payments": n, "eligible": counts["eligible"], "jpm": counts["jpm"], "resolved": done,
                "failed": failed, "expected_failed": counts["jpm_returned"], "events": events,
                "status_changes": changes, "dead_letters": dead, "baseline_rows": base_rows,
                "payments_per_second": round(done / t.seconds, 1), "seed_seconds": counts["seed_seconds"],
                "worker_processes": args.workers}),
        Result("check_ach_worker_peak_rss", rss.peak_process_mb, "MB", None, "", None, "< 300 MB",
               rss.peak_process_mb < 300, {"check_ach_workers_total_mb": round(rss.peak_total_mb, 1),
                                           "scheduler_peak_mb": round(rss_scheduler.peak_process_mb, 1)}),
    ]
    report("check_ach", results, scale=n, extra={"versions": versions, "jpm_share": args.jpm_share})


if __name__ == "__main__":
    main()
