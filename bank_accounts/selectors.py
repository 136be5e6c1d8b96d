"""Bank account reads. None of them returns or logs a plaintext number unless the caller reads the field itself."""

from __future__ import annotations

from django.db.models import QuerySet

from bank_accounts.models import BankAccount, BankAccountHistory
from bank_accounts.validation import validate_account_key
from core.errors import NotFoundError
from core.sql import select_first


def bank_account_get(*, user_id: str, account_id: str, with_numbers: bool = False) -> BankAccount:
    """The bank account (``user_id``, ``account_id``); 404 ``bank_account_not_found`` if there is none, 422
    ``invalid_user_id`` / ``invalid_account_id`` for a malformed key.

    The encrypted numbers are deferred unless ``with_numbers`` (they are decrypted only when read; a wrong key then
    raises ``core.encryption.DecryptionError``). Only code that must send the numbers to a processor (prenotes,
    ACH submission) asks for them.
    """
    validate_account_key(user_id=user_id, account_id=account_id)
    # = BankAccount.objects.filter(...)[.defer(...)].first(), compiled by hand (core.sql: read twice per submission)
    account = select_first(BankAccount, where={"user_id": user_id, "account_id": account_id}, order_by=("pk",),
                           defer=() if with_numbers else ("account_number", "routing_number"))
    if account is None:
        raise NotFoundError("No such bank account.", code="bank_account_not_found")
    return account


def bank_account_list_for_user(*, user_id: str) -> QuerySet[BankAccount]:
    """The user's bank accounts, oldest first, numbers deferred."""
    return (
        BankAccount.objects.filter(user_id=user_id)
        .defer("account_number", "routing_number")
        .order_by("created_at", "pk")
    )


def bank_account_history_list(*, user_id: str, account_id: str | None = None) -> QuerySet[BankAccountHistory]:
    """History rows of the user's bank accounts (or of one account), newest first."""
    queryset = BankAccountHistory.objects.filter(user_id=user_id)
    if account_id is not None:
        queryset = queryset.filter(account_id=account_id)
    return queryset.order_by("-at", "-pk")


def bank_account_user_ids_for_hash(*, account_routing_hash: str, include_history: bool = True) -> list[str]:
    """Sorted distinct user ids that hold, or (with ``include_history``, the default) ever held, a bank account
    with this blind index (``bank_accounts.services.bank_account_hash``).

    Cross-app contract for fraud checks: a user who deleted the account still counts, as a deleted card does for
    ``cards.selectors.card_user_ids_for_hash``. The lookup endpoint passes ``include_history=False`` ("does an
    account exist now"). Database errors propagate: a risk check must fail closed.
    """
    user_ids = set(
        BankAccount.objects.filter(account_routing_hash=account_routing_hash).values_list("user_id", flat=True)
    )
    if include_history:
        user_ids.update(
            BankAccountHistory.objects.filter(account_routing_hash=account_routing_hash)
            .values_list("user_id", flat=True)
            .distinct()
        )
    return sorted(user_ids)
