"""Writes of the cards domain (SPEC §2.2, §8): save, delete, admin update, invalidate, the test failure switch.

Every write locks the user's card row (``select_for_update``) inside its own transaction, so two concurrent
saves for one user are serialised and the change limit cannot be overrun. Card numbers and CVVs are never
accepted; the values here are last 4, expiry (MMYYYY) and Usio tokens. Nothing here logs tokens.

The reads (``card_get``, ``card_changeable``, ``card_changes_list``, ``card_user_ids_for_hash``) live in
``cards.selectors`` and are importable from here too.
"""

import logging
import re
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from cards.models import TOKEN_MAX_LENGTH, ChangeType, DebitCard, DebitCardChange
from cards.selectors import (
    REASON_PAYMENT_PROCESSING,
    card_changeable,
    card_changes_list,
    card_get,
    card_user_ids_for_hash,
    max_changes,
    user_has_processing_card_payment,
)
from core.audit import audit_record
from core.card_data import looks_like_card_number
from core.errors import ConflictError, NotFoundError, ValidationError
from core.hashing import blind_index
from core.validators import validate_user_id

__all__ = [
    "TOKEN_FIELDS",
    "card_admin_update",
    "card_changeable",
    "card_changes_list",
    "card_delete",
    "card_get",
    "card_hash",
    "card_invalidate",
    "card_save",
    "card_toggle_failure",
    "card_user_ids_for_hash",
    "clean_card_exp",
    "clean_masked_card_number",
    "clean_token",
]

logger = logging.getLogger(__name__)

TOKEN_FIELDS = ("transaction_reference_id", "debit_transaction_reference_id")
_TOKEN_RE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces
_LAST4_RE = re.compile(r"^[0-9]{4}$")
_CARD_EXP_RE = re.compile(r"^[0-9]{6}$")
#: An expiry further ahead than this is a typo (issuers print 3-5 years; 20 leaves room).
MAX_EXPIRY_YEARS_AHEAD = 20
INVALID_REASON_MAX = 200


# --- validation (shared with the admin form) ------------------------------------------------------

def clean_masked_card_number(value: object) -> str:
    """Exactly 4 ASCII digits (the last 4 of the card), else 422 ``invalid_masked_card_number``."""
    if not isinstance(value, str) or not _LAST4_RE.match(value):
        raise ValidationError("masked_card_number must be exactly the last 4 digits of the card.",
                              code="invalid_masked_card_number", details={"field": "masked_card_number"})
    return value


def clean_card_exp(value: object, *, field: str = "card_exp") -> str:
    """MMYYYY with month 01-12, not before the current month (America/Chicago calendar: a card is good through
    the last day of its month), at most 20 years ahead. 422 ``invalid_card_exp`` (malformed, bad month, too far)
    or ``card_expired`` (in the past)."""
    if not isinstance(value, str) or not _CARD_EXP_RE.match(value):
        raise ValidationError("card_exp must be MMYYYY (6 digits).", code="invalid_card_exp",
                              details={"field": field})
    month, year = int(value[:2]), int(value[2:])
    if not 1 <= month <= 12:
        raise ValidationError("card_exp month must be 01 to 12.", code="invalid_card_exp", details={"field": field})
    today = timezone.localtime(timezone.now(), ZoneInfo(settings.BUSINESS_TIME_ZONE))
    if (year, month) < (today.year, today.month):
        raise ValidationError("The card has expired.", code="card_expired", details={"field": field})
    if year > today.year + MAX_EXPIRY_YEARS_AHEAD:
        raise ValidationError(f"card_exp is more than {MAX_EXPIRY_YEARS_AHEAD} years ahead.",
                              code="invalid_card_exp", details={"field": field})
    return value


