"""The in-process consumer of prenote outcomes (SPEC §4, §6), run by the outbox relay (``core.outbox_relay``).

``payments.prenote_account_status`` — ``PRENOTE_RETURNED`` and ``PRENOTE_VERIFIED``: the bank account's
``prenote_status`` follows the prenote (``payments.prenotes.prenote_account_outcome``): returned → ``failed``
(R01 → ``verified``), verified → ``verified``. Every path that writes those events (the prenote job, the
reconciler, the Usio returns sync, the JPM webhook, check-ach, the prenote verifier) thus updates the account.
Idempotent: the relay de-duplicates on the event id, and setting the status the account already has is a no-op;
outcomes that cannot apply (account deleted or changed, a move the status table refuses) are logged and skipped.
Registered when ``PaymentsConfig.ready`` imports this module.
"""

from __future__ import annotations

from core.errors import PermanentJobError, ValidationError
from core.outbox_relay import register_consumer
from payments.prenotes import PRENOTE_EVENT_TYPES, prenote_account_outcome

PRENOTE_ACCOUNT_CONSUMER = "payments.prenote_account_status"


def prenote_account_on_outcome(envelope: dict) -> None:
    """Apply a prenote's outcome to its bank account. Database errors raise (the relay retries the event)."""
    data = envelope["data"]
    try:
        prenote_account_outcome(payment_id=data["id"], event_type=envelope["type"],
                                return_code=data.get("return_code"))
    except ValidationError as exc:  # a malformed stored key cannot become valid by retrying
        raise PermanentJobError(f"{exc.code}: {exc.message}") from exc


register_consumer(PRENOTE_ACCOUNT_CONSUMER, prenote_account_on_outcome, types=PRENOTE_EVENT_TYPES)
