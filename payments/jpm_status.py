"""JPM payment status → our status changes (SPEC §7.1): the one mapping shared by the JPM webhook processor
(``syncing.jpm_webhook``) and the stuck-payment reconciler (``payments.reconciler``).

``jpm_steps`` turns a JPM status into the steps that lead there from PROCESSING (the earliest status a JPM payment
can be in while JPM has it):

| JPM status | steps |
|---|---|
| PENDING, ACCEPTED, HOLD | → ACHSENT (confirmation id = endToEndId: JPM has it) |
| CLEARED | → ACHSENT, → CLEARED (``SUBSCRIPTION_CLEARED``) |
| COMPLETED | → ACHSENT, → CLEARED, then the ``SUBSCRIPTION_SENT`` event (subscriptions only). Not COMPLETED: JPM's
  COMPLETED is not final; check-ach completes the payment after the three-business-day gate |
| REJECTED | → FAILED ``rejected`` with the return code and ``"CODE: description"`` |
| RETURNED | → ACHSENT, → FAILED ``returned`` with the return code, ``return_date`` (``*_RETURNED``); from COMPLETED
  too (a late return) |

``status_steps_apply`` applies them in one transaction through the status machine: every step that the machine allows
from the payment's status at that moment is applied, a refused one (duplicate, or a status already passed) is
skipped and the next one still tried — so a CLEARED callback for an ACHSENT payment applies CLEARED, a RETURNED
callback for a payment check-ach COMPLETED applies FAILED, and a stale ACCEPTED after FAILED changes nothing.
The ``SUBSCRIPTION_SENT`` event is written only while the payment is ACHSENT or CLEARED after the status steps: a
COMPLETED callback that arrives after the payment FAILED (or after check-ach completed it) is stale and writes
nothing (the event would follow the payment's final event in its sequence).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction

from payments.models import Payment, Purpose, Status
from payments.status import payment_apply_status, payment_emit_event

# JPM statuses (processors.md) that mean "accepted for processing, not failed, not cleared yet".
JPM_ACCEPTED = frozenset({"PENDING", "ACCEPTED", "HOLD"})
JPM_CLEARED = frozenset({"CLEARED", "COMPLETED"})
JPM_STATUSES = JPM_ACCEPTED | JPM_CLEARED | {"REJECTED", "RETURNED"}
# The order JPM moves a payment through (callbacks of the same instant are applied in this order).
JPM_STATUS_RANK = {"PENDING": 0, "ACCEPTED": 1, "HOLD": 2, "CLEARED": 3, "COMPLETED": 4, "REJECTED": 5, "RETURNED": 6}
SENT_EVENT = "SUBSCRIPTION_SENT"
_SENT_FROM = frozenset({Status.ACHSENT, Status.CLEARED})


class UnexpectedJpmStatus(ValueError):
    """A status outside processors.md's list (the adapter only passes known ones: this is a programming error)."""


@dataclass(frozen=True)
class StatusStep:
    """One status change to apply (or, with ``event_type``, one non-status event to emit)."""

    to_status: str | None
    failure: str | None = None
    return_code: str | None = None
    return_info: str | None = None
    confirmation_id: str | None = None
    event_type: str | None = None


@dataclass
class StepsResult:
    """What ``status_steps_apply`` did: ``applied`` lists the statuses entered (and events emitted) in order;
    ``refusals`` the status machine's outcome of each refused step ("duplicate"/"disallowed"/"skipped");
    ``first_refused`` whether the first step was refused; ``status`` the payment's status afterwards."""

    status: str
    applied: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    first_refused: bool = False

    @property
    def outcome(self) -> str:
        """``applied`` (something changed), ``duplicate`` (the last step was already done) or ``stale`` (the
        payment is past every step: nothing to do)."""
        if self.applied:
            return "applied"
        return "duplicate" if self.refusals and self.refusals[-1] == "duplicate" else "stale"


def jpm_return_info(*, return_code: str | None, exceptions: Iterable) -> str | None:
    """``"CODE: description"`` from JPM's exception list (the first description), or whichever of them exists."""
    description = next((e.error_description for e in exceptions if e.error_description), None)
    if return_code and description:
        return f"{return_code}: {description}"
    return return_code or description


