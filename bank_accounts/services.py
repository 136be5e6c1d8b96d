"""Bank account writes and the number-taking lookup (SPEC §2.3, §8, §9).

Rules every function here keeps:
- account and routing numbers are validated (4-17 digits; 9 digits passing the ABA checksum) before anything is
  written, stored only encrypted, hashed into ``account_routing_hash`` and never logged or put in an error;
- every create, update, delete and prenote-status change appends a ``BankAccountHistory`` row in the same
  transaction;
- a create, update or delete asks the blocklist to lift a block on the user (``blocklist_enqueue_removal``),
  which is sent only once the transaction has committed: a failed or rolled-back write enqueues nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from bank_accounts.models import AccountType, BankAccount, BankAccountHistory, HistoryAction, PrenoteStatus
from bank_accounts.validation import (
    validate_account,
    validate_account_key,
    validate_account_routing_hash,
    validate_account_type,
    validate_routing,
)
from core.errors import BadRequest, ConflictError, NotFoundError, ValidationError
from core.hashing import blind_index

logger = logging.getLogger(__name__)

_ENCRYPTED_FIELDS = ("account_number", "routing_number")

# Which prenote status may follow which (SPEC §6). Setting the current status again is a no-op. A number change
# resets the status to ``none`` in ``bank_account_save`` (the prenote verified the old numbers), not here.
PRENOTE_TRANSITIONS: dict[str, frozenset[str]] = {
    PrenoteStatus.NONE: frozenset({PrenoteStatus.PENDING}),
    PrenoteStatus.PENDING: frozenset({PrenoteStatus.VERIFIED, PrenoteStatus.FAILED}),
    # A return can arrive after the three-business-day window; a verified account can be prenoted again.
    PrenoteStatus.VERIFIED: frozenset({PrenoteStatus.PENDING, PrenoteStatus.FAILED}),
    PrenoteStatus.FAILED: frozenset({PrenoteStatus.PENDING}),
}


@dataclass(frozen=True)
class BankAccountSaveResult:
    account: BankAccount
    created: bool
    changed: bool


# --- the blind index (cross-app contract) ---------------------------------------------------------------------


def bank_account_hash(*, routing_number: str, account_number: str) -> str:
    """The blind index of a bank account: ``blind_index("bank", routing_number, account_number)`` (HMAC-SHA256 with
    ``HASH_KEY``, SPEC §9). Pure; the caller validates the numbers. Used by fraud checks and lookups."""
    return blind_index("bank", routing_number, account_number)


# --- writes -----------------------------------------------------------------------------------------------------


def _history(account: BankAccount, *, action: str, actor: str) -> BankAccountHistory:
    return BankAccountHistory.objects.create(
        action=action,
        user_id=account.user_id,
        account_id=account.account_id,
        last4=account.last4,
        account_routing_hash=account.account_routing_hash,
        account_type=account.account_type,
        prenote_status=account.prenote_status,
        actor=actor,
    )


def _enqueue_blocklist_removal(*, user_id: str, account_id: str, action: str) -> None:
    from blocklist.services import blocklist_enqueue_removal  # the other side of the contract; imported lazily

    blocklist_enqueue_removal(user_id=user_id, reason=f"bank account {action}d (account_id {account_id})")


def _locked(user_id: str, account_id: str) -> BankAccount | None:
    # The numbers are not needed to decide anything (the blind index says whether they changed), so they are
    # neither read nor decrypted here.
    return (
        BankAccount.objects.select_for_update()
        .defer(*_ENCRYPTED_FIELDS)
        .filter(user_id=user_id, account_id=account_id)
        .first()
    )


def bank_account_save(
    *,
    user_id: str,
    account_id: str,
    account_number: str,
    routing_number: str,
    account_type: str | None = None,
    actor: str,
) -> BankAccountSaveResult:
    """Create or update the bank account (``user_id``, ``account_id``).

    Rules: ids as ``validate_user_id`` / ``validate_account_id``; ``routing_number`` 9 digits passing the ABA
    checksum (422 ``invalid_routing_number``, ``details.reason`` = ``type``/``non_digit``/``length``/``checksum``);
    ``account_number`` 4-17 digits (422 ``invalid_account_number``); ``account_type`` checking|savings (422
    ``invalid_account_type``), ``None`` meaning checking on create and unchanged on update. Nothing is written
    when any of these fails.

    Side effects (one transaction, the row locked): the row is written with the numbers encrypted,
    ``account_routing_hash`` and ``last4``; new numbers set ``entry_timestamp`` to now and reset
    ``prenote_status`` to ``none`` (a prenote verified the old numbers); a ``BankAccountHistory`` row (``create`` or
    ``update``); then, after commit, one ``blocklist.remove_for_user`` job for the user.

    Idempotent: saving what is already stored (same numbers, same type) changes nothing, writes no history and
    enqueues nothing (``changed=False``), so a retried request does not repeat its side effects. Two concurrent
    first saves of the same account end as one create and one update (or no-op), never an error.
    """
    validate_account_key(user_id=user_id, account_id=account_id)
    routing_number = validate_routing(routing_number)
    account_number = validate_account(account_number)
    if account_type is not None:
        validate_account_type(account_type)
    account_hash = bank_account_hash(routing_number=routing_number, account_number=account_number)
    now = timezone.now()

    with transaction.atomic():
        account = _locked(user_id, account_id)
        created = False
        if account is None:
            try:
                with transaction.atomic():  # a savepoint: a concurrent create makes this one an update
                    account = BankAccount.objects.create(
                        user_id=user_id,
                        account_id=account_id,
                        account_number=account_number,
                        routing_number=routing_number,
                        account_routing_hash=account_hash,
                        last4=account_number[-4:],
                        account_type=account_type or AccountType.CHECKING,
                        entry_timestamp=now,
                        prenote_status=PrenoteStatus.NONE,
                    )
                created = True
            except IntegrityError:
                account = _locked(user_id, account_id)
                if account is None:  # not a duplicate key after all
                    raise

        if not created:
            numbers_changed = account.account_routing_hash != account_hash
            type_changed = account_type is not None and account.account_type != account_type
            if not numbers_changed and not type_changed:
                return BankAccountSaveResult(account=account, created=False, changed=False)
            fields = ["updated_at"]
            if numbers_changed:
                account.account_number = account_number
                account.routing_number = routing_number
                account.account_routing_hash = account_hash
                account.last4 = account_number[-4:]
                account.entry_timestamp = now
                account.prenote_status = PrenoteStatus.NONE
                fields += [*_ENCRYPTED_FIELDS, "account_routing_hash", "last4", "entry_timestamp", "prenote_status"]
            if type_changed:
                account.account_type = account_type
                fields.append("account_type")
            account.save(update_fields=fields)

        action = (HistoryAction.CREATE if created else HistoryAction.UPDATE).value
        _history(account, action=action, actor=actor)
        _enqueue_blocklist_removal(user_id=user_id, account_id=account_id, action=action)

    logger.info(
        "bank account saved",
        extra={"user_id": user_id, "account_id": account_id, "last4": account.last4, "action": action},
    )
    return BankAccountSaveResult(account=account, created=created, changed=True)


def bank_account_delete(*, user_id: str, account_id: str, actor: str) -> None:
    """Delete the bank account (``user_id``, ``account_id``).

    404 ``bank_account_not_found`` when there is none (nothing written). Side effects (one transaction): the row is
    deleted, a ``delete`` history row keeps its last 4 and blind index, and after commit one
    ``blocklist.remove_for_user`` job is enqueued. Not idempotent by design: a second delete is a 404.
    """
    validate_account_key(user_id=user_id, account_id=account_id)
    with transaction.atomic():
        account = _locked(user_id, account_id)
        if account is None:
            raise NotFoundError("No such bank account.", code="bank_account_not_found")
        _history(account, action=HistoryAction.DELETE, actor=actor)
        BankAccount.objects.filter(pk=account.pk).delete()
        _enqueue_blocklist_removal(user_id=user_id, account_id=account_id, action=HistoryAction.DELETE.value)
    logger.info("bank account deleted", extra={"user_id": user_id, "account_id": account_id,
                                                "last4": account.last4})


def bank_account_set_prenote_status(
    *, user_id: str, account_id: str, prenote_status: str, actor: str
) -> BankAccount:
    """Move the account's ``prenote_status`` along ``PRENOTE_TRANSITIONS`` (for the prenote flow, SPEC §6).

    422 ``invalid_prenote_status`` for an unknown status, 404 ``bank_account_not_found``, 409
    ``invalid_prenote_transition`` for a move the table refuses (nothing written). Side effects (row locked,
    conditional update): the status, and a ``prenote_status`` history row. No blocklist removal: the user did not
    change the account. Idempotent: setting the current status again writes nothing.
    """
    validate_account_key(user_id=user_id, account_id=account_id)
    if prenote_status not in PrenoteStatus.values:
        raise ValidationError(f"prenote_status must be one of {', '.join(PrenoteStatus.values)}.",
                              code="invalid_prenote_status")
    with transaction.atomic():
        account = _locked(user_id, account_id)
        if account is None:
            raise NotFoundError("No such bank account.", code="bank_account_not_found")
        current = account.prenote_status
        if current == prenote_status:
            return account
        if prenote_status not in PRENOTE_TRANSITIONS[current]:
            raise ConflictError(
                f"prenote_status cannot go from {current} to {prenote_status}.",
                code="invalid_prenote_transition",
                details={"from": current, "to": prenote_status},
            )
        updated = BankAccount.objects.filter(pk=account.pk, prenote_status=current).update(
            prenote_status=prenote_status, updated_at=timezone.now()
        )
        if updated != 1:  # unreachable under the row lock; refuse rather than write a wrong history row
            raise ConflictError("The bank account changed meanwhile; retry.", code="concurrent_update")
        account.prenote_status = prenote_status
        _history(account, action=HistoryAction.PRENOTE_STATUS, actor=actor)
    logger.info("bank account prenote status set", extra={"user_id": user_id, "account_id": account_id,
                                                          "from": current, "to": prenote_status})
    return account


# --- lookup (takes numbers, so it validates and hashes them here) -----------------------------------------------


def bank_account_lookup(
    *,
    routing_number: str | None = None,
    account_number: str | None = None,
    account_routing_hash: str | None = None,
) -> dict:
    """Does a bank account exist? ``{"exists": bool, "user_ids": [sorted distinct user ids]}`` over current accounts.

    Exactly one form: ``routing_number`` + ``account_number`` (validated like a save, then hashed on arrival —
    never stored or logged), or ``account_routing_hash`` (64 hex). Anything else: 400
    ``invalid_lookup_request``. Read-only.
    """
    from bank_accounts.selectors import bank_account_user_ids_for_hash

    by_numbers = routing_number is not None or account_number is not None
    by_hash = account_routing_hash is not None
    if by_numbers == by_hash or (by_numbers and (routing_number is None or account_number is None)):
        raise BadRequest(
            "Send either routing_number and account_number, or account_routing_hash.",
            code="invalid_lookup_request",
        )
    if by_numbers:
        routing_number = validate_routing(routing_number)
        account_number = validate_account(account_number)
        account_routing_hash = bank_account_hash(routing_number=routing_number, account_number=account_number)
    else:
        account_routing_hash = validate_account_routing_hash(account_routing_hash)
    user_ids = bank_account_user_ids_for_hash(account_routing_hash=account_routing_hash, include_history=False)
    return {"exists": bool(user_ids), "user_ids": user_ids}
