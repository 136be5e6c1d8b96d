"""The back-office user page and dashboard (issue 8): thin views over ``backoffice.selectors``.

Both need ``payments.view_payment`` (groups ``support`` and ``admin``); another staff user gets 403, checked on
every request. The pages only read: the action buttons link to the owning apps' admin views (refund, sync now,
mark failed, block/unblock, card override, replay, redeliver), each shown only to a user holding that action's
permission, and only when that view exists (``optional_url``: the apps add them independently).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse

from backoffice import charts
from backoffice.selectors import (
    CHART_DAYS,
    RETURN_RATE_DAYS,
    THRESHOLDS,
    USER_PAGE_LIMIT,
    dashboard_data,
    user_overview,
)
from core.errors import ValidationError
from core.validators import validate_user_id
from payments.models import Method, Payment, PaymentType, Provider, Purpose, Status
from payments.selectors import payment_stuck_cutoffs

VIEW_PERMISSION = "payments.view_payment"

STATUS_COLORS = {
    Status.PROCESSING: "#9e9e9e", Status.ACHSENT: "#447e9b", Status.CLEARED: "#79aec8",
    Status.COMPLETED: "#2e7d32", Status.FAILED: "#ba2121", Status.CHARGED_BACK: "#7b1fa2",
    Status.REFUNDED: "#ef6c00",
}
METHOD_COLORS = {Method.ACH: "#447e9b", Method.PINLESS: "#2e7d32", Method.RTP: "#ef6c00"}


def optional_url(name: str, *args, query: dict | None = None) -> str:
    """``reverse(name, args)`` (with ``?query``), or ``""`` when no such URL exists (yet)."""
    try:
        url = reverse(name, args=args)
    except NoReverseMatch:
        return ""
    return f"{url}?{urlencode(query)}" if query else url


def _require_view_permission(request: HttpRequest) -> None:
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied


def _context(request: HttpRequest, site: AdminSite, title: str, **extra) -> dict:
    return {**site.each_context(request), "title": title, **extra}


# --- user search and user page ------------------------------------------------------------------------------------
class UserSearchForm(forms.Form):
    user_id = forms.CharField(label="User id", max_length=64, strip=True,
                              widget=forms.TextInput(attrs={"autofocus": True, "size": 40}))

    def clean_user_id(self) -> str:
        user_id = self.cleaned_data["user_id"]
        try:
            return validate_user_id(user_id)
        except ValidationError as error:  # the API's rule and message (422 invalid_user_id)
            raise forms.ValidationError(error.message, code=error.code) from error


def user_search(request: HttpRequest, site: AdminSite) -> HttpResponse:
    """``/admin/users/``: a user id → that user's page. ``?user_id=`` submits the search."""
    _require_view_permission(request)
    form = UserSearchForm(request.GET or None)
    if form.is_valid():
        return redirect("admin:backoffice_user", user_id=form.cleaned_data["user_id"])
    return TemplateResponse(request, "backoffice/user_search.html", _context(request, site, "Find a user", form=form))


@dataclass
class Link:
    label: str
    url: str
    name: str  # a stable HTML name/id fragment for tests and the browser


@dataclass
class PaymentRow:
    payment: Payment
    change_url: str
    actions: list[Link]


def _payment_actions(request: HttpRequest, payment: Payment) -> list[Link]:
    """The action links a payment offers this user: refund (a completed Usio debit), sync now (not final yet),
    mark failed (PROCESSING or ACHSENT), each when the user holds its permission and the view exists."""
    user = request.user
    candidates = []
    if (user.has_perm("refunds.add_refund") and payment.payment_provider == Provider.USIO
            and payment.payment_type == PaymentType.DEBIT and payment.purpose != Purpose.PRENOTE
            and payment.payment_status == Status.COMPLETED):
        candidates.append(("Refund", "admin:payments_payment_refund", "refund"))
    if user.has_perm("payments.sync_payment") and payment.payment_status in (
            Status.PROCESSING, Status.ACHSENT, Status.CLEARED, Status.COMPLETED):
        candidates.append(("Sync now", "admin:payments_payment_sync", "sync"))
    if user.has_perm("payments.mark_payment_failed") and payment.payment_status in (
            Status.PROCESSING, Status.ACHSENT):
        candidates.append(("Mark failed", "admin:payments_payment_mark_failed", "mark-failed"))
    links = []
    for label, url_name, name in candidates:
        url = optional_url(url_name, payment.pk)
        if url:
            links.append(Link(label, url, f"{name}-{payment.pk}"))
    return links


