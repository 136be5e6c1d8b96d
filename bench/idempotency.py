"""Idempotency overhead: ``python -m bench.idempotency [--scale REQUESTS] [--clients 32]``.

The stack of ``bench.api_submission``. First requests: ``--scale`` payment submissions (pinless and ACH, each with
a new ``Idempotency-Key``: claim, processor call, outcome, stored response). Replays: the same keys and bodies again
(the stored response is replayed: ``Idempotent-Replayed: true``, no processor call). Baseline = the first requests'
throughput. Target: replays ≥ 2x the first requests' requests/s; every replay answers 201 as the original did.
"""

from __future__ import annotations

import uuid

from bench.api_submission import prepare_api, submit_requests
from bench.common import Result, Stack, parse_args, report, server_versions
from bench.loadgen import run_load


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], default_scale=5_000,
                      extra=lambda p: p.add_argument("--clients", type=int, default=32))
    n, clients = args.scale, args.clients
    with Stack() as stack:
        url, key = prepare_api(stack)
        run_load(url, clients=clients, requests=max(200, n // 20),
                 make_request=submit_requests(key, f"warm-{uuid.uuid4().hex[:8]}"), ok={201})
        run = f"idem-{uuid.uuid4().hex[:8]}"
        first = run_load(url, clients=clients, requests=n, make_request=submit_requests(key, run), ok={201})
        replay = run_load(url, clients=clients, requests=n, make_request=submit_requests(key, run), ok={201})
        from payments.models import Payment

        payments = Payment.objects.filter(idempotency_key__startswith=f"{run}-").count()
        versions = server_versions()
    ratio = replay.rps / first.rps if first.rps else 0.0
    results = [
        Result("idempotency_replay_throughput", replay.rps, "req/s", first.rps, "req/s (first requests)", ratio,
               ">= 2x first requests", ratio >= 2 and replay.errors == 0 and payments == n,
               {"first": first.summary(), "replay": replay.summary(), "payments_created": payments,
                "samples": [(s, b.decode(errors="replace")) for s, b in replay.samples + first.samples]}),
        Result("idempotency_replay_p99", replay.p(99), "ms", first.p(99), "ms (first requests p99)"),
    ]
    report("idempotency", results, scale=n, extra={"clients": clients, "versions": versions})


if __name__ == "__main__":
    main()
