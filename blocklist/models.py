"""The blocklist (SPEC §2.5): an append-only log of block / unblock decisions per user.

A user's current state is their newest ``BlocklistRecord`` (``created_at`` then ``id``, both descending); a user
with no record is not blocked. Rows are only ever inserted, by ``blocklist.services``; nothing updates or deletes
them (the admin is read-only: its block / unblock pages call the services with a reason).
"""

from django.db import models
from django.db.models import Q


class BlocklistStatus(models.TextChoices):
    BLOCKED = "BLOCKED", "Blocked"
    NOTBLOCKED = "NOTBLOCKED", "Not blocked"


class BlocklistSource(models.TextChoices):
    AUTO = "auto", "Automatic (blocking return code)"
    MANUAL = "manual", "Manual (support)"
    BANK_ACCOUNT_UPDATE = "bank_account_update", "Bank account saved, updated or deleted"


class BlocklistRecord(models.Model):
    """One block or unblock of ``user_id``: who (``actor``), why (``reason``), from where (``source``).

    ``payment_id`` is the id of the returned payment behind an automatic block. It is a plain UUID for now: the
    payments app does not exist yet. It will become ``payment = ForeignKey(Payment, db_column="payment_id")``,
    a change of the field only (same column, same values).
    """

    user_id = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=BlocklistStatus.choices)
    reason = models.TextField()
    source = models.CharField(max_length=32, choices=BlocklistSource.choices)
    return_code = models.CharField(max_length=16, null=True, blank=True)
    payment_id = models.UUIDField(null=True, blank=True)
    actor = models.CharField(max_length=150)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # "the newest record of a user" and the history, newest first.
            models.Index("user_id", models.F("created_at").desc(), models.F("id").desc(), name="blocklist_user_newest"),
            models.Index(fields=["payment_id"], name="blocklist_payment",
                         condition=Q(payment_id__isnull=False)),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=BlocklistStatus.values), name="blocklist_status_valid"),
            models.CheckConstraint(condition=Q(source__in=BlocklistSource.values), name="blocklist_source_valid"),
            # Blocks come from support or from a return code; unblocks from support or a bank account change.
            models.CheckConstraint(
                condition=(
                    Q(status=BlocklistStatus.BLOCKED, source__in=[BlocklistSource.AUTO, BlocklistSource.MANUAL])
                    | Q(status=BlocklistStatus.NOTBLOCKED,
                        source__in=[BlocklistSource.MANUAL, BlocklistSource.BANK_ACCOUNT_UPDATE])
                ),
                name="blocklist_status_source_pair",
            ),
            # Only an automatic block carries a return code.
            models.CheckConstraint(
                condition=Q(source=BlocklistSource.AUTO) | Q(return_code__isnull=True),
                name="blocklist_return_code_only_auto",
            ),
            models.CheckConstraint(condition=~Q(reason=""), name="blocklist_reason_present"),
            models.CheckConstraint(condition=~Q(actor=""), name="blocklist_actor_present"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.status} ({self.source}) at {self.created_at:%Y-%m-%d %H:%M:%S}"