def user_detail(request: HttpRequest, user_id: str, site: AdminSite) -> HttpResponse:
    """``/admin/users/<user_id>/``: everything about one user, read-only, with the actions the user may take."""
    _require_view_permission(request)
    try:
        overview = user_overview(user_id=user_id)
    except ValidationError as error:
        form = UserSearchForm({"user_id": user_id})
        form.is_valid()
        response = TemplateResponse(request, "backoffice/user_search.html",
                                    _context(request, site, "Find a user", form=form, error=error.message))
        response.status_code = 404
        return response
    user = request.user
    payments = [PaymentRow(p, reverse("admin:payments_payment_change", args=[p.pk]), _payment_actions(request, p))
                for p in overview.payments]
    blocklist_actions = []
    if user.has_perm("blocklist.add_blocklistrecord"):
        if overview.is_blocked:
            url = optional_url("admin:blocklist_blocklistrecord_unblock", query={"user_id": user_id})
            if url:
                blocklist_actions.append(Link("Unblock", url, "unblock"))
        else:
            url = optional_url("admin:blocklist_blocklistrecord_block", query={"user_id": user_id})
            if url:
                blocklist_actions.append(Link("Block", url, "block"))
    card_override_url = ""
    if overview.card is not None and user.has_perm("cards.change_debitcard"):
        card_override_url = optional_url("admin:cards_debitcard_override", overview.card.pk)
    search = {"q": user_id}
    context = _context(
        request, site, f"User {user_id}",
        user_id=user_id, overview=overview, payments=payments, limit=USER_PAGE_LIMIT,
        blocklist_actions=blocklist_actions, card_override_url=card_override_url,
        payments_list_url=optional_url("admin:payments_payment_changelist", query=search),
        refunds_list_url=optional_url("admin:refunds_refund_changelist", query=search),
        blocklist_list_url=optional_url("admin:blocklist_blocklistrecord_changelist", query=search),
        audit_list_url=optional_url("admin:core_auditentry_changelist", query=search),
        fraud_checks_list_url=optional_url("admin:fraud_fraudcheck_changelist", query=search),
        card_changes_list_url=optional_url("admin:cards_debitcardchange_changelist", query=search),
        search_form=UserSearchForm(initial={"user_id": user_id}),
    )
    return TemplateResponse(request, "backoffice/user_detail.html", context)


# --- dashboard ------------------------------------------------------------------------------------------------------
def dashboard(request: HttpRequest, site: AdminSite) -> HttpResponse:
    """``/admin/dashboard/``: payments per day, Nacha return rates, stuck payments, dead letters, outbox, jobs."""
    _require_view_permission(request)
    data = dashboard_data()
    labels = [d.strftime("%m-%d") for d in data.daily.days]
    by_status_chart = charts.stacked_bar_chart(
        title=f"Payments per day by status (last {CHART_DAYS} days)", labels=labels,
        series=[charts.Series(s, data.daily.by_status[s], STATUS_COLORS[s]) for s in Status.values])
    by_method_chart = charts.stacked_bar_chart(
        title=f"Payments per day by method (last {CHART_DAYS} days)", labels=labels,
        series=[charts.Series(m, data.daily.by_method[m], METHOD_COLORS[m]) for m in Method.values])
    rate_charts = []
    for kind, caption in (("overall", "Overall return rate"), ("administrative", "Administrative (R02, R03, R04)"),
                          ("unauthorized", "Unauthorized (R05, R07, R10, R11, R29, R51)")):
        bars = [charts.RateBar(label=r.label, percent=r.rates[kind], over=r.over[kind],
                               note="" if r.debits else "returns, no debits")
                for r in data.return_rates]
        rate_charts.append({"kind": kind, "caption": caption, "threshold": THRESHOLDS[kind],
                            "svg": charts.rate_bar_chart(title=f"{caption}, last {RETURN_RATE_DAYS} days",
                                                         bars=bars, threshold=THRESHOLDS[kind]) if bars else ""})
    changelist = optional_url("admin:payments_payment_changelist")
    processing_cutoff, achsent_cutoff = payment_stuck_cutoffs(now=data.now)
    can_replay = request.user.has_perm("core.replay_deadletter")
    dead_letters = [{"dl": dl, "url": optional_url("admin:core_deadletter_change", dl.pk),
                     "replay_url": optional_url("admin:core_deadletter_replay", dl.pk) if can_replay else ""}
                    for dl in data.dead_letters.newest]
    jobs = [{"job": job, "url": optional_url("admin:django_celery_beat_periodictask_change", job.periodic_task_id)
             if job.periodic_task_id and request.user.has_perm("django_celery_beat.view_periodictask") else ""}
            for job in data.jobs]
    context = _context(
        request, site, "Dashboard",
        data=data, by_status_chart=by_status_chart, by_method_chart=by_method_chart, rate_charts=rate_charts,
        status_totals={s: sum(v) for s, v in data.daily.by_status.items()},
        method_totals={m: sum(v) for m, v in data.daily.by_method.items()},
        chart_days=CHART_DAYS, return_rate_days=RETURN_RATE_DAYS, thresholds=THRESHOLDS,
        stuck_processing_url=f"{changelist}?stuck=processing" if changelist else "",
        stuck_achsent_url=f"{changelist}?stuck=achsent" if changelist else "",
        processing_cutoff=processing_cutoff, achsent_cutoff=achsent_cutoff,
        processing_minutes=settings.PROCESSING_STUCK_MINUTES,
        dead_letters=dead_letters, jobs=jobs,
        dead_letters_url=optional_url("admin:core_deadletter_changelist", query={"replayed_at__isnull": "True"}),
        outbox_url=optional_url("admin:core_outboxevent_changelist", query={"published_at__isempty": "1"}),
        consumptions_url=optional_url("admin:core_outboxconsumption_changelist"),
        deliveries_url=optional_url("admin:core_pushdelivery_changelist", query={"status__exact": "pending"})
        if request.user.has_perm("core.view_pushdelivery") else "",
        jobruns_url=optional_url("admin:core_jobrun_changelist"),
    )
    return TemplateResponse(request, "backoffice/dashboard.html", context)
