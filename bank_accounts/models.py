"""Bank accounts (SPEC §2.3): numbers encrypted at rest, a keyed blind index for lookups, an append-only history.

No behaviour lives here: every write goes through ``bank_accounts.services`` (which writes the history row and
enqueues the blocklist removal); the models only declare the data and its database constraints.
"""

from django.db import models

from core.encryption import EncryptedCharField


class AccountType(models.TextChoices):
    """Decides the NACHA transaction code of an ACH entry (27/37 debit, 28/38 prenote: checking/savings)."""

    CHECKING = "checking", "Checking"
    SAVINGS = "savings", "Savings"


class PrenoteStatus(models.TextChoices):
    NONE = "none", "None"
    PENDING = "pending", "Pending"
    VERIFIED = "verified", "Verified"
    FAILED = "failed", "Failed"


class BankAccount(models.Model):
    """A user's bank account, keyed by (``user_id``, ``account_id`` — the Plaid account id).

    ``account_number`` and ``routing_number`` are stored as Fernet ciphertext (``core.encryption``: a wrong key
    raises, never returns ciphertext); ``account_routing_hash`` is the HMAC blind index used to find an account
    by its numbers without decrypting anything; ``last4`` is the only part of a number kept in clear.
    """

    user_id = models.CharField(max_length=64)
    account_id = models.CharField(max_length=64, help_text="Plaid account id.")
    account_number = EncryptedCharField(max_length=17)
    routing_number = EncryptedCharField(max_length=9)
    account_routing_hash = models.CharField(max_length=64, db_index=True, editable=False)
    last4 = models.CharField(max_length=4)
    account_type = models.CharField(max_length=8, choices=AccountType.choices, default=AccountType.CHECKING)
    entry_timestamp = models.DateTimeField(help_text="When the numbers now stored were entered.")
    prenote_status = models.CharField(max_length=8, choices=PrenoteStatus.choices, default=PrenoteStatus.NONE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user_id", "account_id"], name="bankaccount_user_account_unique"),
            models.CheckConstraint(
                condition=models.Q(account_type__in=AccountType.values), name="bankaccount_account_type_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(prenote_status__in=PrenoteStatus.values), name="bankaccount_prenote_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}/{self.account_id} (…{self.last4})"


class HistoryAction(models.TextChoices):
    CREATE = "create", "Create"
    UPDATE = "update", "Update"
    DELETE = "delete", "Delete"
    PRENOTE_STATUS = "prenote_status", "Prenote status"


class BankAccountHistory(models.Model):
    """One row per create, update, delete or prenote-status change of a bank account; append-only.

    Holds what the account looked like after the change (or before a delete): last 4 and blind index, never the
    plaintext or the ciphertext of a number. No foreign key: the history outlives a deleted account.
    """

    action = models.CharField(max_length=16, choices=HistoryAction.choices)
    user_id = models.CharField(max_length=64)
    account_id = models.CharField(max_length=64)
    last4 = models.CharField(max_length=4)
    account_routing_hash = models.CharField(max_length=64, db_index=True)
    account_type = models.CharField(max_length=8, choices=AccountType.choices)
    prenote_status = models.CharField(max_length=8, choices=PrenoteStatus.choices)
    actor = models.CharField(max_length=200)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "bank account history"
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["user_id", "account_id", "at"], name="bankaccthist_user_acct_at")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(action__in=HistoryAction.values), name="bankaccounthistory_action_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(account_type__in=AccountType.values), name="bankaccounthistory_account_type_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(prenote_status__in=PrenoteStatus.values),
                name="bankaccounthistory_prenote_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.user_id}/{self.account_id} by {self.actor} at {self.at:%Y-%m-%d %H:%M:%S}"
