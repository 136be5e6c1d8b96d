"""Usio sync at scale: ``python -m bench.usio_sync [--scale TRANSACTIONS]``.

One ``transactions`` window (the last 35 minutes) of the float-debit merchant account holding ``--scale``
transactions in the sandbox's Usio ledger: 94 % settled ACH debits (ACHSENT payments before the three-business-day
gate: staged, unchanged), 5 % returned ACH debits (→ FAILED R01, ``FLOAT_DEBIT_RETURNED``), 1 % charged-back
pinless debits (COMPLETED → CHARGED_BACK). The matching payments are seeded by COPY. The job
(``syncing.usio_sync_window``) runs in a Celery worker (queue ``usio-sync``); timed from publishing it until the
worker logs the job's success (every staging row upserted and every payment updated, with its event: the exact
counts are checked once the clock has stopped). Baseline, same run, same rows: COPY of the same
staging rows plus one set-based ``UPDATE … FROM`` of the payments they change, in a transaction rolled back
afterwards. Target: ≤ 4x the baseline.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bench.common import (
    Result,
    RssSampler,
    Stack,
    Timer,
    analyze,
    copy_rows,
    parse_args,
    pg_scalar,
    report,
    server_versions,
    timed_rolled_back,
    wait_for,
)
from bench.seed import FLOAT_DEBIT, copy_payments, make_payment

ACCOUNT = "float_debit"


def kind_of(index: int) -> str:
    if index % 100 == 0:
        return "chargeback"
    if index % 20 == 1:
        return "returned"
    return "settled"


def seed(stack: Stack, n: int, now: datetime) -> tuple[list[dict], dict]:
    submitted = now - timedelta(minutes=20)
    ledger, counts = [], {"returned": 0, "chargeback": 0}

    def payments():
        for index in range(n):
            kind = kind_of(index)
            card = kind == "chargeback"
            payment = make_payment(index, provider="usio", status="COMPLETED" if card else "ACHSENT",
                                   method="pinless" if card else "ach", submit_date=submitted)
            counts[kind] = counts.get(kind, 0) + 1
            ledger.append({
                "confirmation": payment.confirmation_id, "kind": "card" if card else "ach",
                "transaction_type": "debit", "amount": str(payment.amount), "reference": payment.id.hex,
                "created_at": (submitted + timedelta(milliseconds=index % 60_000)).isoformat(),
                "returns_at": (submitted + timedelta(minutes=5)).isoformat() if kind == "returned" else None,
                "return_code": "R01" if kind == "returned" else None,
                "chargeback_at": (submitted + timedelta(minutes=6)).isoformat() if card else None,
                "chargeback_code": "4837" if card else None,
            })
            yield payment

    with Timer() as t:
        copy_payments(payments())
        for start in range(0, n, 20_000):
            stack.control("POST", "/_bench/usio/seed", {"merchant_id": FLOAT_DEBIT,
                                                        "rows": ledger[start:start + 20_000]})
        analyze()
    counts["seed_seconds"] = round(t.seconds, 1)
    return ledger, counts


STAGING_COLUMNS = ["confirmation", "record_type", "kind", "merchant_account", "amount", "status", "return_code",
                   "reference", "account_mask", "transaction_date", "event_date", "raw", "first_seen_at",
                   "updated_at"]
BASELINE_UPDATE = """
UPDATE payments_payment p
   SET payment_status = CASE WHEN s.status = 'returned' THEN 'FAILED' ELSE 'CHARGED_BACK' END,
       return_code = nullif(s.return_code, ''), return_info = CASE WHEN s.status = 'returned' THEN 'RETURNED' END,
       return_date = CASE WHEN s.status = 'returned' THEN s.event_date END,
       event_type = CASE WHEN s.status = 'returned' THEN 'FLOAT_DEBIT_RETURNED' ELSE 'FLOAT_DEBIT_CHARGED_BACK' END,
       version = p.version + 1, updated_at = now()
  FROM syncing_usiotransaction s
 WHERE s.record_type = 'transaction' AND s.status IN ('returned', 'chargeback') AND p.confirmation_id = s.confirmation
