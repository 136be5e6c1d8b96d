"""Issue 9: the broker and the database go away under a running system, and nothing is lost or half-written.

1. Redis (the private ``redis_server``, nothing on disk) is killed and restarted in the middle of a stream of
   payments and JPM callbacks. The API keeps answering (the outbox row and the stored webhook commit in
   PostgreSQL; the broker kick after commit is best-effort), gunicorn and the worker reconnect by themselves, and
   the work whose messages vanished with Redis is done by the scheduled jobs meant for it (outbox relay, JPM
   webhook sweeper, prenote submitter, stuck-payment reconciler), published here as beat would.
2. PostgreSQL (through ``pg_proxy``) is cut under the API while idle and during a burst of submissions: every
   request answers 503 in the error format, nothing is half-written, the API recovers by itself, and a payment
   whose processor call went through before the cut is resolved once, without a second charge.
3. A worker loses its database in the middle of a JPM webhook job: the job retries and completes after the
   restore; its cut transaction left no row; nothing is dead-lettered.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from django.db import connection
from django.utils import timezone

from core.models import DeadLetter, IdempotencyKey, OutboxConsumption, OutboxEvent, OutboxFeedEntry
from core.outbox_relay import outbox_relay_task
from core.signatures import hmac_signature
from payments.models import Payment, PaymentStatusChange
from payments.prenote_jobs import process_prenotes_task
from payments.tasks import reconcile_processing_task
from syncing.jpm_webhook_jobs import sweep_jpm_webhooks_task
from syncing.models import JpmWebhookMessage
from tests.integration.stack import broker_connection, publish, wait_for
from tests.sandbox_fixtures import WEBHOOK_SECRET

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

HTTP_TIMEOUT = 60  # a request answered later than this counts as hung
WAIT = 90.0
ACCOUNT = "739146285017"  # settles (sandbox conventions: no 98nn/99nn suffix)
ROUTING = "026009593"


# --- helpers --------------------------------------------------------------------------------------------------------
class Api:
    """HTTP to the gunicorn under test, as a service client."""

    def __init__(self, url: str, api_key: str):
        self.url = url
        self.headers = {"X-API-Key": api_key}

    def post(self, path: str, body: dict, *, key: str | None = None) -> requests.Response:
        headers = dict(self.headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        return requests.post(f"{self.url}{path}", json=body, headers=headers, timeout=HTTP_TIMEOUT)

    def get(self, path: str) -> requests.Response:
        return requests.get(f"{self.url}{path}", headers=self.headers, timeout=HTTP_TIMEOUT)

    def pay(self, body: dict, key: str | None = None) -> requests.Response:
        return self.post("/api/v1/payments", body, key=key or f"key-{uuid.uuid4()}")

    def webhook(self, *callbacks: dict) -> requests.Response:
        raw = json.dumps({"callbacks": list(callbacks)}).encode()
        signature = hmac_signature(secret=WEBHOOK_SECRET, body=raw, timestamp=int(time.time()))
        return requests.post(f"{self.url}/webhooks/jpm", data=raw, timeout=HTTP_TIMEOUT,
                             headers={"Content-Type": "application/json", "X-JPM-Signature": signature})

    def readyz(self) -> requests.Response:
        return requests.get(f"{self.url}/readyz", timeout=HTTP_TIMEOUT)


def pinless(user_id: str, amount: str = "12.50") -> dict:
    return {"user_id": user_id, "purpose": "float", "payment_method": "pinless", "payment_type": "debit",
            "amount": amount}


def jpm_ach(user_id: str, account_id: str, amount: str = "30.00") -> dict:
    return {"user_id": user_id, "purpose": "subscription", "payment_method": "ach", "payment_type": "debit",
            "amount": amount, "account_id": account_id}


def cleared(reference: str) -> dict:
    return {"endToEndId": reference, "firmRootId": "FR-" + reference[:8], "createDateTime": "2030-01-02T15:00:00Z",
            "paymentStatus": "CLEARED", "exceptions": []}


def assert_error(response: requests.Response, status: int, code: str) -> dict:
    """The project's error format with this status and code."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    return body["error"]


