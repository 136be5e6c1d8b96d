"""Usio refunds (SPEC §2.4, §8): one ``Refund`` row per refund request that reached step 1 of the submission.

``status`` changes only through ``refunds.services`` (``refund_apply_outcome``) and ``refunds.reconciler``: both go
through ``refunds.services.refund_finish`` — a conditional update from PROCESSING under the row lock.
"""

import uuid

from django.db import models
from django.db.models import Q


class RefundStatus(models.TextChoices):
    PROCESSING = "PROCESSING"  # the Usio outcome is not known yet (between the steps, or after a timeout)
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class AccountType(models.TextChoices):
    """Where the money goes back to (SPEC §2.4): the user's debit card or bank account."""

    DEBIT = "debit"
    ACH = "ach"


class RefundTarget(models.TextChoices):
    """What the refund is tied to."""

    PAYMENT = "payment"  # one of our payments (``payment``)
    USIO_TRANSACTION = "usio_transaction"  # a Usio card transaction with no payment record (``confirmation_id``)
    ARBITRARY = "arbitrary"  # an amount tied to nothing: a credit to the user's card or bank account


class RefundMethod(models.TextChoices):
    """The Usio operation that moves the money (docs/processors.md)."""

    CARD_REFUND = "card_refund"  # SubmitCCVoid of the card debit ``confirmation_id`` (no client reference)
    CARD_CREDIT = "card_credit"  # PinlessCredit to the card's credit token, our reference in AdditionalSearch
    ACH_CREDIT = "ach_credit"  # SubmitACHPayment trans code 22/32, our reference in AdditionalSearch


class Refund(models.Model):
    """A refund to a user. ``id`` is our reference where the Usio operation takes one (``reference``: 32 hex
    characters in ``AdditionalSearch``/``AccountCode1`` of PinlessCredit and ACH credits; SubmitCCVoid takes none).

    ``confirmation_id`` is the Usio card transaction a ``card_refund`` refunds (the payment's own confirmation when
    the refund is tied to a payment); ``refund_confirmation_id`` is the Usio transaction of the refund itself.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    refund_confirmation_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    user_id = models.CharField(max_length=64)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    description = models.CharField(max_length=255)
    account_type = models.CharField(max_length=8, choices=AccountType.choices)
    target = models.CharField(max_length=16, choices=RefundTarget.choices)
    method = models.CharField(max_length=16, choices=RefundMethod.choices)
    payment = models.ForeignKey("payments.Payment", on_delete=models.PROTECT, null=True, blank=True,
                                related_name="refunds")
    loan_id = models.CharField(max_length=64, null=True, blank=True)
    subscription_id = models.CharField(max_length=64, null=True, blank=True)
    confirmation_id = models.CharField(max_length=64, null=True, blank=True,
                                       help_text="the Usio card transaction refunded (card refunds)")
    usio_account = models.CharField(max_length=32, help_text="USIO_ACCOUNTS name of the merchant account used")
    merchant_account = models.CharField(max_length=32, help_text="Usio merchant id used")
    account_id = models.CharField(max_length=64, null=True, blank=True, help_text="bank account (ACH credits)")
    masked_account_number = models.CharField(max_length=4, null=True, blank=True)
    masked_card_number = models.CharField(max_length=4, null=True, blank=True)
    support_name = models.CharField(max_length=150)
    support_email = models.CharField(max_length=254, blank=True)
    support_last_ip = models.GenericIPAddressField(null=True, blank=True)
    date_refunded = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=RefundStatus.choices, default=RefundStatus.PROCESSING)
    failure_code = models.CharField(max_length=16, null=True, blank=True)
    failure_message = models.CharField(max_length=255, null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    client_id = models.CharField(max_length=64, blank=True, help_text="the API client that asked for it")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user_id", "created_at"], name="refund_user_created_idx"),
            models.Index(fields=["status", "created_at"], name="refund_status_created_idx"),
            models.Index(fields=["payment", "status"], name="refund_payment_status_idx"),
            models.Index(fields=["confirmation_id", "status"], name="refund_confirmation_status_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
            models.CheckConstraint(condition=~Q(description=""), name="refund_description_required"),
            models.CheckConstraint(condition=Q(status__in=RefundStatus.values), name="refund_status_valid"),
            models.CheckConstraint(condition=Q(account_type__in=AccountType.values), name="refund_account_type_valid"),
            models.CheckConstraint(condition=Q(target__in=RefundTarget.values), name="refund_target_valid"),
            models.CheckConstraint(condition=Q(method__in=RefundMethod.values), name="refund_method_valid"),
            # The target decides what must be there.
            models.CheckConstraint(
                condition=(Q(target=RefundTarget.PAYMENT, payment__isnull=False)
                           | (~Q(target=RefundTarget.PAYMENT) & Q(payment__isnull=True))),
                name="refund_payment_iff_payment_target",
            ),
            models.CheckConstraint(
                condition=~Q(method=RefundMethod.CARD_REFUND) | Q(confirmation_id__isnull=False),
                name="refund_card_refund_has_confirmation",
            ),
            models.CheckConstraint(
                condition=~Q(method=RefundMethod.ACH_CREDIT) | Q(account_id__isnull=False),
                name="refund_ach_credit_has_account",
            ),
            # A completed refund is a Usio transaction with a date.
            models.CheckConstraint(
                condition=~Q(status=RefundStatus.COMPLETED)
                | Q(refund_confirmation_id__isnull=False, date_refunded__isnull=False),
                name="refund_completed_has_confirmation",
            ),
        ]

    def __str__(self) -> str:
        return f"refund {self.amount} to {self.user_id} ({self.method}) {self.status}"

    @property
    def reference(self) -> str:
        """Our reference at Usio (32 hex characters), where the operation takes one."""
        return self.id.hex