"""


def baseline(ledger: list[dict]) -> float:
    def rows():
        now = datetime.now(UTC)
        for tx in ledger:
            status = "chargeback" if tx["chargeback_at"] else "returned" if tx["returns_at"] else "settled"
            yield (tx["confirmation"], "transaction", tx["transaction_type"], FLOAT_DEBIT, Decimal(tx["amount"]),
                   status, tx["return_code"] or tx["chargeback_code"] or "", tx["reference"], "****1234",
                   tx["created_at"], tx["returns_at"] or tx["chargeback_at"], json.dumps(tx), now, now)

    def work(cursor):
        copy_rows("syncing_usiotransaction", STAGING_COLUMNS, rows())
        cursor.execute(BASELINE_UPDATE)

    return timed_rolled_back(work, vacuum=("payments_payment", "syncing_usiotransaction"))[0]


def progress() -> dict:
    return {
        "staged": pg_scalar("SELECT count(*) FROM syncing_usiotransaction"),
        "failed": pg_scalar("SELECT count(*) FROM payments_payment WHERE payment_status = 'FAILED'"),
        "charged_back": pg_scalar("SELECT count(*) FROM payments_payment WHERE payment_status = 'CHARGED_BACK'"),
        "events": pg_scalar("SELECT count(*) FROM core_outboxevent"),
    }


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], default_scale=200_000,
                      extra=lambda p: p.add_argument("--timeout", type=float, default=3 * 3600))
    n = args.scale
    now = datetime.now(UTC)
    with Stack() as stack:
        stack.fresh_database()
        stack.clear_broker()
        stack.start_sandbox()
        ledger, counts = seed(stack, n, now)
        print(f"seeded {n:,} transactions in {counts['seed_seconds']} s", flush=True)
        base_seconds = baseline(ledger)
        del ledger
        print(f"baseline: {base_seconds:.1f} s", flush=True)
        worker = stack.start_worker("bench-usio", ["usio-sync"], concurrency=1)
        from syncing.usio_sync_jobs import usio_sync_window_task

        expected = {"staged": n, "failed": counts["returned"], "charged_back": counts["chargeback"],
                    "events": counts["returned"] + counts["chargeback"]}
        start, end = now - timedelta(minutes=35), now + timedelta(seconds=1)
        with RssSampler([worker.pid]) as rss, Timer() as t:
            job = usio_sync_window_task.apply_async(
                args=[ACCOUNT, "transactions", start.isoformat(), end.isoformat()])

            def finished():
                # The worker's log says when the job ended (its transactions committed); counting rows twice a
                # second instead took a sizeable share of the cores from the run being timed.
                worker.check_alive()
                log = worker.log()
                if f"[{job.id}] raised unexpected" in log:
                    raise RuntimeError(f"the usio sync job failed:\n{log[-3000:]}")
                return f"[{job.id}] succeeded in " in log

            wait_for(finished, timeout=args.timeout, what="the usio sync window", interval=0.1)
        state = progress()  # exact, after the clock stopped: the figures below are these
        if any(state[key] < value for key, value in expected.items()):
            raise RuntimeError(f"the job ended but the database holds {state}, expected {expected}")
        dead = pg_scalar("SELECT count(*) FROM core_deadletter")
        versions = server_versions()
    ratio = t.seconds / base_seconds if base_seconds else 0.0
    results = [
        Result("usio_sync_seconds", t.seconds, "s", base_seconds, "s (COPY + one UPDATE … FROM)", ratio,
               "<= 4x baseline", ratio <= 4,
               {"transactions": n, **{f"expected_{k}": v for k, v in expected.items()}, **state,
                "dead_letters": dead, "seed_seconds": counts["seed_seconds"],
                "transactions_per_second": round(n / t.seconds, 1)}),
        Result("usio_sync_worker_peak_rss", rss.peak_process_mb, "MB"),
    ]
    report("usio_sync", results, scale=n, extra={"versions": versions})


if __name__ == "__main__":
    main()