def charges(sandbox) -> dict[str, int]:
    """Money-moving processor requests the sandbox received, per our reference (lookups and tokens excluded)."""
    counts: dict[str, int] = {}
    for call in sandbox.requests():
        body = call["body"] or {}
        if call["operation"] in ("usio.SubmitTokenPayment",):
            reference = body.get("AdditionalSearch")
        elif call["operation"] == "jpm.payments" and call["method"] == "POST":
            body = body.get("jws", body)
            reference = ((body.get("payments") or {}).get("paymentIdentifiers") or {}).get("endToEndId")
        else:
            continue
        counts[reference] = counts.get(reference, 0) + 1
    return counts


def rows_of(payment_id) -> list[tuple]:
    return list(PaymentStatusChange.objects.filter(payment_id=payment_id).order_by("id")
                .values_list("from_status", "to_status"))


def events_of(payment_id) -> list[str]:
    return list(OutboxEvent.objects.filter(aggregate_id=str(payment_id)).order_by("position")
                .values_list("type", flat=True))


def table_counts() -> dict[str, int]:
    return {
        "payments": Payment.objects.count(),
        "status_changes": PaymentStatusChange.objects.count(),
        "events": OutboxEvent.objects.count(),
        "idempotency_keys": IdempotencyKey.objects.count(),
        "webhook_messages": JpmWebhookMessage.objects.count(),
        "dead_letters": DeadLetter.objects.count(),
    }


# --- 1. Redis restarted mid-run ---------------------------------------------------------------------------------------
class Stream(threading.Thread):
    """A client submitting without pause: a pinless debit, then a JPM ACH debit and its CLEARED callback, per user in
    turn. Records every answer with the moment it was sent; stops when told to."""

    def __init__(self, api: Api, users: list[str]):
        super().__init__(daemon=True)
        self.api, self.users = api, users
        self.stop = threading.Event()
        self.answers: list[tuple[str, float, float, int, dict]] = []  # (what, sent, answered, status, body)
        self.error: BaseException | None = None

    def _record(self, what: str, call, *args) -> dict:
        sent = time.monotonic()
        response = call(*args)
        self.answers.append((what, sent, time.monotonic(), response.status_code, response.json()))
        return response.json()

    def run(self) -> None:
        try:
            turn = 0
            while not self.stop.is_set():
                user = self.users[turn % len(self.users)]
                amount = f"{10 + turn}.{turn % 100:02d}"
                self._record("pinless", self.api.pay, pinless(user, amount))
                ach = self._record("ach", self.api.pay, jpm_ach(user, f"acc-{user}", amount))
                if ach.get("confirmation_id"):
                    self._record("webhook", self.api.webhook, cleared(ach["confirmation_id"]))
                turn += 1
        except BaseException as exc:  # reported by the test
            self.error = exc

    def count(self) -> int:
        return len(self.answers)


def assert_all_answered(answers: list) -> None:
    """Every request of a stream succeeded: payments 201 with their status, callbacks 200 stored once."""
    expected = {"pinless": (201, "COMPLETED"), "ach": (201, "ACHSENT"), "webhook": (200, None)}
    for what, _sent, _answered, status, body in answers:
        assert status == expected[what][0], (what, status, body)
        if what == "webhook":
            assert body == {"received": 1, "duplicate": False}, body
        else:
            assert body["payment_status"] == expected[what][1], body


