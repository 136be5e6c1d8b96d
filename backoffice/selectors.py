"""Every read of the back-office user page and dashboard (issue 8). Read-only; nothing here changes state.

Each function runs a fixed number of queries whatever the number of rows (lists are capped, figures are SQL
aggregates with ``GROUP BY``), so the pages cost the same for a user with 5 payments or 5,000. Sensitive columns are
never loaded: bank accounts without their encrypted numbers, cards without their Usio tokens (``only()``), so no
template can show them even by mistake.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Case, CharField, Count, F, Min, Q, Value, When
from django.db.models.functions import Coalesce, Trim, TruncDate, Upper
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from bank_accounts.models import BankAccount
from blocklist.models import BlocklistRecord, BlocklistStatus
from cards.models import DebitCard, DebitCardChange
from core.business_days import CHICAGO, chicago_date
from core.models import (
    AuditEntry,
    DeadLetter,
    JobRun,
    OutboxConsumption,
    OutboxConsumptionStatus,
    OutboxEvent,
    PushDelivery,
    PushDeliveryStatus,
)
from core.validators import validate_user_id
from fraud.models import FraudCheck, FraudResult
from integrations.jpm.codes import ISO_TO_NACHA
from payments.models import Method, Payment, PaymentType, Provider, Purpose, Status
from payments.selectors import payment_stuck_conditions
from refunds.models import Refund

#: Rows per list on the user page; beyond it the page links to the filtered admin changelist.
USER_PAGE_LIMIT = 100
#: Fraud checks and results, card changes and audit entries shown on the user page (newest first).
USER_PAGE_HISTORY_LIMIT = 25
#: SPEC §7.7: an ACH payment is stuck when ACHSENT for more than this many business days (as payments.admin).
CHART_DAYS = 30
RETURN_RATE_DAYS = 60
DEAD_LETTERS_SHOWN = 10


# --- the user page ----------------------------------------------------------------------------------------------
@dataclass
class UserOverview:
    """Everything the back office knows about one user id. ``*_more`` is True when a list was cut at its cap."""

    user_id: str
    payments: list[Payment]
    payments_more: bool
    card: DebitCard | None
    card_changes: list[DebitCardChange]
    bank_accounts: list[BankAccount]
    refunds: list[Refund]
    refunds_more: bool
    blocklist_history: list[BlocklistRecord]
    blocklist_more: bool
    fraud_checks: list[FraudCheck]
    fraud_results: list[FraudResult]
    audit_entries: list[AuditEntry]

    @property
    def blocklist_current(self) -> BlocklistRecord | None:
        """The newest record (the user's current state), None when never on the blocklist."""
        return self.blocklist_history[0] if self.blocklist_history else None

    @property
    def is_blocked(self) -> bool:
        current = self.blocklist_current
        return current is not None and current.status == BlocklistStatus.BLOCKED

    @property
    def is_empty(self) -> bool:
        """True when no table holds anything about this user id (an unknown or mistyped id)."""
        return not (self.payments or self.card or self.card_changes or self.bank_accounts or self.refunds
                    or self.blocklist_history or self.fraud_checks or self.fraud_results or self.audit_entries)


def _capped(queryset, limit: int) -> tuple[list, bool]:
    rows = list(queryset[: limit + 1])
    return rows[:limit], len(rows) > limit


def user_overview(*, user_id: str, limit: int = USER_PAGE_LIMIT,
                  history_limit: int = USER_PAGE_HISTORY_LIMIT) -> UserOverview:
    """The user page's data for ``user_id``: payments (newest first, ``limit``), the debit card (no tokens) and its
    recent changes, bank accounts (last 4, no numbers), refunds (``limit``), blocklist history (newest first; its
    first row is the current state), fraud checks and results, audit entries about the user.

    9 queries, whatever the number of rows. 422 ``invalid_user_id`` (``core.errors.ValidationError``) for a
    malformed id; an unknown id gives an empty overview (``is_empty``).
    """
    validate_user_id(user_id)
    payments, payments_more = _capped(
        Payment.objects.filter(user_id=user_id).order_by("-submit_date", "-created_at", "-id")
        .only("id", "confirmation_id", "user_id", "purpose", "payment_method", "payment_type", "payment_provider",
              "merchant_account", "amount", "payment_status", "return_code", "return_info", "masked_account_number",
              "masked_card_number", "submit_date", "created_at"),
        limit)
    card = (DebitCard.objects.filter(user_id=user_id)
            .only("id", "user_id", "masked_card_number", "card_exp", "created_on", "is_valid", "invalid_date",
                  "invalid_reason", "token_refreshed_at", "force_failure")
            .first())
    card_changes = list(DebitCardChange.objects.filter(user_id=user_id).order_by("-at", "-id")
                        .only("id", "change_type", "old_masked_card_number", "new_masked_card_number",
                              "old_card_exp", "new_card_exp", "actor", "reason", "at")[:history_limit])
    bank_accounts = list(BankAccount.objects.filter(user_id=user_id).order_by("account_id")
                         .only("id", "user_id", "account_id", "last4", "account_type", "prenote_status",
                               "entry_timestamp", "updated_at"))
    refunds, refunds_more = _capped(
        Refund.objects.filter(user_id=user_id).order_by("-created_at", "-id")
        .only("id", "refund_confirmation_id", "amount", "description", "account_type", "target", "method",
              "payment_id", "confirmation_id", "masked_account_number", "masked_card_number", "support_name",
              "date_refunded", "status", "failure_code", "failure_message", "created_at"),
        limit)
    blocklist_history, blocklist_more = _capped(
        BlocklistRecord.objects.filter(user_id=user_id).order_by("-created_at", "-id"), limit)
    fraud_checks = list(FraudCheck.objects.filter(user_id=user_id).order_by("-created_at")
                        .only("id", "user_id", "verdict", "fired", "window_hours", "requested_by", "created_at")
                        [:history_limit])
    fraud_results = list(FraudResult.objects.filter(user_id=user_id).order_by("-created_at")
                         .only("id", "verdict", "score", "flags", "source", "fraud_check_id", "created_by",
                               "created_at")[:history_limit])
    audit_entries = list(AuditEntry.objects.filter(user_id=user_id).order_by("-at", "-id")
                         .only("id", "actor", "action", "target_type", "target_id", "reason", "at")[:history_limit])
    return UserOverview(
        user_id=user_id, payments=payments, payments_more=payments_more, card=card, card_changes=card_changes,
        bank_accounts=bank_accounts, refunds=refunds, refunds_more=refunds_more,
        blocklist_history=blocklist_history, blocklist_more=blocklist_more, fraud_checks=fraud_checks,
        fraud_results=fraud_results, audit_entries=audit_entries,
    )


# --- dashboard: payments per day --------------------------------------------------------------------------------
@dataclass
class DailyCounts:
    """Payments per America/Chicago day (oldest first), split by status and by method."""

    days: list[date]
    by_status: dict[str, list[int]]
    by_method: dict[str, list[int]]
    total: int


def payments_per_day(*, now: datetime, days: int = CHART_DAYS) -> DailyCounts:
    """Payments (every row, prenotes included) per day of the last ``days`` Chicago calendar days, today included,
    dated by ``submit_date`` (``created_at`` when not submitted). One ``GROUP BY day, status, method`` query."""
    today = chicago_date(now)
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, datetime.min.time(), tzinfo=CHICAGO)
    rows = (Payment.objects.annotate(at=Coalesce("submit_date", "created_at")).filter(at__gte=start)
            .annotate(day=TruncDate("at", tzinfo=CHICAGO))
            .values("day", "payment_status", "payment_method").annotate(n=Count("pk")).order_by())
    day_list = [first + timedelta(days=i) for i in range(days)]
    index = {d: i for i, d in enumerate(day_list)}
    by_status = {s: [0] * days for s in Status.values}
    by_method = {m: [0] * days for m in Method.values}
    total = 0
    for row in rows:
        i = index.get(row["day"])
        if i is None:  # a payment dated in the future (clock skew): not in the window
            continue
        by_status[row["payment_status"]][i] += row["n"]
        by_method[row["payment_method"]][i] += row["n"]
        total += row["n"]
    return DailyCounts(days=day_list, by_status=by_status, by_method=by_method, total=total)


