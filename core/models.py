"""Cross-cutting models: API clients, dead-lettered jobs, the audit trail."""

from django.db import models


class Role(models.TextChoices):
    SERVICE = "service", "Service"
    SUPPORT = "support", "Support"
    ADMIN = "admin", "Admin"


class ApiKey(models.Model):
    """A service client's API key. Only a SHA-256 of the key is stored; the key is shown once."""

    name = models.CharField(max_length=100, unique=True)
    role = models.CharField(max_length=16, choices=Role.choices)
    prefix = models.CharField(max_length=16, help_text="First characters of the key, to recognise it.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="apikey_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.role}, {self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class DeadLetter(models.Model):
    """A background job that exhausted its queue's attempts (SPEC §7), kept for support to replay.

    ``last_error`` is redacted before it is stored: it may quote data from the job.
    """

    task_name = models.CharField(max_length=200, db_index=True)
    task_id = models.CharField(max_length=64, blank=True)
    queue = models.CharField(max_length=64)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    last_error = models.TextField()
    attempts = models.PositiveIntegerField()
    failed_at = models.DateTimeField(auto_now_add=True, db_index=True)
    replayed_at = models.DateTimeField(null=True, blank=True)
    replayed_by = models.CharField(max_length=150, blank=True)
    replay_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-failed_at"]
        permissions = [("replay_deadletter", "Can replay a dead-lettered job")]

    def __str__(self) -> str:
        return f"{self.task_name} [{self.task_id}] failed after {self.attempts} attempt(s)"


class AuditEntry(models.Model):
    """Who did what to which record, and why: every support/admin change of state (append-only).

    ``changes`` holds field names and non-sensitive new values only (never tokens or account numbers).
    """

    actor = models.CharField(max_length=150)
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64)
    target_id = models.CharField(max_length=64)
    user_id = models.CharField(max_length=64, blank=True, db_index=True)
    reason = models.TextField()
    changes = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["target_type", "target_id"])]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.target_type}:{self.target_id}"


class OutboxEvent(models.Model):
    """An event written in the same transaction as the change it describes (SPEC §4: the transactional outbox).

    ``position`` orders every event (the pull feed's cursor); ``event_id`` is the stable id consumers de-duplicate
    on; ``sequence`` orders the events of one aggregate (a payment). ``published_at`` is set once the in-process
    consumers have handled it. An event whose transaction rolled back never exists, so it is never published.
    """

    position = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(unique=True, editable=False)
    type = models.CharField(max_length=64, db_index=True)
    source = models.CharField(max_length=64, default="PaymentService")
    subject = models.CharField(max_length=64, help_text="confirmation_id or payment id")
    aggregate_id = models.CharField(max_length=64)
    sequence = models.PositiveIntegerField()
    data = models.JSONField()
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["aggregate_id", "sequence"], name="outbox_aggregate_sequence_unique"),
        ]
        indexes = [models.Index(fields=["published_at", "position"], name="outbox_pending_idx")]

    def __str__(self) -> str:
        return f"{self.type} {self.subject} #{self.sequence}"


class IdempotencyKeyStatus(models.TextChoices):
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"


class IdempotencyKey(models.Model):
    """One ``Idempotency-Key`` a client sent, and the response it got (SPEC §5; IETF draft semantics).

    Unique per ``(client_id, key)``: the unique constraint is what makes two concurrent first requests race-safe
    (``core.idempotency.idempotency_begin``). An ``in_progress`` record is leased until ``lease_expires_at``; after
    that it is *stale* (the first request's process probably died) and a retry may take it over. A ``completed``
    record holds the response to replay. ``resource_id`` links the record to what the request created (e.g. the
    payment id) so that a stale record can be recovered. Records are purged after the retention (at least 24 h).
    """

    client_id = models.CharField(max_length=255, help_text="The API client (Principal.client_id) that owns the key.")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and canonical JSON body.")
    status = models.CharField(
        max_length=16, choices=IdempotencyKeyStatus.choices, default=IdempotencyKeyStatus.IN_PROGRESS
    )
    lease_expires_at = models.DateTimeField(help_text="While in progress: after this instant the claim is stale.")
    resource_id = models.CharField(max_length=255, null=True, blank=True)
    response_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "idempotency key"
        constraints = [
            models.UniqueConstraint(fields=["client_id", "key"], name="idempotencykey_client_key_unique"),
            models.CheckConstraint(
                condition=models.Q(status__in=IdempotencyKeyStatus.values), name="idempotencykey_status_valid"
            ),
            models.CheckConstraint(
                condition=~models.Q(client_id="") & ~models.Q(key="") & ~models.Q(fingerprint=""),
                name="idempotencykey_identity_not_empty",
            ),
            # A completed record always has the response to replay; an in-progress one never has one.
            models.CheckConstraint(
                condition=(
                    models.Q(
                        status=IdempotencyKeyStatus.IN_PROGRESS,
                        response_status_code__isnull=True,
                        completed_at__isnull=True,
                    )
                    | models.Q(
                        status=IdempotencyKeyStatus.COMPLETED,
                        response_status_code__gte=100,
                        response_status_code__lte=599,
                        completed_at__isnull=False,
                    )
                ),
                name="idempotencykey_response_matches_status",
            ),
        ]
        indexes = [
            # The purge: completed records by completion time, in-progress ones by creation time.
            models.Index(fields=["status", "completed_at"], name="idempotencykey_purge_done_idx"),
            models.Index(fields=["status", "created_at"], name="idempotencykey_purge_open_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.client_id} {self.key} ({self.status})"


# --- Outbox delivery (SPEC §4): consumers' de-duplication, the pull feed's log, push subscriptions ----------------

from core.encryption import EncryptedCharField  # noqa: E402  (this section is appended to the module)