def clean_token(value: object, *, field: str) -> str:
    """A Usio token: 1-64 printable ASCII characters without spaces. 422 ``token_empty`` (empty or blank),
    ``token_too_long``, ``token_malformed`` (spaces, control or non-ASCII characters), or
    ``card_data_not_allowed`` (it looks like a card number). The value is never echoed."""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string.", code="token_malformed", details={"field": field})
    if not value.strip():
        raise ValidationError(f"{field} must not be empty.", code="token_empty", details={"field": field})
    if len(value) > TOKEN_MAX_LENGTH:
        raise ValidationError(f"{field} must be at most {TOKEN_MAX_LENGTH} characters.", code="token_too_long",
                              details={"field": field, "max_length": TOKEN_MAX_LENGTH})
    if not _TOKEN_RE.match(value):
        raise ValidationError(f"{field} must be printable ASCII without spaces.", code="token_malformed",
                              details={"field": field})
    if looks_like_card_number(value):
        raise ValidationError("Card numbers must never be sent to this service.", code="card_data_not_allowed",
                              details={"field": field})
    return value


def _require_actor(actor: str) -> str:
    if not actor or not str(actor).strip():
        raise ValidationError("An actor is required.", code="actor_required")
    return str(actor).strip()[:150]


# --- contract -------------------------------------------------------------------------------------

def card_hash(*, last4: str, card_exp: str) -> str:
    """Cross-app contract: the card's blind index, ``blind_index("card", last4, card_exp)`` — keyed
    HMAC-SHA256 under ``HASH_KEY`` (SPEC §9). Pure; the caller validates its inputs."""
    return blind_index("card", last4, card_exp)


# --- writes ---------------------------------------------------------------------------------------

def _not_changeable(reason: str) -> ConflictError:
    if reason == REASON_PAYMENT_PROCESSING:
        message = "The card cannot be changed while a card payment is processing."
        details = {"reason": reason}
    else:
        message = f"The card was changed {max_changes()} times in the last 30 days; try again later."
        details = {"reason": reason, "max_changes": max_changes(), "window_days": 30}
    return ConflictError(message, code="debit_card_not_changeable", details=details)


def _change(*, card_user_id: str, change_type: str, actor: str, old: DebitCard | None, new: DebitCard | None,
            reason: str = "") -> DebitCardChange:
    return DebitCardChange.objects.create(
        user_id=card_user_id, change_type=change_type, actor=actor, reason=reason,
        old_masked_card_number=old.masked_card_number if old else "",
        old_hashed_card_number=old.hashed_card_number if old else "",
        old_card_exp=old.card_exp if old else "",
        new_masked_card_number=new.masked_card_number if new else "",
        new_hashed_card_number=new.hashed_card_number if new else "",
        new_card_exp=new.card_exp if new else "",
    )


def _snapshot(card: DebitCard) -> DebitCard:
    return DebitCard(masked_card_number=card.masked_card_number, hashed_card_number=card.hashed_card_number,
                     card_exp=card.card_exp)


def _locked_card(user_id: str) -> DebitCard | None:
    return DebitCard.objects.select_for_update().filter(user_id=user_id).first()