# --- dashboard: Nacha return rates (SPEC §12) -----------------------------------------------------------------------
#: SPEC §12 monitoring thresholds, in percent: a rate must stay strictly below its threshold.
THRESHOLDS = {"overall": Decimal("15"), "administrative": Decimal("3"), "unauthorized": Decimal("0.5")}
ADMINISTRATIVE_NACHA = frozenset({"R02", "R03", "R04"})
UNAUTHORIZED_NACHA = frozenset({"R05", "R07", "R10", "R11", "R29", "R51"})


def _codes_mapping_to(nacha_codes: frozenset[str]) -> list[str]:
    """The stored return codes that count as ``nacha_codes``: the NACHA codes and every JPM/ISO code that
    ``integrations.jpm.codes`` maps to one of them (AC04 → R02, MD01 → R10, ...), so SQL can classify."""
    return sorted(nacha_codes | {iso for iso, nacha in ISO_TO_NACHA.items() if nacha in nacha_codes})


@dataclass
class ReturnRate:
    """One merchant account's ACH debit return rates over the window (percent; None with no debits)."""

    account: str
    label: str
    debits: int
    returned: int
    administrative: int
    unauthorized: int
    rates: dict[str, Decimal | None] = field(default_factory=dict)
    over: dict[str, bool] = field(default_factory=dict)

    @property
    def any_over(self) -> bool:
        return any(self.over.values())