def test_redis_restart_mid_run_loses_no_job(sandbox, redis_server, start_api, start_worker, make_api_key,
                                            bank_account, debit_card):
    users = [f"redis-u{i}" for i in range(3)]
    for user in users:
        debit_card(user_id=user)
        bank_account(user_id=user, account_id=f"acc-{user}", account_number=ACCOUNT, routing_number=ROUTING)
    worker = start_worker(["default", "jpm-webhooks", "prenotes"], purge_first=True,
                          # The schedules' thresholds at zero, so that one run (published below as beat would)
                          # picks up everything whose message vanished: no need to wait 10 or 5 minutes.
                          JPM_WEBHOOK_SWEEP_MINUTES="0", PROCESSING_STUCK_MINUTES="0")
    # Kicks pause 1 s (not 30) after a failed one, so that the API's own kicks after the restart are seen here.
    api_server = start_api(OUTBOX_KICK_PAUSE_SECONDS="1")
    api = Api(api_server.url, make_api_key("service"))

    def prenote(user: str) -> None:
        response = api.post("/api/v1/prenotes", {"user_id": user, "account_id": f"acc-{user}", "provider": "jpm"})
        assert response.status_code == 202, response.text

    def run_stream(until) -> Stream:
        stream = Stream(api, users)
        stream.start()
        try:
            wait_for(lambda: until(stream) or stream.error, timeout=WAIT, what="the stream to flow")
        finally:
            stream.stop.set()
            stream.join(HTTP_TIMEOUT * 3)
        assert stream.error is None, repr(stream.error)
        return stream

    # A stream of payments and callbacks; Redis dies in the middle of it, with whatever it held (kicks waiting for
    # their countdown, queued webhook jobs, the messages of running jobs), and stays down for a few requests. The
    # API goes on answering: the payment, its history and outbox event, the stored webhook, the prenote request
    # and the idempotency record commit in PostgreSQL; the enqueue after commit fails (kombu gives up after
    # CELERY_BROKER_CONNECTION_TIMEOUT), is logged, and is left to the schedules.
    marks: dict[str, float] = {}

    def kill_midway(stream: Stream) -> bool:
        if "killed" not in marks and stream.count() >= 6:
            prenote(users[0])
            # When Redis dies the worker holds a delivered, unacknowledged message waiting for its countdown (as
            # it does after every kick): here a relay run due in a minute.
            with broker_connection(redis_server.url) as conn:
                held = outbox_relay_task.apply_async(countdown=60, connection=conn)
            wait_for(lambda: f"[{held.id}] received" in worker.log(), timeout=WAIT, what="the worker to hold it")
            redis_server.kill()
            marks["killed"], marks["seen"] = time.monotonic(), stream.count()
            prenote(users[1])
            not_ready = assert_error(api.readyz(), 503, "not_ready")
            assert not_ready["details"] == {"checks": {"database": "ok", "broker": "unavailable"}}
        return "killed" in marks and stream.count() >= marks["seen"] + 4

    first = run_stream(kill_midway)
    assert_all_answered(first.answers)  # during the outage too
    # Redis comes back empty. Neither gunicorn nor the worker is restarted.
    redis_server.start()
    assert worker.proc.poll() is None and api_server.proc.poll() is None
    during = [a for a in first.answers if a[2] > marks["killed"]]
    stranded = {"events": OutboxEvent.objects.filter(published_at__isnull=True).count(),
                "messages": JpmWebhookMessage.objects.exclude(status="processed").count(),
                "prenotes": 2 - Payment.objects.filter(purpose="prenote").count()}
    # At least everything written during the outage never reached a broker.
    assert stranded["events"] >= sum(1 for a in during if a[0] == "pinless"), stranded
    assert stranded["messages"] >= sum(1 for a in during if a[0] == "webhook") >= 1, stranded
    assert stranded["prenotes"] >= 1, stranded

    # The schedules do it, published as beat publishes them: outbox relay, webhook sweeper, prenote submitter,
    # stuck-payment reconciler; the worker runs them once it has reconnected by itself.
    for task in (outbox_relay_task, sweep_jpm_webhooks_task, process_prenotes_task, reconcile_processing_task):
        publish(redis_server.url, task, [])
    wait_for(lambda: not JpmWebhookMessage.objects.exclude(status="processed").exists()
             and Payment.objects.filter(purpose="prenote", payment_status="ACHSENT").count() == 2
             and not OutboxEvent.objects.filter(published_at__isnull=True).exists(),
             timeout=WAIT, what="the scheduled jobs to finish what the outage stranded")

    # gunicorn's producers reconnected by themselves too: after the restart, the API's own kicks run the jobs.
    second = run_stream(lambda stream: stream.count() >= 6)
    assert_all_answered(second.answers)
    prenote(users[2])
    last_pinless = next(a for a in reversed(second.answers) if a[0] == "pinless")[4]["id"]
    last_ach = next(a for a in reversed(second.answers) if a[0] == "ach")[4]["confirmation_id"]
    # "nothing unpublished" is read last: read first, it could pass just before the last event was written.
    wait_for(lambda: OutboxEvent.objects.filter(aggregate_id=last_pinless).exists()
             and JpmWebhookMessage.objects.filter(status="processed", body__contains=last_ach).exists()
             and Payment.objects.filter(purpose="prenote", payment_status="ACHSENT").count() == 3
             and OutboxEvent.objects.filter(type="PRENOTE_SUBMITTED").count() == 3
             and not OutboxEvent.objects.filter(published_at__isnull=True).exists(),
             timeout=WAIT, what="the jobs the API enqueued after the restart")
    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()
    assert worker.proc.poll() is None and api_server.proc.poll() is None  # never restarted

    answers = first.answers + second.answers
    slowest = max(answered - sent for _, sent, answered, _, _ in answers)

    # Exact counts. Pinless: PROCESSING → COMPLETED, one FLOAT_DEBIT_COMPLETED, one charge.
    paid = charges(sandbox)
    pinless_ids = [a[4]["id"] for a in answers if a[0] == "pinless"]
    ach_refs = [a[4]["confirmation_id"] for a in answers if a[0] == "ach"]
    webhooks = sum(1 for a in answers if a[0] == "webhook")
    assert webhooks == len(ach_refs)
    for payment_id in pinless_ids:
        payment = Payment.objects.get(pk=payment_id)
        assert payment.payment_status == "COMPLETED"
        assert rows_of(payment_id) == [(None, "PROCESSING"), ("PROCESSING", "COMPLETED")]
        assert events_of(payment_id) == ["FLOAT_DEBIT_COMPLETED"]
        assert paid[payment.reference] == 1
    # JPM ACH: PROCESSING → ACHSENT → CLEARED (webhook), one SUBSCRIPTION_CLEARED, one payment request.
    for reference in ach_refs:
        payment = Payment.objects.get(confirmation_id=reference)
        assert payment.payment_status == "CLEARED"
        assert rows_of(payment.pk) == [(None, "PROCESSING"), ("PROCESSING", "ACHSENT"), ("ACHSENT", "CLEARED")]
        assert events_of(payment.pk) == ["SUBSCRIPTION_CLEARED"]
        assert paid[reference] == 1
    # Prenotes (before, during, after): submitted once each, one PRENOTE_SUBMITTED each.
    prenotes = list(Payment.objects.filter(purpose="prenote").order_by("created_at"))
    assert sorted(p.user_id for p in prenotes) == users
    for payment in prenotes:
        assert payment.payment_status == "ACHSENT"
        assert events_of(payment.pk) == ["PRENOTE_SUBMITTED"]
        assert paid[payment.reference] == 1
    assert len(paid) == len(pinless_ids) + len(ach_refs) + 3  # no other money moved
    assert Payment.objects.count() == len(paid)
    # Every webhook message processed, each by exactly one job start.
    messages = list(JpmWebhookMessage.objects.values_list("status", "attempts", "callbacks"))
    assert messages == [("processed", 1, 1)] * webhooks, messages
    # Every event published exactly once; no consumer failing; nothing dead-lettered.
    events = OutboxEvent.objects.count()
    assert events == len(pinless_ids) + len(ach_refs) + 3
    assert OutboxFeedEntry.objects.count() == events
    assert OutboxFeedEntry.objects.values("event_id").distinct().count() == events
    assert not OutboxConsumption.objects.exclude(status="done").exists()
    assert DeadLetter.objects.count() == 0
    # Every submission's idempotency record completed.
    assert not IdempotencyKey.objects.exclude(status="completed").exists()
    print(f"\nredis stream: {len(pinless_ids)} pinless, {len(ach_refs)} ACH, {webhooks} callbacks, {len(during)} "
          f"requests answered during the outage, slowest {slowest:.2f}s; stranded {stranded}")