def card_save(
    *, user_id: str, masked_card_number: str, card_exp: str, transaction_reference_id: str,
    debit_transaction_reference_id: str, actor: str,
) -> tuple[DebitCard, bool]:
    """Put a card on file for the user, replacing the active one (SPEC §8). Returns ``(card, created)``.

    Rules: inputs validated (last 4, MMYYYY not in the past, tokens 1-64 printable characters; 422 codes of the
    ``clean_*`` functions); refused with 409 ``debit_card_not_changeable`` (``details.reason``) when
    ``card_changeable`` says no, evaluated under the row lock.
    Side effects, in one transaction: the card row is created or overwritten (new hash, tokens, ``created_on``
    = now, ``is_valid`` reset to true, ``invalid_*`` cleared, ``token_refreshed_at`` and ``force_failure``
    reset) and one ``DebitCardChange`` (``created`` or ``replaced``) is recorded.
    Idempotent: saving exactly the card on file (same last 4, expiry and tokens) while it is valid changes
    nothing, records nothing and is not refused (a retried request). Saving it while invalid re-validates it
    and counts as a change (SPEC §2.2: the user resets by adding a card again).
    """
    validate_user_id(user_id)
    last4 = clean_masked_card_number(masked_card_number)
    exp = clean_card_exp(card_exp)
    credit_token = clean_token(transaction_reference_id, field="transaction_reference_id")
    debit_token = clean_token(debit_transaction_reference_id, field="debit_transaction_reference_id")
    actor = _require_actor(actor)
    new_hash = card_hash(last4=last4, card_exp=exp)

    # A concurrent first save for the same user loses on the unique user_id; retrying once finds its row.
    for attempt in range(2):
        try:
            with transaction.atomic():
                card = _locked_card(user_id)
                if (card is not None and card.is_valid and card.masked_card_number == last4 and card.card_exp == exp
                        and card.transaction_reference_id == credit_token
                        and card.debit_transaction_reference_id == debit_token):
                    return card, False
                changeable, reason = card_changeable(user_id=user_id)
                if not changeable:
                    raise _not_changeable(reason)
                now = timezone.now()
                old = _snapshot(card) if card is not None else None
                created = card is None
                if created:
                    card = DebitCard(user_id=user_id)
                card.masked_card_number = last4
                card.card_exp = exp
                card.hashed_card_number = new_hash
                card.transaction_reference_id = credit_token
                card.debit_transaction_reference_id = debit_token
                card.created_on = now
                card.is_valid = True
                card.invalid_date = None
                card.invalid_reason = ""
                card.token_refreshed_at = None
                card.force_failure = False
                card.save()
                change_type = ChangeType.CREATED if created else ChangeType.REPLACED
                _change(card_user_id=user_id, change_type=change_type, actor=actor, old=old, new=card)
            logger.info("debit card saved", extra={"user_id": user_id, "change_type": str(change_type)})
            return card, created
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def card_delete(*, user_id: str, actor: str) -> None:
    """Remove the user's active card. 404 ``debit_card_not_found`` when there is none (a repeated DELETE
    gets 404); 409 ``debit_card_not_changeable`` (reason ``payment_processing``) while a pinless/RTP payment is
    PROCESSING. The change limit does not apply (removing a card puts no new card on file) and a deletion
    does not count towards it. Side effects: the row is deleted and a ``deleted`` change recorded, in one
    transaction."""
    validate_user_id(user_id)
    actor = _require_actor(actor)
    with transaction.atomic():
        card = _locked_card(user_id)
        if card is None:
            raise NotFoundError("The user has no debit card.", code="debit_card_not_found")
        if user_has_processing_card_payment(user_id=user_id):
            raise _not_changeable(REASON_PAYMENT_PROCESSING)
        _change(card_user_id=user_id, change_type=ChangeType.DELETED, actor=actor, old=card, new=None)
        card.delete()
    logger.info("debit card deleted", extra={"user_id": user_id})


