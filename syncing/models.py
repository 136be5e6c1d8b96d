"""What the sync pipelines keep (SPEC §2.7, §7): JPM webhook messages as received, JPM callbacks for payments we do
not know, and the processors' raw transaction records (staging tables, for audit and reconciliation).

Rows are written only by the pipelines in this app; support reads them in the admin.
"""

from django.db import models
from django.db.models import Q


class WebhookMessageStatus(models.TextChoices):
    RECEIVED = "received"  # stored; its job is queued (or the sweeper will queue it)
    PROCESSED = "processed"  # every callback applied, ignored as stale, or recorded as unknown
    FAILED = "failed"  # the job spent its attempts (see the dead letter)


class JpmWebhookMessage(models.Model):
    """One authenticated JPM callback message (``POST /webhooks/jpm``), stored once: the raw body is kept as
    received, de-duplicated by its SHA-256 (JPM re-sends a message until it gets 200)."""

    content_hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the raw body")
    body = models.TextField(help_text="the raw body as received (callbacks carry no account data)")
    callbacks = models.PositiveSmallIntegerField(help_text="number of callbacks in the message")
    authenticated_by = models.CharField(max_length=16, help_text="signature | mtls")
    status = models.CharField(max_length=16, choices=WebhookMessageStatus.choices,
                              default=WebhookMessageStatus.RECEIVED)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    deliveries = models.PositiveIntegerField(default=1, help_text="how many times JPM sent this exact body")
    last_delivered_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="processing attempts started")
    last_attempt_at = models.DateTimeField(null=True, blank=True, help_text="when the last attempt started")
    outcome = models.JSONField(default=dict, blank=True, help_text="counts per outcome of the last processing")
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name = "JPM webhook message"
        indexes = [models.Index(fields=["status", "received_at"], name="jpm_webhook_status_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=WebhookMessageStatus.values),
                                   name="jpm_webhook_status_valid"),
        ]

    def __str__(self) -> str:
        return f"JPM message {self.content_hash[:12]} ({self.callbacks} callbacks, {self.status})"


class JpmUnknownCallback(models.Model):
    """A JPM callback whose ``endToEndId`` matches no payment: recorded for support (and reported in the logs)
    instead of failing the message and having JPM retry it forever. One row per (endToEndId, status, time)."""

    end_to_end_id = models.CharField(max_length=64, db_index=True)
    firm_root_id = models.CharField(max_length=64, blank=True)
    payment_status = models.CharField(max_length=16)
    create_date_time = models.DateTimeField(null=True, blank=True)
    return_code = models.CharField(max_length=16, blank=True)
    callback = models.JSONField(help_text="the callback as received")
    message = models.ForeignKey(JpmWebhookMessage, on_delete=models.PROTECT, related_name="unknown_callbacks")
    first_seen_at = models.DateTimeField(auto_now_add=True)
    times_seen = models.PositiveIntegerField(default=1)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)

    class Meta:
        verbose_name = "JPM unknown callback"
        ordering = ["-first_seen_at"]
        constraints = [
            models.UniqueConstraint(fields=["end_to_end_id", "payment_status", "create_date_time"],
                                    name="jpm_unknown_callback_once"),
        ]

    def __str__(self) -> str:
        return f"unknown JPM callback {self.end_to_end_id} {self.payment_status}"


class UsioRecordType(models.TextChoices):
    TRANSACTION = "transaction"  # GetTransactionList ReportType transactions
    RETURN = "return"  # achreturns
    CHARGEBACK = "chargeback"  # chargebacks


class UsioKind(models.TextChoices):
    DEBIT = "debit"
    CREDIT = "credit"


class UsioTransaction(models.Model):
    """A raw Usio transaction record (SPEC §2.7; seed 004's usio-debit/credit-transactions tables, one table with
    ``kind``). Unique per (confirmation, record type): the transactions report, the returns report and the
    chargebacks report each contribute their own row for the same transaction."""

    confirmation = models.CharField(max_length=64)
    record_type = models.CharField(max_length=16, choices=UsioRecordType.choices)
    kind = models.CharField(max_length=8, choices=UsioKind.choices)
    merchant_account = models.CharField(max_length=32, db_index=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    status = models.CharField(max_length=16)
    return_code = models.CharField(max_length=16, blank=True)
    reference = models.CharField(max_length=64, blank=True, db_index=True, help_text="AdditionalSearch")
    account_mask = models.CharField(max_length=32, blank=True)
    transaction_date = models.DateTimeField()
    event_date = models.DateTimeField(null=True, blank=True, help_text="return or chargeback date")
    payment = models.ForeignKey("payments.Payment", on_delete=models.SET_NULL, null=True, blank=True,
                                related_name="usio_records", help_text="the matched payment, if any")
    raw = models.JSONField(help_text="the record as received (redacted)")
    first_seen_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-transaction_date"]
        verbose_name = "Usio transaction"
        constraints = [
            models.UniqueConstraint(fields=["confirmation", "record_type"], name="usio_transaction_once"),
            models.CheckConstraint(condition=Q(record_type__in=UsioRecordType.values),
                                   name="usio_transaction_record_type_valid"),
            models.CheckConstraint(condition=Q(kind__in=UsioKind.values), name="usio_transaction_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"Usio {self.record_type} {self.confirmation} ({self.kind} {self.amount} {self.status})"


class JpmTransaction(models.Model):
    """A raw JPM transaction detail record (SPEC §2.7, §7.5), unique per JPM transaction id."""

    transaction_id = models.CharField(max_length=64, unique=True)
    account_id = models.CharField(max_length=64, blank=True)
    transaction_date = models.DateField(db_index=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3, blank=True)
    credit_debit_indicator = models.CharField(max_length=16, blank=True)
    status = models.CharField(max_length=32, blank=True)
    end_to_end_id = models.CharField(max_length=64, blank=True, db_index=True)
    firm_root_id = models.CharField(max_length=64, blank=True)
    payment_type = models.CharField(max_length=32, blank=True)
    description = models.CharField(max_length=255, blank=True)
    raw = models.JSONField(help_text="the record as received (redacted)")
    first_seen_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "JPM transaction"
        ordering = ["-transaction_date", "transaction_id"]

    def __str__(self) -> str:
        return f"JPM transaction {self.transaction_id} ({self.transaction_date} {self.amount})"
