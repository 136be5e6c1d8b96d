"""The debit-card fixer (SPEC §7.8): operator-driven repairs of debit cards, one job per card on ``debit-fixer``.

Actions (each through one ``cards.services`` write, actor ``debit_fixer``):

- ``revalidate``: support decided the card is good: ``is_valid`` true, ``invalid_*`` cleared
  (``card_revalidate``). Outcome ``revalidated`` / ``already_valid``.
- ``rehash``: ``hashed_card_number`` recomputed with the current ``HASH_KEY`` after a key rotation
  (``card_rehash``). Outcome ``rehashed`` / ``unchanged``.
- ``scrub``: test-only state cleared (``force_failure``) and stored values normalised (surrounding whitespace of
  tokens and ``invalid_reason``) (``card_scrub``). Outcome ``scrubbed`` / ``unchanged``.
- ``refresh-tokens``: the §7.4 token refresh of that card now, an invalid card included (``token_refresh_pair``).
  Outcome ``refreshed`` / ``refused: <code>`` (the card is invalidated) / ``skipped``.

Every job records its result as an ``AuditEntry`` (action ``debit_card.fix.<action>``, actor ``debit_fixer``,
the operator's reason, ``changes = {"outcome": ..., ...}``) that support reads in the admin; the card's own
history gets a ``DebitCardChange`` when something changed. A card that no longer exists is audited as
``card_not_found`` (nothing to retry). A processor error of ``refresh-tokens`` is audited as ``error: <type>``
and raised: one attempt, so the job lands in ``DeadLetter`` (replayable).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction

from core.audit import audit_record
from core.errors import NotFoundError
from core.transactions import in_transaction
from integrations.errors import ProcessorError

logger = logging.getLogger(__name__)

ACTOR = "debit_fixer"
ACTIONS = ("revalidate", "rehash", "scrub", "refresh-tokens")
DEFAULT_REASON = "debit-card fixer run by an operator"


@dataclass(frozen=True)
class FixResult:
    card_id: int
    action: str
    outcome: str
    audit_id: int

    def as_dict(self) -> dict:
        return {"card_id": self.card_id, "action": self.action, "outcome": self.outcome, "audit_id": self.audit_id}


def _audit(*, card_id: int, user_id: str, action: str, reason: str, changes: dict) -> int:
    entry = audit_record(actor=ACTOR, action=f"debit_card.fix.{action}", target_type="debit_card",
                         target_id=str(card_id), reason=reason, user_id=user_id, changes=changes)
    return entry.pk


def debit_card_fix(*, card_id: int, action: str, reason: str | None = None) -> FixResult:
    """Apply ``action`` (``ACTIONS``) to the debit card ``card_id`` and audit the outcome (module docstring).

    ``revalidate`` / ``rehash`` / ``scrub``: the card write and the audit entry commit together (one transaction).
    ``refresh-tokens``: Usio is called outside any transaction, then the outcome is audited; a processor error is
    audited (``error: <type>``), then raised. Idempotent in effect (each action leaves a fixed card unchanged on
    a second run); each run adds its audit entry. ``ValueError`` for an unknown action.
    """
    from cards.models import DebitCard
    from cards.services import card_rehash, card_revalidate, card_scrub
    from syncing.token_refresh import token_refresh_pair

    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    reason = (reason or "").strip() or DEFAULT_REASON
    card = DebitCard.objects.filter(pk=card_id).only("pk", "user_id").first()
    if card is None:
        audit_id = _audit(card_id=card_id, user_id="", action=action, reason=reason,
                          changes={"outcome": "card_not_found"})
        return FixResult(card_id, action, "card_not_found", audit_id)

    if action == "refresh-tokens":
        if in_transaction():
            raise RuntimeError("refresh-tokens calls Usio: it must not run inside a transaction")
        try:
            refresh = token_refresh_pair(card_ids=[card_id], pair=None, actor=ACTOR, include_invalid=True,
                                         reason=f"debit-card fixer: {reason}"[:2000])
        except ProcessorError as exc:
            _audit(card_id=card_id, user_id=card.user_id, action=action, reason=reason,
                   changes={"outcome": f"error: {type(exc).__name__}"})
            raise
        outcome = refresh.outcome
        audit_id = _audit(card_id=card_id, user_id=card.user_id, action=action, reason=reason,
                          changes={"outcome": outcome})
        return FixResult(card_id, action, outcome, audit_id)

    write = {"revalidate": card_revalidate, "rehash": card_rehash, "scrub": card_scrub}[action]
    done = {"revalidate": "revalidated", "rehash": "rehashed", "scrub": "scrubbed"}[action]
    same = {"revalidate": "already_valid", "rehash": "unchanged", "scrub": "unchanged"}[action]
    with transaction.atomic():
        try:
            card, changes = write(card_id=card_id, actor=ACTOR, reason=f"debit-card fixer: {reason}")
        except NotFoundError:  # deleted between the read above and the lock
            audit_id = _audit(card_id=card_id, user_id=card.user_id, action=action, reason=reason,
                              changes={"outcome": "card_not_found"})
            return FixResult(card_id, action, "card_not_found", audit_id)
        outcome = done if changes else same
        audit_id = _audit(card_id=card_id, user_id=card.user_id, action=action, reason=reason,
                          changes={"outcome": outcome, **changes})
    logger.info("debit card fixed", extra={"card_id": card_id, "action": action, "outcome": outcome})
    return FixResult(card_id, action, outcome, audit_id)
