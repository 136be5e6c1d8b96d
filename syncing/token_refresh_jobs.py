"""The Usio token refresh jobs (SPEC §7.4): Celery tasks, the ``run_job`` entry and the beat schedule.

- ``syncing.usio_token_refresh_schedule`` (queue ``default``; daily 15:00 UTC, "usio token refresh"): selects the
  due cards and enqueues one ``syncing.usio_token_refresh`` per token pair (``card_ids`` only: tokens never travel
  in a message: the card ids and a keyed fingerprint of the pair).
- ``syncing.usio_token_refresh`` (queue ``usio-refresh``: 1 attempt, 54 s): refreshes one pair. No retry (SPEC §7):
  a processor failure is dead-lettered at once, replayable from the admin (the worker is idempotent per pair).
- ``run_job usio_token_refresh [--as-of YYYY-MM-DD]``: scheduler and workers inline; a pair whose worker fails is
  dead-lettered under the worker's task name (as the queue would) and the others go on.
"""

from __future__ import annotations

import logging
from datetime import date

from core.jobs import register_job
from core.schedules import ScheduleSpec, register_schedule
from core.tasks import job
from integrations.errors import ProcessorError
from syncing.token_refresh import TokenRefreshResult, token_refresh_pair, token_refresh_schedule

logger = logging.getLogger(__name__)

SCHEDULE_TASK = "syncing.usio_token_refresh_schedule"
REFRESH_TASK = "syncing.usio_token_refresh"
REFRESH_QUEUE = "usio-refresh"


@job(name=REFRESH_TASK, queue=REFRESH_QUEUE)
def usio_token_refresh_task(*, card_ids: list[int], pair: str | None = None) -> dict:
    """Refresh the token pair (fingerprint ``pair``) shared by ``card_ids``."""
    return token_refresh_pair(card_ids=card_ids, pair=pair).as_dict()


def _enqueue(card_ids: list[int], pair: str) -> None:
    usio_token_refresh_task.apply_async(kwargs={"card_ids": card_ids, "pair": pair})


@job(name=SCHEDULE_TASK, queue="default")
def usio_token_refresh_schedule_task() -> dict:
    """The daily fan-out: one refresh job per due token pair."""
    return token_refresh_schedule(enqueue=_enqueue).as_dict()


@register_job("usio_token_refresh",
              help="Refresh the Usio tokens of cards expiring soon or with old tokens (scheduler + workers inline).")
def usio_token_refresh_job(*, as_of: date | None = None, now=None) -> dict:
    """``as_of``: judge due-ness at the end of that Chicago day (never later than now)."""
    from core.dead_letters import dead_letter_record

    results: list[TokenRefreshResult] = []
    failed = 0

    def _inline(card_ids: list[int], pair: str) -> None:
        nonlocal failed
        try:
            results.append(token_refresh_pair(card_ids=card_ids, pair=pair))
        except ProcessorError as exc:
            failed += 1
            dead_letter_record(task_name=REFRESH_TASK, task_id="", queue=REFRESH_QUEUE, args=[],
                               kwargs={"card_ids": card_ids, "pair": pair}, error=exc, attempts=1)

    stats = token_refresh_schedule(enqueue=_inline, as_of=as_of, now=now)
    return {**stats.as_dict(),
            "refreshed": sum(len(r.refreshed) for r in results),
            "invalidated": sum(len(r.invalidated) for r in results),
            "skipped": sum(len(r.skipped) for r in results),
            "dead_lettered": failed}


register_schedule(ScheduleSpec(name="usio token refresh", task=SCHEDULE_TASK, crontab="0 15 * * *"))
