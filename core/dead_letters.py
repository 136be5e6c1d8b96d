"""Dead-letter services: record a job that exhausted its attempts; replay it on operator request."""

import logging

from django.db import transaction
from django.utils import timezone

from core.models import DeadLetter
from core.redaction import redact, redact_text

logger = logging.getLogger(__name__)


def raw_answer_of(error: BaseException) -> dict | None:
    """The processor exchange (request and answer, already redacted by the client) a processor error carries."""
    exchange = getattr(error, "exchange", None)
    as_dict = getattr(exchange, "as_dict", None)
    return redact(as_dict()) if callable(as_dict) else None


def dead_letter_record(
    *, task_name: str, task_id: str, queue: str, args, kwargs, error: BaseException, attempts: int
) -> DeadLetter:
    """Store the failed job. The error text and arguments are redacted (they may quote job data); a processor
    error's exchange (the raw answer that broke the protocol) is kept, redacted, in ``raw_answer``.

    Also used for one item of a batch job (a single payment of a check-ach chunk): ``args``/``kwargs`` then name
    that item, so a replay re-runs just it.
    """
    text = f"{type(error).__name__}: {error}"
    letter = DeadLetter.objects.create(
        raw_answer=raw_answer_of(error),
        task_name=task_name,
        task_id=task_id or "",
        queue=queue,
        args=redact(list(args or [])),
        kwargs=redact(dict(kwargs or {})),
        last_error=redact_text(text)[:10000],
        attempts=attempts,
    )
    logger.error(
        "job dead-lettered",
        extra={"task_name": task_name, "task_id": task_id, "queue": queue, "attempts": attempts},
    )
    return letter


def dead_letter_replay(*, dead_letter: DeadLetter, actor: str) -> None:
    """Enqueue the job again on its queue with a fresh attempt budget, once the replay is committed.

    Jobs are idempotent (they run with ``acks_late``), so replaying one that partly ran is safe.
    """
    from config.celery import app

    with transaction.atomic():
        letter = DeadLetter.objects.select_for_update().get(pk=dead_letter.pk)
        letter.replayed_at = timezone.now()
        letter.replayed_by = actor
        letter.replay_count += 1
        letter.save(update_fields=["replayed_at", "replayed_by", "replay_count"])
        transaction.on_commit(
            lambda: app.send_task(letter.task_name, args=letter.args, kwargs=letter.kwargs, queue=letter.queue)
        )
    logger.info("dead letter replayed", extra={"dead_letter_id": letter.pk, "task_name": letter.task_name})