def card_admin_update(
    *, user_id: str, actor: str, reason: str, transaction_reference_id: str | None = None,
    debit_transaction_reference_id: str | None = None, card_exp: str | None = None, is_valid: bool | None = None,
) -> DebitCard:
    """Support/admin override of the card on file (SPEC §8): tokens, expiry, validity. Not subject to the
    change rules (support fixes what users cannot).

    Rules: ``reason`` required (422 ``reason_required``), at least one field (422 ``nothing_to_update``), each
    value validated as in ``card_save``; 404 ``debit_card_not_found`` without a card.
    Side effects, in one transaction: the card updated (a new expiry re-hashes it; ``is_valid=true`` clears
    ``invalid_*``, ``is_valid=false`` sets ``invalid_date`` = now and reason ``admin_override`` if it was
    valid), one ``admin_updated`` change recorded, and one ``AuditEntry`` (action ``debit_card.admin_update``)
    with actor, reason and the changes — expiry and validity old/new, and only the *names* of replaced tokens.
    Not idempotent by design: every call is audited.
    """
    validate_user_id(user_id)
    actor = _require_actor(actor)
    if not reason or not str(reason).strip():
        raise ValidationError("A reason is required.", code="reason_required")
    updates = {"transaction_reference_id": transaction_reference_id,
               "debit_transaction_reference_id": debit_transaction_reference_id}
    if all(v is None for v in (*updates.values(), card_exp, is_valid)):
        raise ValidationError("Nothing to update: give tokens, card_exp or is_valid.", code="nothing_to_update")
    tokens = {field: clean_token(value, field=field) for field, value in updates.items() if value is not None}
    exp = clean_card_exp(card_exp) if card_exp is not None else None
    if is_valid is not None and not isinstance(is_valid, bool):
        raise ValidationError("is_valid must be a boolean.", code="invalid_is_valid", details={"field": "is_valid"})

    with transaction.atomic():
        card = _locked_card(user_id)
        if card is None:
            raise NotFoundError("The user has no debit card.", code="debit_card_not_found")
        old = _snapshot(card)
        changes: dict = {}
        replaced = sorted(field for field, value in tokens.items() if getattr(card, field) != value)
        for field, value in tokens.items():
            setattr(card, field, value)
        if replaced:
            changes["references_replaced"] = replaced
        if exp is not None and exp != card.card_exp:
            changes["card_exp"] = {"old": card.card_exp, "new": exp}
            card.card_exp = exp
            card.hashed_card_number = card_hash(last4=card.masked_card_number, card_exp=exp)
        if is_valid is not None and is_valid != card.is_valid:
            changes["is_valid"] = {"old": card.is_valid, "new": is_valid}
            card.is_valid = is_valid
            card.invalid_date = None if is_valid else timezone.now()
            card.invalid_reason = "" if is_valid else "admin_override"
        card.save()
        _change(card_user_id=user_id, change_type=ChangeType.ADMIN_UPDATED, actor=actor, old=old, new=card,
                reason=str(reason).strip())
        audit_record(actor=actor, action="debit_card.admin_update", target_type="debit_card", target_id=str(card.pk),
                     reason=reason, user_id=user_id, changes=changes)
    logger.info("debit card updated by support", extra={"user_id": user_id, "fields": sorted(changes)})
    return card


def card_invalidate(
    *, user_id: str, reason: str, actor: str = "system", only_if_token: str | None = None
) -> DebitCard | None:
    """Mark the user's card invalid (SPEC §2.2: a hard Usio decline; §7.4: a refused token refresh).

    Sets ``is_valid=false``, ``invalid_date`` = now, ``invalid_reason`` (first 200 characters) and records an
    ``invalidated`` change, in one transaction. Returns the card, or None when the user has no card or — with
    ``only_if_token`` — when the card on file no longer carries that token (it was replaced after the payment
    was sent; the new card must not pay for the old one's decline). Idempotent: an already invalid card is
    returned unchanged (its first ``invalid_date`` is kept).
    """
    validate_user_id(user_id)
    actor = _require_actor(actor)
    with transaction.atomic():
        card = _locked_card(user_id)
        if card is None:
            return None
        if only_if_token is not None and only_if_token not in (card.transaction_reference_id,
                                                               card.debit_transaction_reference_id):
            return None
        if not card.is_valid:
            return card
        card.is_valid = False
        card.invalid_date = timezone.now()
        card.invalid_reason = (str(reason or "").strip() or "invalidated")[:INVALID_REASON_MAX]
        card.save(update_fields=["is_valid", "invalid_date", "invalid_reason", "updated_at"])
        _change(card_user_id=user_id, change_type=ChangeType.INVALIDATED, actor=actor, old=card, new=card,
                reason=card.invalid_reason)
    logger.info("debit card invalidated", extra={"user_id": user_id})
    return card


