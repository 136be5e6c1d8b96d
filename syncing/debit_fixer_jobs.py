"""The debit-card fixer job (SPEC §7.8): ``syncing.fix_debit_card`` on queue ``debit-fixer`` (1 attempt, 54 s),
enqueued by ``manage.py fix_debit_cards`` (one job per card). No beat schedule and no ``run_job`` entry: operators
start it with the command; a failed job is in ``DeadLetter`` (replayable from the admin).
"""

from __future__ import annotations

from core.tasks import job
from syncing.debit_fixer import debit_card_fix

FIX_TASK = "syncing.fix_debit_card"
FIX_QUEUE = "debit-fixer"


@job(name=FIX_TASK, queue=FIX_QUEUE)
def fix_debit_card_task(*, card_id: int, action: str, reason: str | None = None) -> dict:
    """Apply ``action`` to the card ``card_id`` and audit the outcome."""
    return debit_card_fix(card_id=card_id, action=action, reason=reason).as_dict()


def fix_debit_card_enqueue(*, card_id: int, action: str, reason: str | None) -> None:
    fix_debit_card_task.apply_async(kwargs={"card_id": card_id, "action": action, "reason": reason})
