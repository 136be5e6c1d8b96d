"""Fraud checks and saved fraud results (SPEC §2.6).

Inputs are kept as keyed HMAC blind indexes only (``core.hashing.blind_index``): never a raw install id, account,
routing or card number. Rows are written by ``fraud.services`` only and never changed.
"""

import uuid

from django.db import models
from django.db.models import Q


class FraudVerdict(models.TextChoices):
    CLEAR = "clear", "Clear"
    REVIEW = "review", "Review"


class FraudResultVerdict(models.TextChoices):
    FRAUDULENT = "fraudulent", "Fraudulent"
    SUSPICIOUS = "suspicious", "Suspicious"
    LEGITIMATE = "legitimate", "Legitimate"


_HEX64 = r"^[0-9a-f]{64}$"


class FraudCheck(models.Model):
    """One evaluation of the fraud signals for a user: its hashed inputs, the settings used, the signals, verdict.

    Earlier checks are themselves evidence: the install id, bank account and card signals look for other users
    whose checks carried the same hash within the window.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user_id = models.CharField(max_length=64)
    install_id_hash = models.CharField(max_length=64, null=True, blank=True)
    account_routing_hash = models.CharField(max_length=64, null=True, blank=True)
    hashed_card_number = models.CharField(max_length=64, null=True, blank=True)
    window_hours = models.PositiveIntegerField()
    thresholds = models.JSONField(default=dict)
    signals = models.JSONField(default=list)
    verdict = models.CharField(max_length=16, choices=FraudVerdict.choices)
    fired = models.JSONField(default=list)
    requested_by = models.CharField(max_length=150, blank=True, help_text="The API key that asked for the check.")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user_id", "created_at"], name="fraudcheck_user"),
            models.Index(fields=["install_id_hash", "created_at"], name="fraudcheck_install",
                         condition=Q(install_id_hash__isnull=False)),
            models.Index(fields=["account_routing_hash", "created_at"], name="fraudcheck_bank",
                         condition=Q(account_routing_hash__isnull=False)),
            models.Index(fields=["hashed_card_number", "created_at"], name="fraudcheck_card",
                         condition=Q(hashed_card_number__isnull=False)),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(verdict__in=FraudVerdict.values), name="fraudcheck_verdict_valid"),
            models.CheckConstraint(condition=Q(window_hours__gte=1), name="fraudcheck_window_positive"),
            models.CheckConstraint(
                condition=Q(install_id_hash__isnull=True) | Q(install_id_hash__regex=_HEX64),
                name="fraudcheck_install_is_hash",
            ),
            models.CheckConstraint(
                condition=Q(account_routing_hash__isnull=True) | Q(account_routing_hash__regex=_HEX64),
                name="fraudcheck_bank_is_hash",
            ),
            models.CheckConstraint(
                condition=Q(hashed_card_number__isnull=True) | Q(hashed_card_number__regex=_HEX64),
                name="fraudcheck_card_is_hash",
            ),
        ]

    def __str__(self) -> str:
        return f"fraud check {self.id} for {self.user_id}: {self.verdict}"


class FraudResult(models.Model):
    """A fraud result a caller (a review tool, another service) saved for a user.

    ``fraudulent`` results count in the user-history signal of later checks.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user_id = models.CharField(max_length=64)
    verdict = models.CharField(max_length=16, choices=FraudResultVerdict.choices)
    score = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True,
                                help_text="Risk score from 0 (no risk) to 1 (certain fraud), when the source has one.")
    flags = models.JSONField(default=list, blank=True)
    source = models.CharField(max_length=64)
    details = models.JSONField(default=dict, blank=True)
    fraud_check = models.ForeignKey(FraudCheck, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="results")
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user_id", "verdict"], name="fraudresult_user_verdict"),
            models.Index(fields=["created_at"], name="fraudresult_created"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(verdict__in=FraudResultVerdict.values),
                                   name="fraudresult_verdict_valid"),
            models.CheckConstraint(condition=Q(score__isnull=True) | Q(score__gte=0, score__lte=1),
                                   name="fraudresult_score_range"),
            models.CheckConstraint(condition=~Q(source=""), name="fraudresult_source_present"),
        ]

    def __str__(self) -> str:
        return f"fraud result {self.id} for {self.user_id}: {self.verdict} ({self.source})"
