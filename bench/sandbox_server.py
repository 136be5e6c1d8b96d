"""``python -m bench.sandbox_server --port P [--threads 2]``: the project's sandbox (``sandbox.app.SandboxApp``,
unchanged) plus two bench-only control routes that fill its ledgers in bulk:

- ``POST /_bench/usio/seed`` ``{"merchant_id", "rows": [{confirmation, kind, transaction_type, amount, reference,
  created_at, returns_at?, return_code?, chargeback_at?, chargeback_code?}]}``: Usio ledger entries as if submitted
  through the API (a benchmark needs 200,000 of them; submitting each over HTTP would measure the sandbox);
- ``POST /_bench/jpm/seed`` ``{"rows": [{end_to_end_id, status, return_code?}]}``: JPM payments already in their
  final state (``COMPLETED`` or ``RETURNED``).

The JPM fake brings every payment of its ledger up to date on each request (``_progress``: a sort and a scan of the
whole ledger per call, O(N) — fine for tests, quadratic for 450,000 status look-ups). Seeded payments are final, so
the bench server makes that scan a no-op once it has seeded any; the answers are the same.

Served by granian (its HTTP/1.1 in Rust; one process, as the ledgers live in memory; the app on ``--threads``
threads; connections kept alive), not by ``python -m sandbox --keep-alive``'s gunicorn and gevent, whose HTTP
handling is Python: the fake stands in for a processor's servers, which are not on the service's machine, and in
check-ach's JPM share it was the one serial step, busier than either worker (~0.8 ms of CPU per status look-up).
Granian serves the same answers for ~0.3 ms (docs/performance.md, session 10). The keep-alive tests keep gunicorn:
they need its idle timeout and ``--port 0``.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from datetime import datetime
from decimal import Decimal

from granian import Granian
from granian.constants import HTTPModes, Interfaces
from granian.log import LogLevels
from werkzeug.wrappers import Request, Response

from sandbox.__main__ import build_app
from sandbox.__main__ import parse_args as sandbox_args
from sandbox.app import SandboxApp
from sandbox.conventions import AccountOutcome
from sandbox.jpm.wire import PaymentRecord


def _json(data, status=200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class BenchSandbox:
    def __init__(self, app: SandboxApp):
        self.app = app

    def __call__(self, environ, start_response):
        request = Request(environ)
        if request.path.startswith("/_bench/"):
            response = self.seed(request)
            return response(environ, start_response)
        return self.app(environ, start_response)

    def seed(self, request: Request) -> Response:
        body = json.loads(request.get_data() or b"{}")
        services = self.app.ctx.services
        if request.path == "/_bench/usio/seed":
            usio = services["usio"]
            merchant = body["merchant_id"]
            with usio.lock:
                for row in body["rows"]:
                    usio.ledger[row["confirmation"]] = {
                        "confirmation": row["confirmation"], "merchant_id": merchant,
                        "operation": "SubmitACHPayment" if row["kind"] == "ach" else "SubmitTokenPayment",
                        "kind": row["kind"], "transaction_type": row["transaction_type"],
                        "amount": Decimal(row["amount"]), "reference": row.get("reference"),
                        "account_code1": row.get("reference"), "description": None,
                        "account_mask": "****1234" if row["kind"] == "ach" else "4242",
                        "account_type": "Checking" if row["kind"] == "ach" else "Card", "trans_code": None,
                        "same_day_ach": False, "standard_entry_code": None,
                        "created_at": _when(row["created_at"]), "returns_at": _when(row.get("returns_at")),
                        "return_code": row.get("return_code"), "chargeback_at": _when(row.get("chargeback_at")),
                        "chargeback_code": row.get("chargeback_code"), "refunded": Decimal("0.00"),
                        "original_confirmation": None,
                    }
                size = len(usio.ledger)
            return _json({"ledger": size})
        if request.path == "/_bench/jpm/seed":
            jpm = services["jpm"]
            now = self.app.ctx.clock.now()
            with jpm._mutex:
                for row in body["rows"]:
                    code = row.get("return_code")
                    outcome = AccountOutcome("return", code) if code else AccountOutcome("settle")
                    record = PaymentRecord(
                        seq=next(jpm._seq), end_to_end_id=row["end_to_end_id"], firm_root_id=str(uuid.uuid4()),
                        transfer_type="DEBIT", amount=Decimal("10.00"), prenote=False,
                        requested_execution_date=now.date(), counterparty_name="Bench", counterparty_last4="1234",
                        company_account_id="000000010962009", outcome=outcome, created_at=now, canonical="",
                        status=row["status"], history=[(row["status"], now)],
                    )
                    if row["status"] == "RETURNED":
                        record.exceptions = [record.reason("Returned by the receiving bank")]
                    jpm.payments[record.end_to_end_id] = record
                jpm._progress = lambda: None  # every seeded payment is final: nothing left to progress
                size = len(jpm.payments)
            return _json({"ledger": size})
        return _json({"error": "not_found"}, 404)


def app() -> BenchSandbox:
    """Granian's app factory, called in its worker process: the sandbox configured by the ``SANDBOX_*`` environment
    (``main`` sets it) with the bench routes."""
    return BenchSandbox(build_app(sandbox_args([])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads running the app (a slow answer holds one; fewer contend less for the GIL)")
    ours = parser.parse_args()
    os.environ.update(SANDBOX_HOST=ours.host, SANDBOX_PORT=str(ours.port))
    server = Granian("bench.sandbox_server:app", factory=True, address=ours.host, port=ours.port,
                     interface=Interfaces.WSGI, http=HTTPModes.http1, websockets=False, workers=1,
                     blocking_threads=ours.threads, backlog=2048, log_level=LogLevels.warning)
    server.on_startup(lambda: print(f"SANDBOX_READY http://{ours.host}:{ours.port}", flush=True))
    server.serve()


if __name__ == "__main__":
    main()
