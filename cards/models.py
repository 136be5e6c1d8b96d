"""Debit cards (SPEC §2.2): the user's one active card and the history of every change to it.

No model here holds a card number: ``masked_card_number`` is the last 4 digits and ``hashed_card_number`` a
keyed HMAC of last 4 + expiry (SPEC §9). The Usio tokens are processor references, not card data; they are never
copied into the history. Rules live in ``cards.services``; these models only hold state and its DB constraints.
"""

from django.db import models
from django.utils import timezone

# A Usio token: 1-64 printable ASCII characters without spaces (services check it, the DB keeps the bound).
TOKEN_MAX_LENGTH = 64
LAST4_REGEX = r"^[0-9]{4}$"
CARD_EXP_REGEX = r"^(0[1-9]|1[0-2])[0-9]{4}$"  # MMYYYY
HASH_REGEX = r"^[0-9a-f]{64}$"


class DebitCard(models.Model):
    """The user's active debit card. One row per user (unique ``user_id``); replacing a card updates the row.

    ``created_on`` is when the current card was saved; ``created_at`` when the user's row first appeared.
    ``is_valid``/``invalid_date``/``invalid_reason`` move together (DB constraint). ``force_failure`` is a test
    switch: pinless payments on such a card fail without calling the processor (never honoured in prod).
    """

    user_id = models.CharField(max_length=64)
    masked_card_number = models.CharField(max_length=4, help_text="Last 4 digits.")
    hashed_card_number = models.CharField(max_length=64, db_index=True, help_text="HMAC(HASH_KEY, last 4 + expiry).")
    transaction_reference_id = models.CharField(max_length=TOKEN_MAX_LENGTH, help_text="Usio credit token.")
    debit_transaction_reference_id = models.CharField(max_length=TOKEN_MAX_LENGTH, help_text="Usio debit token.")
    card_exp = models.CharField(max_length=6, help_text="Expiry, MMYYYY.")
    created_on = models.DateTimeField(default=timezone.now, help_text="When the current card was saved.")
    is_valid = models.BooleanField(default=True)
    invalid_date = models.DateTimeField(null=True, blank=True)
    invalid_reason = models.CharField(max_length=200, blank=True)
    token_refreshed_at = models.DateTimeField(null=True, blank=True)
    force_failure = models.BooleanField(default=False, help_text="Test environments only.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user_id"], name="debitcard_one_per_user"),
            models.CheckConstraint(condition=models.Q(masked_card_number__regex=LAST4_REGEX),
                                   name="debitcard_masked_is_last4"),
            models.CheckConstraint(condition=models.Q(card_exp__regex=CARD_EXP_REGEX),
                                   name="debitcard_card_exp_mmyyyy"),
            models.CheckConstraint(condition=models.Q(hashed_card_number__regex=HASH_REGEX),
                                   name="debitcard_hash_is_hex_sha256"),
            models.CheckConstraint(
                condition=~models.Q(transaction_reference_id="") & ~models.Q(debit_transaction_reference_id=""),
                name="debitcard_tokens_not_empty",
            ),
            models.CheckConstraint(
                condition=(models.Q(is_valid=True, invalid_date__isnull=True)
                           | models.Q(is_valid=False, invalid_date__isnull=False)),
                name="debitcard_invalid_date_iff_invalid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} ••••{self.masked_card_number} {self.card_exp[:2]}/{self.card_exp[2:]}"


class ChangeType(models.TextChoices):
    CREATED = "created", "Created"
    REPLACED = "replaced", "Replaced"
    DELETED = "deleted", "Deleted"
    ADMIN_UPDATED = "admin_updated", "Admin update"
    INVALIDATED = "invalidated", "Invalidated"
    TOKENS_REFRESHED = "tokens_refreshed", "Tokens refreshed"


#: Change types that count towards DEBIT_CARD_MAX_CHANGES (a new card was put on file by the user's side).
COUNTED_CHANGE_TYPES = (ChangeType.CREATED, ChangeType.REPLACED)


class DebitCardChange(models.Model):
    """Append-only history of a user's card: save, replace, delete, admin update, invalidation.

    Old/new last 4, expiry and hash only — never tokens. ``actor`` is who did it (``service:<key name>``,
    ``user:<sub>``, an API key or staff name for admin updates, ``system`` for automatic invalidations).
    """

    user_id = models.CharField(max_length=64)
    change_type = models.CharField(max_length=16, choices=ChangeType.choices)
    old_masked_card_number = models.CharField(max_length=4, blank=True)
    new_masked_card_number = models.CharField(max_length=4, blank=True)
    old_hashed_card_number = models.CharField(max_length=64, blank=True)
    new_hashed_card_number = models.CharField(max_length=64, blank=True)
    old_card_exp = models.CharField(max_length=6, blank=True)
    new_card_exp = models.CharField(max_length=6, blank=True)
    actor = models.CharField(max_length=150)
    reason = models.TextField(blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["user_id", "at"], name="debitcardchange_user_at"),
            models.Index(fields=["old_hashed_card_number"], name="debitcardchange_old_hash"),
            models.Index(fields=["new_hashed_card_number"], name="debitcardchange_new_hash"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(change_type__in=ChangeType.values),
                                   name="debitcardchange_type_valid"),
            models.CheckConstraint(
                condition=models.Q(old_masked_card_number="") | models.Q(old_masked_card_number__regex=LAST4_REGEX),
                name="debitcardchange_old_masked_last4",
            ),
            models.CheckConstraint(
                condition=models.Q(new_masked_card_number="") | models.Q(new_masked_card_number__regex=LAST4_REGEX),
                name="debitcardchange_new_masked_last4",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.user_id} {self.change_type}"
