"""``manage.py fix_debit_cards (--user-id ID [--user-id ID ...] | --file ids.txt) --action ACTION [--reason TEXT]``

Enqueues one ``syncing.fix_debit_card`` job per distinct card on the ``debit-fixer`` queue (SPEC §7.8); the jobs
record their results as audit entries (admin: Audit entries, action ``debit_card.fix.<action>``).

- Ids: ``--user-id`` (repeatable) or ``--file`` (one user id per line; blank lines and ``#`` comments ignored;
  duplicates removed, first occurrence kept). A malformed id, an unreadable file or no id at all →
  ``CommandError`` and nothing is enqueued.
- Users without a debit card are reported ("unknown users") and not enqueued.
- A progress line on stderr while enqueueing; the counts on stdout at the end.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from core.errors import ValidationError
from core.validators import validate_user_id
from syncing.debit_fixer import ACTIONS

LOOKUP_CHUNK = 500
SHOW_UNKNOWN = 20


def read_ids_file(path: str) -> list[str]:
    """The ids of ``path``: one per line, stripped; blank lines and ``#`` comments (whole or trailing) skipped."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {path}: {exc.__class__.__name__}: {exc}") from None
    ids = []
    for line in lines:
        value = line.split("#", 1)[0].strip()
        if value:
            ids.append(value)
    return ids


class Progress:
    """A one-line progress bar (``\\r`` updates) on a command's ``OutputWrapper``; drawn at most every 0.1 s and
    at the end (tqdm is not a dependency)."""

    def __init__(self, stream, total: int, width: int = 30):
        self.stream, self.total, self.width = stream, total, width
        self.last = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if done < self.total and now - self.last < 0.1:
            return
        self.last = now
        filled = self.width * done // self.total if self.total else self.width
        line = f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} enqueued"
        self.stream.write(line + ("\n" if done >= self.total else ""), ending="")
        self.stream.flush()


class Command(BaseCommand):
    help = "Enqueue the debit-card fixer (one job per card on the debit-fixer queue) for the given users."

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--user-id", action="append", dest="user_ids", metavar="ID",
                            help="A user whose card to fix (repeatable).")
        source.add_argument("--file", dest="path", help="A file of user ids, one per line (# comments allowed).")
        parser.add_argument("--action", required=True, choices=ACTIONS, help="What to do to each card.")
        parser.add_argument("--reason", default=None, help="Why (recorded in each job's audit entry).")

    def handle(self, *args, user_ids=None, path=None, action, reason=None, **options):
        from cards.models import DebitCard
        from syncing.debit_fixer_jobs import fix_debit_card_enqueue

        if action not in ACTIONS:  # call_command bypasses argparse choices
            raise CommandError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
        raw = read_ids_file(path) if path else [value.strip() for value in user_ids or []]
        ids = list(dict.fromkeys(value for value in raw if value))
        if not ids:
            raise CommandError("no user ids given")
        bad = []
        for value in ids:
            try:
                validate_user_id(value)
            except ValidationError:
                bad.append(value)
        if bad:
            shown = ", ".join(repr(value[:70]) for value in bad[:SHOW_UNKNOWN])
            raise CommandError(f"{len(bad)} malformed user id(s), nothing enqueued: {shown}")

        cards: dict[str, int] = {}
        for start in range(0, len(ids), LOOKUP_CHUNK):
            cards.update(DebitCard.objects.filter(user_id__in=ids[start:start + LOOKUP_CHUNK])
                         .values_list("user_id", "pk"))
        unknown = [value for value in ids if value not in cards]
        card_ids = list(dict.fromkeys(cards[value] for value in ids if value in cards))

        progress = Progress(self.stderr, len(card_ids))
        for done, card_id in enumerate(card_ids, start=1):
            fix_debit_card_enqueue(card_id=card_id, action=action, reason=reason)
            progress.update(done)
        if unknown:
            self.stdout.write(f"unknown users (no debit card), not enqueued: "
                              f"{', '.join(unknown[:SHOW_UNKNOWN])}{' …' if len(unknown) > SHOW_UNKNOWN else ''}")
        self.stdout.write(f"action={action} enqueued={len(card_ids)} unknown_users={len(unknown)}")
