"""The sync pipelines of SPEC §7 (autodiscovered by ``core``): each ``*_jobs`` module declares its Celery tasks
(``core.tasks.job``), its ``run_job`` entries (``core.jobs.register_job``) and its beat schedules
(``core.schedules.register_schedule``). See docs/syncing.md.
"""

from syncing import (  # noqa: F401
    balance_report_jobs,
    check_ach_jobs,
    debit_fixer_jobs,
    jpm_sync_jobs,
    jpm_webhook_jobs,
    token_refresh_jobs,
    usio_sync_jobs,
)