def card_toggle_failure(*, user_id: str) -> DebitCard:
    """Test environments only: flip ``force_failure`` on the user's card (pinless payments then fail without
    calling the processor). Raises 404 ``not_found`` when ``ENVIRONMENT == "prod"`` (the switch does not exist
    there) and 404 ``debit_card_not_found`` without a card. Not audited (test data only)."""
    if settings.ENVIRONMENT == "prod":
        raise NotFoundError()
    validate_user_id(user_id)
    with transaction.atomic():
        card = _locked_card(user_id)
        if card is None:
            raise NotFoundError("The user has no debit card.", code="debit_card_not_found")
        card.force_failure = not card.force_failure
        card.save(update_fields=["force_failure", "updated_at"])
    logger.info("debit card failure switch toggled", extra={"user_id": user_id, "force_failure": card.force_failure})
    return card


# --- sync pipelines and the debit-card fixer (SPEC §7.4, §7.8; issue 7) ---------------------------------------------

#: Actor of the scheduled token refresh (SPEC §7.4).
REFRESH_JOB_ACTOR = "token_refresh"


def card_store_refreshed_tokens(
    *, card_ids: list[int], old_credit_token: str, old_debit_token: str, new_credit_token: str,
    new_debit_token: str, actor: str = REFRESH_JOB_ACTOR, reason: str = "Usio tokens refreshed",
) -> list[int]:
    """Store the tokens Usio gave for a card's old token pair (SPEC §7.4). Returns the ids of the cards updated.

    Rule: only the cards among ``card_ids`` that still carry exactly the old pair (credit
    ``transaction_reference_id``, debit ``debit_transaction_reference_id``) are updated — a card replaced or
    changed by support since the refresh was scheduled keeps what it has (its new tokens were not refreshed).
    Side effects, in one transaction (rows locked): the two tokens and ``token_refreshed_at`` = now, and per card
    one ``tokens_refreshed`` change with ``actor`` and ``reason`` (the history never holds tokens, so the change
    shows only who refreshed and when). Validity is left as
    it is. Idempotent: a second call with the same arguments finds no card with the old pair and changes nothing
    (unless the new pair equals the old one, which Usio never answers).
    """
    actor = _require_actor(actor)
    new_credit = clean_token(new_credit_token, field="transaction_reference_id")
    new_debit = clean_token(new_debit_token, field="debit_transaction_reference_id")
    ids = sorted({int(card_id) for card_id in card_ids})
    if not ids:
        return []
    now = timezone.now()
    updated: list[int] = []
    with transaction.atomic():
        cards = list(DebitCard.objects.select_for_update().filter(
            pk__in=ids, transaction_reference_id=old_credit_token,
            debit_transaction_reference_id=old_debit_token).order_by("pk"))
        for card in cards:
            card.transaction_reference_id = new_credit
            card.debit_transaction_reference_id = new_debit
            card.token_refreshed_at = now
            card.save(update_fields=["transaction_reference_id", "debit_transaction_reference_id",
                                     "token_refreshed_at", "updated_at"])
            _change(card_user_id=card.user_id, change_type=ChangeType.TOKENS_REFRESHED, actor=actor, old=card,
                    new=card, reason=reason)
            updated.append(card.pk)
    logger.info("debit card tokens refreshed",
                extra={"card_ids": updated, "skipped": len(ids) - len(updated), "actor": actor})
    return updated


def _locked_card_by_id(card_id: int) -> DebitCard:
    card = DebitCard.objects.select_for_update().filter(pk=card_id).first()
    if card is None:
        raise NotFoundError("No such debit card.", code="debit_card_not_found")
    return card