def jpm_steps(*, payment: Payment, status: str, end_to_end_id: str, return_code: str | None,
              return_info: str | None) -> tuple[StatusStep, ...]:
    """The steps of SPEC §7.1's mapping for ``status`` (see the module), from PROCESSING. ``end_to_end_id`` becomes
    the confirmation id when the payment has none yet. Raises ``UnexpectedJpmStatus`` for a status JPM does not
    document."""
    if status not in JPM_STATUSES:
        raise UnexpectedJpmStatus(f"unexpected JPM status {status!r}")
    if status == "REJECTED":
        return (StatusStep(Status.FAILED, failure="rejected", return_code=return_code,
                        return_info=return_info or "REJECTED", confirmation_id=end_to_end_id),)
    steps = [StatusStep(Status.ACHSENT, confirmation_id=end_to_end_id)]
    if status == "RETURNED":
        steps.append(StatusStep(Status.FAILED, failure="returned", return_code=return_code,
                             return_info=return_info or "RETURNED"))
    elif status in JPM_CLEARED:
        steps.append(StatusStep(Status.CLEARED))
        if status == "COMPLETED" and payment.purpose == Purpose.SUBSCRIPTION:
            steps.append(StatusStep(None, event_type=SENT_EVENT))
    return tuple(steps)


def status_steps_apply(*, payment: Payment, steps: tuple[StatusStep, ...], source: str, actor: str,
                    raw_payload_ref: str, at: datetime | None = None,
                    stop_if_first_refused: bool = False) -> StepsResult:
    """Apply ``steps`` to ``payment`` in one transaction (see the module for the rule).

    ``stop_if_first_refused``: when the first step is refused, apply nothing more (the reconciler: a payment that
    left PROCESSING meanwhile was moved by whoever knew the outcome). ``at`` dates the changes (the processor's
    time); None = now.

    Side effects: status changes (history rows, outbox events) and the ``SUBSCRIPTION_SENT`` event, all through
    ``payments.status``. Idempotent: applying the same steps again applies nothing.
    """
    result = StepsResult(status=payment.payment_status)
    with transaction.atomic():
        for index, step in enumerate(steps):
            if step.to_status is None:
                if result.status not in _SENT_FROM:
                    result.refusals.append("skipped")
                elif payment_emit_event(payment_id=payment.pk, event_type=step.event_type, source=source,
                                        raw_payload_ref=raw_payload_ref):
                    result.applied.append(step.event_type)
                else:
                    result.refusals.append("duplicate")
                continue
            change = payment_apply_status(
                payment_id=payment.pk, to_status=step.to_status, source=source, actor=actor,
                failure=step.failure, return_code=step.return_code, return_info=step.return_info,
                confirmation_id=step.confirmation_id, raw_payload_ref=raw_payload_ref, at=at,
            )
            result.status = change.payment.payment_status
            if change.applied:
                result.applied.append(step.to_status)
                continue
            result.refusals.append(change.outcome)
            if index == 0:
                result.first_refused = True
                if stop_if_first_refused:
                    break
    return result


# --- the three-business-day gate (SPEC §7.2) ------------------------------------------------------------------------

_GATE_FAILURES = {"RETURNED": "returned", "REJECTED": "rejected"}


@dataclass(frozen=True)
class GateVerdict:
    """What a payment past the three-business-day gate becomes, from JPM's answer (check-ach, prenote verifier)."""

    to_status: str
    failure: str | None = None
    return_code: str | None = None
    return_info: str | None = None


def jpm_gate_verdict(payment: Payment, *, client=None) -> GateVerdict | None:
    """Ask JPM (``GET /tsapi/v3/payment/{endToEndId}``, outside any transaction) what a payment past the gate
    becomes: RETURNED → FAILED ``returned``, REJECTED → FAILED ``rejected`` (with the code and ``"CODE:
    description"``), anything else → COMPLETED (SPEC §7.2). None when JPM does not know the payment. Raises the
    client's ``ProcessorError``s. ``client``: a ``JpmClient`` to ask with (check-ach reuses one per look-up thread);
    default a new one from the settings. Touches no database (check-ach calls it from its look-up threads)."""
    from integrations.jpm import jpm_client

    answer = (client or jpm_client()).get_payment_status(payment.reference)
    if not answer.found:
        return None
    failure = _GATE_FAILURES.get(answer.status)
    if failure is None:
        return GateVerdict(Status.COMPLETED)
    info = jpm_return_info(return_code=answer.return_code, exceptions=answer.exceptions) or answer.status
    return GateVerdict(Status.FAILED, failure=failure, return_code=answer.return_code, return_info=info)

