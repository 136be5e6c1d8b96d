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
    raw_answer = models.JSONField(null=True, blank=True,
                                  help_text="the processor's answer that broke the protocol (redacted), if any")
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
        permissions = [("redeliver_event", "Can deliver an event again to its consumers and subscriptions")]
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


class OutboxConsumptionStatus(models.TextChoices):
    DONE = "done", "Done"
    FAILING = "failing", "Failing (retried with back-off)"
    DEAD = "dead", "Dead-lettered"


class OutboxConsumption(models.Model):
    """One in-process consumer's handling of one event: the de-duplication record of SPEC §4.

    A ``done`` row is written in the same transaction (savepoint) as the consumer's own database effect, so a
    redelivered event is skipped by every consumer that already handled it. A consumer that raised has a ``failing``
    row (attempts, last error, next attempt) written beside it, and a ``dead`` one once the relay gave up and
    dead-lettered it (``core.outbox_relay``).
    """

    consumer = models.CharField(max_length=64)
    event_id = models.UUIDField()
    status = models.CharField(max_length=16, choices=OutboxConsumptionStatus.choices,
                              default=OutboxConsumptionStatus.DONE)
    attempts = models.PositiveIntegerField(default=0, help_text="Failed attempts.")
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "outbox consumption"
        constraints = [
            models.UniqueConstraint(fields=["event_id", "consumer"], name="outbox_consumption_unique"),
            models.CheckConstraint(condition=models.Q(status__in=OutboxConsumptionStatus.values),
                                   name="outbox_consumption_status_valid"),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="outbox_consumption_status_idx")]

    def __str__(self) -> str:
        return f"{self.consumer} {self.event_id} ({self.status})"


class OutboxFeedEntry(models.Model):
    """The pull feed (``GET /api/v1/events``): one row per published event, in the order the relay published them.

    ``position`` is assigned under a lock held until the relay's transaction commits, so positions become visible
    in increasing order: a reader's cursor never skips an entry that commits later (``OutboxEvent.position`` cannot
    promise that: concurrent writers take sequence numbers in one order and commit in another).
    """

    position = models.BigAutoField(primary_key=True)
    event = models.OneToOneField(OutboxEvent, on_delete=models.PROTECT, related_name="feed_entry")
    published_at = models.DateTimeField()

    class Meta:
        ordering = ["position"]
        verbose_name_plural = "outbox feed entries"

    def __str__(self) -> str:
        return f"#{self.position} {self.event_id}"


class PushSubscription(models.Model):
    """An HTTP endpoint that receives events by POST, signed with ``secret`` (SPEC §4; configured by admins).

    ``event_types`` lists the event types to send; empty = every type. ``secret`` is stored encrypted and never
    shown back. An inactive subscription gets no new deliveries and its pending ones wait (paused).
    """

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=500)
    secret = EncryptedCharField(max_length=255)
    event_types = models.JSONField(default=list, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class PushDeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    DEAD = "dead", "Dead"


class PushDelivery(models.Model):
    """One event to send to one subscription. ``attempts`` counts finished attempts; a pending delivery is due at
    ``next_attempt_at`` (also a lease while an attempt is in flight). Delivered ones are never sent again; dead ones
    (attempts spent) are dead-lettered and can be retried from the admin."""

    subscription = models.ForeignKey(PushSubscription, on_delete=models.PROTECT, related_name="deliveries")
    event = models.ForeignKey(OutboxEvent, on_delete=models.PROTECT, related_name="push_deliveries")
    status = models.CharField(max_length=16, choices=PushDeliveryStatus.choices,
                              default=PushDeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "push deliveries"
        permissions = [("retry_pushdelivery", "Can retry a dead push delivery")]
        constraints = [
            models.UniqueConstraint(fields=["subscription", "event"], name="push_delivery_unique"),
            models.CheckConstraint(condition=models.Q(status__in=PushDeliveryStatus.values),
                                   name="push_delivery_status_valid"),
            models.CheckConstraint(
                condition=models.Q(status=PushDeliveryStatus.DELIVERED, delivered_at__isnull=False)
                | (~models.Q(status=PushDeliveryStatus.DELIVERED) & models.Q(delivered_at__isnull=True)),
                name="push_delivery_delivered_at",
            ),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="push_delivery_due_idx")]

    def __str__(self) -> str:
        return f"{self.subscription_id} ← {self.event_id} ({self.status})"


class JobRunOutcome(models.TextChoices):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"  # an attempt failed; Celery will try again
    FAILED = "failed"  # attempts spent (dead-lettered)


class JobRun(models.Model):
    """The last run of each scheduled job (one row per beat schedule, or ``run_job NAME``), for the dashboard.

    Written by ``core.tasks.JobTask`` for runs started by beat (the message carries the ``periodic_task_name``
    header of django-celery-beat) and by ``manage.py run_job``; jobs fanned out by a scheduler are not recorded
    here (their dead letters are). Updated in place: one row per schedule, never a hot spot of many writers.
    """

    name = models.CharField(max_length=200, unique=True, help_text="the schedule (or run_job) name")
    task_name = models.CharField(max_length=200)
    last_started_at = models.DateTimeField()
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_outcome = models.CharField(max_length=16, choices=JobRunOutcome.choices)
    last_result = models.JSONField(null=True, blank=True, help_text="the job's summary (counts)")
    last_error = models.TextField(blank=True)
    runs = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name}: {self.last_outcome} at {self.last_started_at:%Y-%m-%d %H:%M}"