def card_revalidate(*, card_id: int, actor: str, reason: str) -> tuple[DebitCard, dict]:
    """Mark the card valid again (SPEC §7.8 ``revalidate``: support decided the card is good): ``is_valid`` true,
    ``invalid_date`` and ``invalid_reason`` cleared. Returns ``(card, changes)``; ``changes`` is empty when the
    card was valid already (then nothing is written). Side effects, in one transaction: the card row and one
    ``admin_updated`` change (actor, reason). 404 ``debit_card_not_found``. Idempotent."""
    actor = _require_actor(actor)
    with transaction.atomic():
        card = _locked_card_by_id(card_id)
        if card.is_valid:
            return card, {}
        changes = {"is_valid": {"old": False, "new": True}, "invalid_reason": {"old": card.invalid_reason, "new": ""}}
        card.is_valid, card.invalid_date, card.invalid_reason = True, None, ""
        card.save(update_fields=["is_valid", "invalid_date", "invalid_reason", "updated_at"])
        _change(card_user_id=card.user_id, change_type=ChangeType.ADMIN_UPDATED, actor=actor, old=card, new=card,
                reason=reason)
    logger.info("debit card revalidated", extra={"user_id": card.user_id, "card_id": card.pk})
    return card, changes


def card_rehash(*, card_id: int, actor: str, reason: str) -> tuple[DebitCard, dict]:
    """Recompute ``hashed_card_number`` with the current ``HASH_KEY`` (SPEC §7.8 ``rehash``, after a key
    rotation; SPEC §9). Returns ``(card, changes)``; ``changes`` is ``{"hashed_card_number": "recomputed"}``
    (never the hashes) or empty when the stored hash is already current (nothing written). Side effects, in one
    transaction: the card row and one ``admin_updated`` change (old and new hash, as every change records).
    404 ``debit_card_not_found``. Idempotent."""
    actor = _require_actor(actor)
    with transaction.atomic():
        card = _locked_card_by_id(card_id)
        new_hash = card_hash(last4=card.masked_card_number, card_exp=card.card_exp)
        if new_hash == card.hashed_card_number:
            return card, {}
        old = _snapshot(card)
        card.hashed_card_number = new_hash
        card.save(update_fields=["hashed_card_number", "updated_at"])
        _change(card_user_id=card.user_id, change_type=ChangeType.ADMIN_UPDATED, actor=actor, old=old, new=card,
                reason=reason)
    logger.info("debit card re-hashed", extra={"user_id": card.user_id, "card_id": card.pk})
    return card, {"hashed_card_number": "recomputed"}


def card_scrub(*, card_id: int, actor: str, reason: str) -> tuple[DebitCard, dict]:
    """Clear test-only state and normalise stored values (SPEC §7.8 ``scrub``): ``force_failure`` off; tokens and
    ``invalid_reason`` stripped of surrounding whitespace (legacy imports carried it; a token that would become
    empty is left alone and reported as ``token_blank``, never blanked). Returns ``(card, changes)``: the names
    of the fields changed (never token values); empty → nothing written. Side effects, in one transaction: the
    card row and one ``admin_updated`` change. 404 ``debit_card_not_found``. Idempotent."""
    actor = _require_actor(actor)
    changes: dict = {}
    with transaction.atomic():
        card = _locked_card_by_id(card_id)
        fields = []
        if card.force_failure:
            card.force_failure = False
            changes["force_failure"] = {"old": True, "new": False}
            fields.append("force_failure")
        for field in TOKEN_FIELDS:
            value = getattr(card, field)
            stripped = value.strip()
            if stripped == value:
                continue
            if not stripped:
                changes.setdefault("token_blank", []).append(field)
                continue
            setattr(card, field, stripped)
            changes.setdefault("whitespace_stripped", []).append(field)
            fields.append(field)
        if card.invalid_reason != card.invalid_reason.strip():
            card.invalid_reason = card.invalid_reason.strip()
            changes.setdefault("whitespace_stripped", []).append("invalid_reason")
            fields.append("invalid_reason")
        if fields:
            card.save(update_fields=[*fields, "updated_at"])
            _change(card_user_id=card.user_id, change_type=ChangeType.ADMIN_UPDATED, actor=actor, old=card,
                    new=card, reason=reason)
    if fields:
        logger.info("debit card scrubbed", extra={"user_id": card.user_id, "card_id": card.pk, "fields": fields})
    return card, changes
