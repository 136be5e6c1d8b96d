"""Outbox relay: ``python -m bench.outbox_relay [--scale EVENTS] [--relays 2]``.

Seeds ``--scale`` pending outbox events by COPY, one per payment, as the status machine writes them (the payments
and their status-change rows too): 70 % ``SUBSCRIPTION_COMPLETED`` (no in-process consumer), 25 %
``FLOAT_DEBIT_COMPLETED`` (the Transaction Service notifier records a notification), 5 % ``FLOAT_DEBIT_RETURNED``
(the notifier, and the blocklist consumer: half of them R02, which blocks the user). Then ``--relays`` relay
processes (``manage.py run_job outbox_relay``: ``outbox_relay_run``, what the ``core.outbox_relay`` task runs, in
batches of ``OUTBOX_BATCH_SIZE`` taken with ``SKIP LOCKED``) run until every event is published and in the pull
feed (``OutboxFeedEntry``). Dedicated processes, not a ``default`` worker: the Transaction Service sends that the
notifier asks for go to ``default`` too, and at ~20 HTTP posts/s they starve the relay (seen in a full-size run).
Baseline, same run and rows: one ``UPDATE`` marking every event published plus one ``INSERT … SELECT`` into the
feed, rolled back (no consumers). Target: ≥ 5,000 events/s.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from bench.common import (
    PYTHON,
    Process,
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
from bench.seed import copy_changes, copy_events, copy_payments, event_row, make_payment


def kind_of(index: int) -> str:
    slot = index % 20
    if slot == 0:
        return "returned"
    if slot <= 5:
        return "float"
    return "subscription"


def seed(n: int, now: datetime) -> dict:
    submitted = now - timedelta(days=10)
    payments, changes, events = [], [], []
    counts = {"subscription": 0, "float": 0, "returned": 0, "blocking": 0}
    blocked_users: set[str] = set()  # users repeat every 50,000 payments; a blocked user is not blocked again
    for index in range(n):
        kind = kind_of(index)
        counts[kind] += 1
        purpose = "subscription" if kind == "subscription" else "float"
        status = "FAILED" if kind == "returned" else "COMPLETED"
        payment = make_payment(index, provider="usio", status=status, purpose=purpose, submit_date=submitted)
        blocking = kind == "returned" and index % 40 == 0
        counts["blocking"] += blocking
        if blocking:
            blocked_users.add(payment.user_id)
        code = ("R02" if blocking else "R01") if kind == "returned" else None
        event_type = {"subscription": "SUBSCRIPTION_COMPLETED", "float": "FLOAT_DEBIT_COMPLETED",
                      "returned": "FLOAT_DEBIT_RETURNED"}[kind]
        at = now - timedelta(minutes=1)
        payments.append(payment)
        changes.append((payment.id, "ACHSENT", status, "check_ach" if status == "COMPLETED" else "usio_sync",
                        "bench", "bench", event_type, at))
        events.append(event_row(payment, type=event_type, sequence=1, at=at,
                                data=payment.render(status, completion=at if status == "COMPLETED" else None,
                                                    event_type=event_type, return_code=code)))
    with Timer() as t:
        copy_payments(iter(payments))
        copy_changes(iter(changes))
        copy_events(iter(events))
        analyze()
    counts["seed_seconds"] = round(t.seconds, 1)
    counts["blocked_users"] = len(blocked_users)
    return counts


def baseline() -> float:
    def work(cursor):
        cursor.execute("UPDATE core_outboxevent SET published_at = now() WHERE published_at IS NULL")
        cursor.execute("INSERT INTO core_outboxfeedentry (event_id, published_at) "
                       "SELECT position, now() FROM core_outboxevent ORDER BY position")

    return timed_rolled_back(work, vacuum=("core_outboxevent",))[0]


def progress() -> dict:
    return {
        "published": pg_scalar("SELECT count(*) FROM core_outboxevent WHERE published_at IS NOT NULL"),
        "feed": pg_scalar("SELECT count(*) FROM core_outboxfeedentry"),
        "ts_notifications": pg_scalar("SELECT count(*) FROM payments_transactionservicenotification"),
        "consumptions": pg_scalar("SELECT count(*) FROM core_outboxconsumption"),
    }


def main() -> None:
    def extra(parser):
        parser.add_argument("--relays", type=int, default=2, help="relay worker processes (prefork)")
        parser.add_argument("--timeout", type=float, default=2 * 3600)

    args = parse_args(__doc__.splitlines()[0], default_scale=500_000, extra=extra)
    n = args.scale
    now = datetime.now(UTC)
    with Stack() as stack:
        stack.fresh_database()
        stack.clear_broker()
        stack.start_sandbox()
        counts = seed(n, now)
        print(f"seeded {n:,} events in {counts['seed_seconds']} s", flush=True)
        base_seconds = baseline()
        print(f"baseline: {base_seconds:.1f} s", flush=True)
        def relay(index: int) -> Process:
            proc = Process(f"relay-{index}", [PYTHON, "manage.py", "run_job", "outbox_relay"], stack.env())
            stack.processes.append(proc)
            return proc

        relays = [relay(i) for i in range(args.relays)]
        with RssSampler([r.pid for r in relays]) as rss, Timer() as t:
            last = time.monotonic()
            first = None

            def finished():
                # One count every half second (the four counts of ``progress`` every 30 s only): the poller shares
                # the two cores with the relays and PostgreSQL.
                nonlocal last, first
                if time.monotonic() - last > 30:
                    last = time.monotonic()
                    print(f"  {progress()} after {time.perf_counter() - t.start:.0f} s", flush=True)
                fed = pg_scalar("SELECT count(*) FROM core_outboxfeedentry")
                if fed and first is None:
                    first = (time.perf_counter() - t.start, fed)
                    print(f"  first batch committed after {first[0]:.1f} s ({fed} events)", flush=True)
                if fed >= n:
                    return True
                for index, proc in enumerate(relays):
                    if proc.proc.poll() is not None:  # a run ends when a batch finds nothing (others hold the rest)
                        if proc.proc.returncode != 0:
                            raise RuntimeError(f"relay exited with {proc.proc.returncode}:\n{proc.log()[-3000:]}")
                        relays[index] = relay(len(stack.processes))
                        rss.pgids.append(relays[index].pid)
                return False

            wait_for(finished, timeout=args.timeout, what="the relay to publish every event", interval=0.5)
        state = progress()
        blocks = pg_scalar("SELECT count(*) FROM blocklist_blocklistrecord")
        dead = pg_scalar("SELECT count(*) FROM core_deadletter")
        versions = server_versions()
    rate = n / t.seconds
    # After the relays' start-up (imports, connections) and their first batch: what long-running relays sustain.
    steady = (n - first[1]) / (t.seconds - first[0]) if first and t.seconds > first[0] else None
    base_rate = n / base_seconds if base_seconds else 0.0
    expected_ts = counts["float"] + counts["returned"]
    results = [
        Result("outbox_relay_throughput", rate, "events/s", base_rate, "events/s (set-based UPDATE + INSERT, "
               "no consumers)", rate / base_rate if base_rate else None, ">= 5,000 events/s", rate >= 5000,
               {"events": n, "seconds": round(t.seconds, 1), **state, "expected_ts_notifications": expected_ts,
                "blocklist_records": blocks, "expected_blocklist_records": counts["blocked_users"],
                "dead_letters": dead, "seed_seconds": counts["seed_seconds"], "relays": args.relays,
                "first_batch_seconds": round(first[0], 1) if first else None,
                "events_per_second_after_first_batch": round(steady) if steady else None}),
        Result("outbox_relay_worker_peak_rss", rss.peak_process_mb, "MB"),
    ]
    if steady:
        print(f"after the first batch ({first[0]:.1f} s): {steady:,.0f} events/s", flush=True)
    report("outbox_relay", results, scale=n, extra={"versions": versions})


if __name__ == "__main__":
    main()
