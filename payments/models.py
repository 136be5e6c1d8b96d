"""The payment record and its history (SPEC §2.1)."""

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone


class Purpose(models.TextChoices):
    SUBSCRIPTION = "subscription"
    FLOAT = "float"
    LOAN = "loan"
    PRENOTE = "prenote"


class Method(models.TextChoices):
    ACH = "ach"
    PINLESS = "pinless"
    RTP = "rtp"


class PaymentType(models.TextChoices):
    DEBIT = "debit"
    CREDIT = "credit"


class Provider(models.TextChoices):
    JPM = "jpm"
    USIO = "usio"


class Status(models.TextChoices):
    PROCESSING = "PROCESSING"  # internal: the processor's answer is not known yet
    ACHSENT = "ACHSENT"
    CLEARED = "CLEARED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CHARGED_BACK = "CHARGED_BACK"
    REFUNDED = "REFUNDED"


class Source(models.TextChoices):
    API = "api"
    WEBHOOK = "webhook"
    CHECK_ACH = "check_ach"
    USIO_SYNC = "usio_sync"
    ADMIN = "admin"
    RECONCILER = "reconciler"


class Payment(models.Model):
    """One money movement (or prenote). ``id`` is our reference sent to the processors (JPM ``endToEndId`` and Usio
    ``AdditionalSearch`` as ``id.hex``: JPM allows 35 characters, a hyphenated UUID has 36).

    ``payment_status`` changes only through ``payments.status.payment_apply_status`` (SPEC §3).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    confirmation_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    user_id = models.CharField(max_length=64)
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    payment_method = models.CharField(max_length=8, choices=Method.choices)
    payment_type = models.CharField(max_length=8, choices=PaymentType.choices)
    payment_provider = models.CharField(max_length=8, choices=Provider.choices)
    merchant_account = models.CharField(max_length=32, null=True, blank=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    loan_id = models.CharField(max_length=64, null=True, blank=True)
    subscription_id = models.CharField(max_length=64, null=True, blank=True)
    cbc_card_id = models.CharField(max_length=64, null=True, blank=True)
    account_id = models.CharField(max_length=64, null=True, blank=True)
    masked_account_number = models.CharField(max_length=4, null=True, blank=True)
    masked_card_number = models.CharField(max_length=4, null=True, blank=True)
    payment_status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROCESSING)
    return_code = models.CharField(max_length=16, null=True, blank=True)
    return_info = models.CharField(max_length=255, null=True, blank=True)
    event_type = models.CharField(max_length=48, null=True, blank=True)
    submit_date = models.DateTimeField(null=True, blank=True)
    return_date = models.DateTimeField(null=True, blank=True)
    cleared_date = models.DateTimeField(null=True, blank=True)
    completion_date = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    client_id = models.CharField(max_length=64, blank=True, help_text="the API client that submitted it")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    version = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-submit_date", "-created_at"]
        permissions = [
            ("sync_payment", "Can ask the processor for a payment's status (sync now)"),
            ("mark_payment_failed", "Can mark a stuck payment failed"),
        ]
        indexes = [
            models.Index(fields=["user_id", "submit_date"], name="payment_user_submit_idx"),
            models.Index(fields=["payment_status", "payment_method", "payment_type"], name="payment_status_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="payment_amount_not_negative"),
            models.CheckConstraint(
                condition=(Q(purpose="prenote", amount=0) | (~Q(purpose="prenote") & Q(amount__gt=0))),
                name="payment_amount_zero_only_for_prenotes",
            ),
            models.CheckConstraint(condition=Q(purpose__in=Purpose.values), name="payment_purpose_valid"),
            models.CheckConstraint(condition=Q(payment_method__in=Method.values), name="payment_method_valid"),
            models.CheckConstraint(condition=Q(payment_type__in=PaymentType.values), name="payment_type_valid"),
            models.CheckConstraint(condition=Q(payment_provider__in=Provider.values), name="payment_provider_valid"),
            models.CheckConstraint(condition=Q(payment_status__in=Status.values), name="payment_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.purpose} {self.payment_type} {self.payment_method} {self.amount} {self.payment_status}"

    @property
    def reference(self) -> str:
        """Our reference at the processor (32 hex characters)."""
        return self.id.hex


class PaymentStatusChange(models.Model):
    """One applied status change: the audit trail support staff read."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="status_changes")
    from_status = models.CharField(max_length=16, choices=Status.choices, null=True, blank=True)
    to_status = models.CharField(max_length=16, choices=Status.choices)
    source = models.CharField(max_length=16, choices=Source.choices)
    actor = models.CharField(max_length=150)
    return_code = models.CharField(max_length=16, null=True, blank=True)
    raw_payload_ref = models.CharField(max_length=255, blank=True, help_text="where the processor's message is kept")
    event_type = models.CharField(max_length=48, null=True, blank=True)
    at = models.DateTimeField(default=timezone.now, help_text="when it happened (the processor's time if known)")

    class Meta:
        ordering = ["id"]  # the order the changes were applied in (``at`` may be a processor's earlier time)
        indexes = [models.Index(fields=["payment", "at"], name="payment_change_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(source__in=Source.values), name="payment_change_source_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.payment_id}: {self.from_status} → {self.to_status} ({self.source})"


# --- Prenotes (SPEC §6; services in ``payments.prenotes``) ------------------------------------------------------------


class PrenoteRequestStatus(models.TextChoices):
    REQUESTED = "requested"  # accepted by the API; the prenote job has not submitted it (yet, or again)
    SUBMITTED = "submitted"  # its Payment exists: the outcome is the payment's status and the account's
    FAILED = "failed"  # never reached the bank: the account is gone or changed, or every attempt failed to send


class PrenoteUsioAccount(models.TextChoices):
    SUBSCRIPTION = "subscription"  # Usio subscription debit account (29111679)
    FLOAT_DEBIT = "float_debit"  # Usio float debit account (29063402)


class PrenoteRequest(models.Model):
    """A request to prove a bank account with a zero-dollar ACH prenote (``POST /api/v1/prenotes``).

    Written by the API (``requested``); the prenote job creates its ``Payment`` (``purpose=prenote``, amount 0) and
    moves it to ``submitted`` in one transaction, so a request is never submitted twice. A submission that
    certainly never reached the processor gives the request back to the job (``requested`` again, after
    ``next_attempt_at``) until ``attempts`` are spent (then ``failed``). ``account_routing_hash`` is the blind index
    of the numbers being proven: an outcome for other numbers never changes the account's ``prenote_status``.
    Changed only by ``payments.prenotes``.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user_id = models.CharField(max_length=64)
    account_id = models.CharField(max_length=64)
    account_routing_hash = models.CharField(max_length=64, help_text="blind index of the numbers being proven")
    masked_account_number = models.CharField(max_length=4)
    provider = models.CharField(max_length=8, choices=Provider.choices)
    usio_account = models.CharField(max_length=16, choices=PrenoteUsioAccount.choices, null=True, blank=True)
    status = models.CharField(max_length=16, choices=PrenoteRequestStatus.choices,
                              default=PrenoteRequestStatus.REQUESTED)
    payment = models.OneToOneField(Payment, on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="prenote_request", help_text="the current attempt's payment")
    attempts = models.PositiveSmallIntegerField(default=0, help_text="submissions started (payments created)")
    last_error = models.CharField(max_length=255, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="not submitted again before this")
    requested_by = models.CharField(max_length=150, help_text="the API client that asked")
    client_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at", "created_at"], name="prenote_due_idx"),
            models.Index(fields=["user_id", "account_id"], name="prenote_account_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=PrenoteRequestStatus.values), name="prenote_status_valid"),
            models.CheckConstraint(
                condition=(Q(provider=Provider.USIO, usio_account__in=PrenoteUsioAccount.values)
                           | Q(provider=Provider.JPM, usio_account__isnull=True)),
                name="prenote_usio_account_iff_usio",
            ),
            models.CheckConstraint(condition=~Q(status=PrenoteRequestStatus.SUBMITTED) | Q(payment__isnull=False),
                                   name="prenote_submitted_has_payment"),
            # At most one request per account waiting for the job (the API answers a repeat with it).
            models.UniqueConstraint(fields=["user_id", "account_id"],
                                    condition=Q(status=PrenoteRequestStatus.REQUESTED),
                                    name="prenote_one_requested_per_account"),
        ]

    def __str__(self) -> str:
        return f"prenote {self.user_id}/{self.account_id} via {self.provider} ({self.status})"


# --- Transaction Service notifications (SPEC §7.2; services in ``payments.transaction_service``) --------------------


class NotificationStatus(models.TextChoices):
    PENDING = "pending"  # to send (again, from next_attempt_at)
    SENT = "sent"  # the Transaction Service accepted it
    DEAD = "dead"  # refused, or attempts spent: see the dead letter


class TransactionServiceNotification(models.Model):
    """One float payment leaving the ACH network's pending states, to tell the Transaction Service.

    Written by the outbox consumer in the relay's transaction (so it exists exactly when the event was consumed)
    and sent by ``payments.transaction_service.ts_notifications_send_due`` outside any transaction, with retries
    and back-off; the receiver is idempotent on ``event_id``. A payment leaves ACHSENT/CLEARED once, so there is at
    most one notification per payment.
    """

    event_id = models.UUIDField(unique=True)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="ts_notifications")
    body = models.JSONField(help_text="the notification as sent (no account data)")
    status = models.CharField(max_length=8, choices=NotificationStatus.choices, default=NotificationStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="failed sends")
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="ts_notification_due_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=NotificationStatus.values), name="ts_notification_status"),
        ]

    def __str__(self) -> str:
        return f"Transaction Service notification {self.event_id} ({self.status})"