def _rate(part: int, whole: int) -> Decimal | None:
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.01")) if whole else None


def _over(part: int, whole: int, threshold: Decimal) -> bool:
    """part/whole ≥ threshold%, compared exactly (no rounding): 3 of 100 is 3% and 3% is not under 3%. Returns
    with no debits in the window are over any threshold."""
    if not whole:
        return part > 0
    return Decimal(part) * 100 >= threshold * Decimal(whole)


def usio_account_labels() -> dict[str, str]:
    """Usio merchant id → ``USIO_ACCOUNTS`` name (for display)."""
    labels: dict[str, str] = {}
    for name, account in (getattr(settings, "USIO_ACCOUNTS", {}) or {}).items():
        merchant_id = str((account or {}).get("merchant_id") or "")
        if merchant_id and merchant_id not in labels:
            labels[merchant_id] = name
    return labels


def nacha_return_rates(*, now: datetime, days: int = RETURN_RATE_DAYS) -> list[ReturnRate]:
    """ACH debit return rates per merchant account over the last ``days`` days (SPEC §12), Nacha's way:

    rate = ACH debits **returned** in the window (``return_date`` in it, whenever submitted) / ACH debits
    **originated** in the window (``submit_date`` in it and accepted into the network: not PROCESSING, not failed
    without a return — a rejection or a payment never submitted is not an entry). Prenotes (non-monetary) are left
    out. Administrative = returns with R02/R03/R04, unauthorized = R05/R07/R10/R11/R29/R51, JPM/ISO codes mapped to
    NACHA first. The account is the Usio merchant id; every JPM payment counts under ``jpm``.
    One ``GROUP BY`` query; accounts with neither debits nor returns in the window are absent.
    """
    start = now - timedelta(days=days)
    code = Upper(Trim("return_code"))
    returned = Q(return_date__gte=start, return_date__lte=now)
    originated = (Q(submit_date__gte=start, submit_date__lte=now) & ~Q(payment_status=Status.PROCESSING)
                  & ~Q(payment_status=Status.FAILED, return_date__isnull=True))
    rows = (Payment.objects
            .filter(payment_method=Method.ACH, payment_type=PaymentType.DEBIT)
            .exclude(purpose=Purpose.PRENOTE)
            .filter(Q(submit_date__gte=start) | Q(return_date__gte=start))
            .annotate(account=Case(When(payment_provider=Provider.JPM, then=Value("jpm")),
                                   default=Coalesce(F("merchant_account"), Value("unknown")),
                                   output_field=CharField()),
                      code=code)
            .values("account")
            .annotate(debits=Count("pk", filter=originated),
                      returned=Count("pk", filter=returned),
                      administrative=Count("pk", filter=returned & Q(code__in=_codes_mapping_to(ADMINISTRATIVE_NACHA))),
                      unauthorized=Count("pk", filter=returned & Q(code__in=_codes_mapping_to(UNAUTHORIZED_NACHA))))
            .order_by("account"))
    labels = usio_account_labels()
    result = []
    for row in rows:
        if not (row["debits"] or row["returned"]):
            continue
        account = row["account"]
        label = "jpm" if account == "jpm" else (f"{account} ({labels[account]})" if account in labels else account)
        item = ReturnRate(account=account, label=label, debits=row["debits"], returned=row["returned"],
                          administrative=row["administrative"], unauthorized=row["unauthorized"])
        for kind, part in (("overall", item.returned), ("administrative", item.administrative),
                           ("unauthorized", item.unauthorized)):
            item.rates[kind] = _rate(part, item.debits)
            item.over[kind] = _over(part, item.debits, THRESHOLDS[kind])
        result.append(item)
    return result


# --- dashboard: stuck payments, dead letters, outbox, jobs ----------------------------------------------------------
def stuck_payment_counts(*, now: datetime) -> dict[str, int]:
    """``{"processing": n, "achsent": n}``: stuck payments (one query)."""
    conditions = payment_stuck_conditions(now=now)
    return Payment.objects.aggregate(**{kind: Count("pk", filter=q) for kind, q in conditions.items()})


@dataclass
class DeadLetterSummary:
    waiting: int  # never replayed
    newest: list[DeadLetter]


