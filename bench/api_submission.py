"""API submission throughput: ``python -m bench.api_submission [--scale REQUESTS] [--clients 32]``.

gunicorn (2 workers, gthread x 8 threads: ``config.wsgi``) + PostgreSQL + the sandbox; ``bench.loadgen`` on loopback
submits float pinless and float ACH debits (alternately, 64 users, a fresh ``Idempotency-Key`` each) at 32
concurrent clients. Baseline, in the same run: ``GET /api/v1/payments/{confirmation_id}`` — an authenticated DRF
endpoint doing one indexed SELECT — measured before and after the submissions (their mean is the baseline).
Target: submissions ≥ 35 % of the baseline's requests/s, p99 < 150 ms, zero errors.
"""

from __future__ import annotations

import uuid

from bench.common import Result, Stack, create_api_key, machine, parse_args, report, server_versions
from bench.loadgen import json_body, run_load

USERS = 64
ROUTING = "021000021"
ACCOUNT = "123456781234"  # settles (the sandbox's conventions: 98NN rejects, 99NN returns)


def headers(key: str, **extra: str) -> dict[str, str]:
    return {"X-API-Key": key, "Content-Type": "application/json", "Accept": "application/json", **extra}


def user_id(index: int) -> str:
    return f"bench-user-{index % USERS:03d}"


def prepare_api(stack: Stack) -> tuple[str, str]:
    """Fresh database, sandbox, gunicorn; ``USERS`` users with a debit card and a bank account. (url, key)."""
    stack.fresh_database()
    stack.clear_broker()
    stack.start_sandbox()
    key = create_api_key()
    url = stack.start_api(workers=2, threads=8)

    def setup(i: int):
        uid = user_id(i // 2)
        if i % 2 == 0:
            body = {"masked_card_number": "4242", "card_exp": "122030", "transaction_reference_id": f"tok_c{uid}",
                    "debit_transaction_reference_id": f"tok_d{uid}"}
            return "PUT", f"/api/v1/users/{uid}/debit-card", headers(key), json_body(body)
        body = {"account_number": ACCOUNT, "routing_number": ROUTING}
        return "PUT", f"/api/v1/users/{uid}/bank-accounts/acct-{uid}", headers(key), json_body(body)

    done = run_load(url, clients=8, requests=USERS * 2, make_request=setup, ok={200, 201})
    if done.errors:
        raise RuntimeError(f"seeding users failed: {done.summary()} {done.samples}")
    return url, key


def submission_body(index: int) -> dict:
    uid = user_id(index)
    if index % 2 == 0:
        return {"user_id": uid, "purpose": "float", "payment_method": "pinless", "payment_type": "debit",
                "amount": "12.50"}
    return {"user_id": uid, "purpose": "float", "payment_method": "ach", "payment_type": "debit", "amount": "12.50",
            "account_id": f"acct-{uid}"}


def submit_requests(key: str, run: str):
    def make(index: int):
        return ("POST", "/api/v1/payments", headers(key, **{"Idempotency-Key": f"{run}-{index}"}),
                json_body(submission_body(index)))
    return make


def detail_requests(key: str, confirmation_ids: list[str]):
    def make(index: int):
        return "GET", f"/api/v1/payments/{confirmation_ids[index % len(confirmation_ids)]}", headers(key), None
    return make


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], default_scale=10_000,
                      extra=lambda p: p.add_argument("--clients", type=int, default=32))
    n, clients = args.scale, args.clients
    with Stack() as stack:
        url, key = prepare_api(stack)
        warm = run_load(url, clients=clients, requests=max(200, n // 20),
                        make_request=submit_requests(key, f"warm-{uuid.uuid4().hex[:8]}"), ok={201})
        from payments.models import Payment

        ids = list(Payment.objects.exclude(confirmation_id=None).values_list("confirmation_id", flat=True)[:500])
        run_load(url, clients=clients, requests=max(200, n // 20), make_request=detail_requests(key, ids))
        base1 = run_load(url, clients=clients, requests=n, make_request=detail_requests(key, ids))
        subs = run_load(url, clients=clients, requests=n,
                        make_request=submit_requests(key, f"run-{uuid.uuid4().hex[:8]}"), ok={201})
        base2 = run_load(url, clients=clients, requests=n, make_request=detail_requests(key, ids))
        versions = server_versions()
    baseline_rps = (base1.rps + base2.rps) / 2
    ratio = subs.rps / baseline_rps if baseline_rps else 0.0
    errors = subs.errors + base1.errors + base2.errors
    results = [
        Result("api_submission_throughput", subs.rps, "req/s", baseline_rps, "req/s (GET payment, 1 indexed SELECT)",
               ratio, ">= 0.35x baseline", ratio >= 0.35,
               {"submissions": subs.summary(), "baseline_before": base1.summary(), "baseline_after": base2.summary(),
                "warmup": warm.summary(), "samples": [(s, b.decode(errors="replace")) for s, b in subs.samples]}),
        Result("api_submission_p99", subs.p(99), "ms", base1.p(99), "ms (baseline p99)", None, "< 150 ms",
               subs.p(99) < 150),
        Result("api_submission_errors", float(errors), "errors", None, "", None, "0", errors == 0),
    ]
    report("api_submission", results, scale=n, extra={"clients": clients, "versions": versions,
                                                      "machine": machine()})


if __name__ == "__main__":
    main()
