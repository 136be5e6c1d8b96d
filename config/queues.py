"""The Celery queues of SPEC §7, one per pipeline.

``attempts`` is the original SQS queue's maxReceiveCount: how many times a job may run before it is
written to the ``DeadLetter`` table. ``time_limit`` is 90% of the SQS visibility timeout (seconds).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class QueueSpec:
    name: str
    attempts: int
    time_limit: int

    @property
    def soft_time_limit(self) -> int:
        """The task is told to stop (SoftTimeLimitExceeded) a little before it is killed."""
        return max(1, self.time_limit - max(2, self.time_limit // 10))


QUEUES: dict[str, QueueSpec] = {
    q.name: q
    for q in (
        QueueSpec("prenotes", attempts=10, time_limit=30),
        QueueSpec("jpm-webhooks", attempts=10, time_limit=540),
        QueueSpec("check-ach", attempts=1, time_limit=54),
        QueueSpec("blocklist-remove", attempts=10, time_limit=540),
        QueueSpec("usio-sync", attempts=10, time_limit=540),
        QueueSpec("usio-refresh", attempts=1, time_limit=54),
        QueueSpec("debit-fixer", attempts=1, time_limit=54),
        # Not in the original: periodic housekeeping (outbox relay, reconciler, purges) and replays.
        QueueSpec("default", attempts=3, time_limit=300),
    )
}