# --- 2. PostgreSQL unavailable under the API --------------------------------------------------------------------------
def concurrently(call, n: int) -> list[int]:
    """``n`` calls at once (so that gunicorn serves them on different threads): their status codes."""
    with ThreadPoolExecutor(max_workers=n) as pool:
        return sorted(response.status_code for response in pool.map(lambda _: call(), range(n)))


def _assert_unavailable(response: requests.Response) -> None:
    assert_error(response, 503, "service_unavailable")


def test_database_outage_answers_503_leaves_no_partial_rows_and_recovers(
        sandbox, pg_proxy, proxied_database_url, start_api, start_worker, make_api_key, debit_card, bank_account):
    users = [f"pg-u{i}" for i in range(6)]
    for user in users:
        debit_card(user_id=user)
    bank_account(user_id=users[0], account_id="acc-pg", account_number=ACCOUNT, routing_number=ROUTING)
    # The reconciler's worker reaches PostgreSQL directly; only the API goes through the proxy. Its processor
    # calls may take 10 s (the burst below holds them 3 s at the sandbox, inside the window of the cut).
    reconciler = start_worker(["default"], purge_first=True, PROCESSING_STUCK_MINUTES="0")
    api_server = start_api(database=proxied_database_url, USIO_READ_TIMEOUT="10")
    api = Api(api_server.url, make_api_key("service"))
    # Every gunicorn thread (2 workers x 8) holds a persistent connection (DB_CONN_MAX_AGE) when the cut comes.
    assert concurrently(api.readyz, 16) == [200] * 16
    warm = api.pay(pinless(users[0], "5.00"))
    assert warm.status_code == 201, warm.text
    webhook_ref = Payment.objects.get(pk=warm.json()["id"]).reference  # any 32-hex reference will do below

    def outage_requests(tag: str) -> list[float]:
        """Every kind of request during the outage: 503 in the error format, answered well within the timeout."""
        elapsed = []
        for call in (lambda: api.pay(pinless(users[1], "6.00"), key=f"idle-{tag}"),
                     lambda: api.get(f"/api/v1/payments/{warm.json()['id']}"),
                     lambda: api.get(f"/api/v1/users/{users[0]}/payments"),
                     lambda: api.webhook(cleared(webhook_ref))):
            started = time.monotonic()
            _assert_unavailable(call())
            elapsed.append(time.monotonic() - started)
        started = time.monotonic()
        not_ready = assert_error(api.readyz(), 503, "not_ready")
        assert not_ready["details"] == {"checks": {"database": "unavailable", "broker": "ok"}}
        elapsed.append(time.monotonic() - started)
        return elapsed

    # Idle: the pooled connections die under gunicorn's threads; nothing is written by any request.
    before = table_counts()
    pg_proxy.cut()
    idle_elapsed = outage_requests("idle")
    assert table_counts() == before
    pg_proxy.restore()
    # Recovery by itself: the very first requests after the restore succeed (CONN_HEALTH_CHECKS replaces a dead
    # pooled connection at the start of a request), on every gunicorn thread.
    recovered = concurrently(api.readyz, 16)
    assert recovered == [200] * 16
    retried = api.pay(pinless(users[1], "6.00"), key="idle-idle")  # the key the outage refused is free
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers, retried.text

    # A burst in flight: every submission has committed step 1 (payment PROCESSING, key claimed) and waits at
    # the processor (5 s) when the database goes away; the processor call goes through, step 3 cannot be written.
    burst = users[2:]
    sandbox.fault("usio.SubmitTokenPayment", "slow", count=len(burst), delay=5.0)
    keys = {user: f"burst-{user}" for user in burst}
    answers: dict[str, requests.Response] = {}

    def submit(user: str) -> None:
        answers[user] = api.pay(pinless(user, "7.00"), key=keys[user])

    threads = [threading.Thread(target=submit, args=(user,)) for user in burst]
    for thread in threads:
        thread.start()
    # Every request has taken its "slow" fault: it is at the processor, which holds it 5 s before answering.
    wait_for(lambda: not sandbox.control("GET", "faults")["faults"], timeout=WAIT, interval=0.01,
             what="the burst to reach the processor")
    pg_proxy.cut()
    burst_started = time.monotonic()
    for thread in threads:
        thread.join(HTTP_TIMEOUT + 5)
        assert not thread.is_alive(), "a request hung past its timeout"
    burst_elapsed = time.monotonic() - burst_started
    for user in burst:
        _assert_unavailable(answers[user])
    idle_elapsed += outage_requests("burst")
    # Money moved once per burst payment (the call went through before the cut)...
    burst_payments = {p.user_id: p for p in Payment.objects.filter(user_id__in=burst)}
    assert len(burst_payments) == len(burst)
    paid = charges(sandbox)
    assert [paid[burst_payments[user].reference] for user in burst] == [1] * len(burst)
    # ...and what step 1 committed is whole: the payment, its first history row, the key in progress linked to it;
    # no event (submission writes none until its outcome).
    for user in burst:
        payment = burst_payments[user]
        assert payment.payment_status == "PROCESSING"
        assert rows_of(payment.pk) == [(None, "PROCESSING")]
        assert events_of(payment.pk) == []
        record = IdempotencyKey.objects.get(key=keys[user])
        assert (record.status, record.resource_id) == ("in_progress", str(payment.pk))

    pg_proxy.restore()
    assert api.readyz().status_code == 200  # the first request after the restore
    # The client retries with the same key at once: 409 with when to retry (the first request's lease).
    early = assert_error(api.pay(pinless(burst[0], "7.00"), key=keys[burst[0]]), 409, "idempotency_in_progress")
    assert 1 <= early["details"]["retry_after_seconds"] <= 60
    # The stuck-payment reconciler (beat, every 15 min) asks the processor by our reference: COMPLETED, once.
    publish(reconciler.broker_url, reconcile_processing_task, [])
    wait_for(lambda: Payment.objects.filter(user_id__in=burst, payment_status="COMPLETED").count() == len(burst),
             timeout=WAIT, what="the reconciler to resolve the burst")
    # A minute later (the lease, 60 s, has run out: moved here instead of waited for) the client's retry with the
    # same key and body gets the payment as it now is — 201 COMPLETED, the same payment — and stores it.
    IdempotencyKey.objects.filter(key__in=keys.values()).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    for user in burst:
        for _attempt in range(2):  # the recovery, then a plain replay of the stored answer
            response = api.pay(pinless(user, "7.00"), key=keys[user])
            assert response.status_code == 201, response.text
            assert response.headers.get("Idempotent-Replayed") == "true"
            assert response.json()["id"] == str(burst_payments[user].pk)
            assert response.json()["payment_status"] == "COMPLETED"

    # Final: every payment whole — history, event, completed key — and charged exactly once.
    paid = charges(sandbox)
    payments = list(Payment.objects.filter(purpose="float"))
    assert len(payments) == 2 + len(burst)  # warm-up, the retried idle request, the burst: nothing else
    for payment in payments:
        assert payment.payment_status == "COMPLETED"
        assert rows_of(payment.pk) == [(None, "PROCESSING"), ("PROCESSING", "COMPLETED")]
        assert events_of(payment.pk) == ["FLOAT_DEBIT_COMPLETED"]
        assert IdempotencyKey.objects.get(resource_id=str(payment.pk)).status == "completed"
        assert paid[payment.reference] == 1
    assert len(paid) == len(payments)
    assert not IdempotencyKey.objects.exclude(status="completed").exists()
    assert JpmWebhookMessage.objects.count() == 0  # the webhooks of the outage stored nothing
    assert DeadLetter.objects.count() == 0
    assert api_server.proc.poll() is None  # never restarted
    print(f"\noutage request latency max {max(idle_elapsed):.2f}s; burst answered {burst_elapsed:.2f}s after cut")