def dead_letter_summary(*, limit: int = DEAD_LETTERS_SHOWN) -> DeadLetterSummary:
    """Dead letters never replayed: how many, and the newest ``limit`` (two queries)."""
    waiting = DeadLetter.objects.filter(replayed_at__isnull=True)
    newest = list(waiting.order_by("-failed_at", "-id")
                  .only("id", "task_name", "queue", "attempts", "failed_at", "last_error")[:limit])
    return DeadLetterSummary(waiting=waiting.count(), newest=newest)


@dataclass
class OutboxBacklog:
    unpublished: int
    unpublished_oldest: datetime | None
    consumptions_failing: int
    consumptions_dead: int
    consumptions_oldest: datetime | None
    deliveries_pending: int
    deliveries_dead: int
    deliveries_oldest: datetime | None


def outbox_backlog() -> OutboxBacklog:
    """What the outbox has not finished: events not published, consumers failing or dead-lettered, push deliveries
    pending or dead, each with the oldest one's creation time (three aggregate queries)."""
    events = OutboxEvent.objects.filter(published_at__isnull=True).aggregate(n=Count("pk"), oldest=Min("created_at"))
    not_done = ~Q(status=OutboxConsumptionStatus.DONE)
    consumptions = OutboxConsumption.objects.aggregate(
        failing=Count("pk", filter=Q(status=OutboxConsumptionStatus.FAILING)),
        dead=Count("pk", filter=Q(status=OutboxConsumptionStatus.DEAD)),
        oldest=Min("created_at", filter=not_done))
    deliveries = PushDelivery.objects.aggregate(
        pending=Count("pk", filter=Q(status=PushDeliveryStatus.PENDING)),
        dead=Count("pk", filter=Q(status=PushDeliveryStatus.DEAD)),
        oldest=Min("created_at", filter=Q(status=PushDeliveryStatus.PENDING)))
    return OutboxBacklog(
        unpublished=events["n"], unpublished_oldest=events["oldest"],
        consumptions_failing=consumptions["failing"], consumptions_dead=consumptions["dead"],
        consumptions_oldest=consumptions["oldest"],
        deliveries_pending=deliveries["pending"], deliveries_dead=deliveries["dead"],
        deliveries_oldest=deliveries["oldest"],
    )


@dataclass
class ScheduledJob:
    """A beat schedule (or a ``run_job`` name with no schedule) and the last run ``JobRun`` recorded for it."""

    name: str
    task: str
    enabled: bool | None  # None: no schedule (run by hand)
    schedule: str
    last_run_at: datetime | None
    run: JobRun | None
    periodic_task_id: int | None = None

    @property
    def failed(self) -> bool:
        return self.run is not None and self.run.last_outcome == "failed"


def _schedule_text(task: PeriodicTask) -> str:
    for schedule in (task.interval, task.crontab, task.solar, task.clocked):
        if schedule is not None:
            return str(schedule)
    return ""


def scheduled_jobs() -> list[ScheduledJob]:
    """Every django-celery-beat ``PeriodicTask`` (by name) joined with ``core.models.JobRun`` on the name, then the
    ``JobRun`` rows no schedule has (``run_job`` by hand). Two queries."""
    tasks = list(PeriodicTask.objects.select_related("interval", "crontab", "solar", "clocked").order_by("name"))
    runs = {run.name: run for run in JobRun.objects.order_by("name")}
    jobs = [ScheduledJob(name=t.name, task=t.task, enabled=t.enabled, schedule=_schedule_text(t),
                         last_run_at=t.last_run_at, run=runs.pop(t.name, None), periodic_task_id=t.pk)
            for t in tasks]
    jobs += [ScheduledJob(name=run.name, task=run.task_name, enabled=None, schedule="", last_run_at=None, run=run)
             for run in runs.values()]
    return jobs


@dataclass
class Dashboard:
    now: datetime
    daily: DailyCounts
    return_rates: list[ReturnRate]
    stuck: dict[str, int]
    dead_letters: DeadLetterSummary
    outbox: OutboxBacklog
    jobs: list[ScheduledJob]


def dashboard_data(*, now: datetime | None = None) -> Dashboard:
    """Every figure of the dashboard (10 queries)."""
    now = now or timezone.now()
    return Dashboard(now=now, daily=payments_per_day(now=now), return_rates=nacha_return_rates(now=now),
                     stuck=stuck_payment_counts(now=now), dead_letters=dead_letter_summary(),
                     outbox=outbox_backlog(), jobs=scheduled_jobs())


def group_counts(values: dict[str, list[int]]) -> dict[str, int]:
    """Totals per key of a ``DailyCounts`` split (for the legend tables)."""
    totals: dict[str, int] = defaultdict(int)
    for key, counts in values.items():
        totals[key] = sum(counts)
    return dict(totals)