# --- 3. A worker's database goes away mid-job ------------------------------------------------------------------------
SLEEP_TRIGGER = """
CREATE FUNCTION outages_slow_cleared() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.to_status = 'CLEARED' THEN PERFORM pg_sleep(3); END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER outages_slow_cleared BEFORE INSERT ON payments_paymentstatuschange
    FOR EACH ROW EXECUTE FUNCTION outages_slow_cleared();
"""
DROP_TRIGGER = """
DROP TRIGGER IF EXISTS outages_slow_cleared ON payments_paymentstatuschange;
DROP FUNCTION IF EXISTS outages_slow_cleared();
"""


def _sleeping_in_trigger() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND datname = "
                       "current_database() AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0] == 1


def test_worker_losing_its_database_mid_job_retries_and_completes(
        sandbox, pg_proxy, proxied_database_url, start_api, start_worker, make_api_key, bank_account):
    bank_account(user_id="pgw-user", account_id="acc-pgw", account_number=ACCOUNT, routing_number=ROUTING)
    api = Api(start_api().url, make_api_key("service"))
    # The webhook worker reaches PostgreSQL through the proxy; its retries back off 1, 2, 4 … s (production: 5 s
    # base), so an outage of a few seconds spends a few of the queue's 10 attempts, not all of them.
    worker = start_worker(["jpm-webhooks"], purge_first=True, database=proxied_database_url,
                          CELERY_RETRY_BACKOFF_SECONDS="1")
    submitted = api.pay(jpm_ach("pgw-user", "acc-pgw"))
    assert submitted.status_code == 201 and submitted.json()["payment_status"] == "ACHSENT", submitted.text
    payment_id, reference = submitted.json()["id"], submitted.json()["confirmation_id"]

    with connection.cursor() as cursor:
        cursor.execute(SLEEP_TRIGGER)
    try:
        assert api.webhook(cleared(reference)).status_code == 200
        # The job is inside its transaction, writing the CLEARED history row, when the database goes away.
        wait_for(_sleeping_in_trigger, timeout=WAIT, what="the webhook job to be mid-transaction")
        pg_proxy.cut()
        with connection.cursor() as cursor:
            cursor.execute(DROP_TRIGGER)  # waits for the cut transaction to end (rolled back: its client is gone)
        assert rows_of(payment_id) == [(None, "PROCESSING"), ("PROCESSING", "ACHSENT")]
        # The job fails and retries against the dead database (at least twice) while nothing is written.
        wait_for(lambda: worker.log().count("job attempt failed; retrying") >= 3, timeout=WAIT,
                 what="the job to retry during the outage")
        message = JpmWebhookMessage.objects.get()
        assert (message.status, message.attempts) == ("received", 1)  # the one start that reached the database
        assert DeadLetter.objects.count() == 0
    finally:
        with connection.cursor() as cursor:
            cursor.execute(DROP_TRIGGER)
    pg_proxy.restore()

    # The next retry reconnects (the worker was not restarted) and completes the job: once, nothing lost.
    wait_for(lambda: JpmWebhookMessage.objects.filter(status="processed").exists(), timeout=WAIT,
             what="the retried job to complete after the restore")
    message = JpmWebhookMessage.objects.get()
    assert message.attempts == 2  # the cut start, then the one that completed (the others never reached it)
    assert message.outcome["applied"] == 1, message.outcome
    assert rows_of(payment_id) == [(None, "PROCESSING"), ("PROCESSING", "ACHSENT"), ("ACHSENT", "CLEARED")]
    assert events_of(payment_id) == ["SUBSCRIPTION_CLEARED"]
    assert Payment.objects.get(pk=payment_id).payment_status == "CLEARED"
    assert DeadLetter.objects.count() == 0
    assert worker.proc.poll() is None
    retries = worker.log().count("job attempt failed; retrying")
    print(f"\nwebhook job: {retries} failed attempts during the outage, completed after the restore")
