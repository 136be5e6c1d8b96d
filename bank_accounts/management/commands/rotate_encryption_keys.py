"""``manage.py rotate_encryption_keys``: re-encrypt every stored value under the first FIELD_ENCRYPTION_KEY.

See ``bank_accounts.key_rotation`` for the procedure and the guarantees (batched, row-locked, resumable).
"""

import argparse
import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from bank_accounts.key_rotation import DEFAULT_BATCH_SIZE, encrypted_models, rotate_model


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted field value under the first FIELD_ENCRYPTION_KEY. Values already under it are "
        "skipped, so the command is resumable: re-run it after an interruption. Exits non-zero if a row cannot be "
        "decrypted with any configured key (such rows are reported by primary key and left untouched)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=_positive_int, default=DEFAULT_BATCH_SIZE,
                            help=f"Rows per transaction (default {DEFAULT_BATCH_SIZE}).")
        parser.add_argument("--max-batches", type=_positive_int, default=None,
                            help="Stop after this many batches per model (throttling; re-run to continue).")
        parser.add_argument("--model", action="append", dest="models", metavar="APP_LABEL.MODEL",
                            help="Only this model (repeatable). Default: every model with encrypted fields.")

    def handle(self, *args, batch_size, max_batches, models, **options):
        targets = encrypted_models()
        if models:
            known = {model._meta.label_lower: (model, fields) for model, fields in targets}
            unknown = sorted({m.lower() for m in models} - set(known))
            if unknown:
                raise CommandError(f"no encrypted fields on: {', '.join(unknown)} (known: {', '.join(known)})")
            targets = [known[m.lower()] for m in dict.fromkeys(models)]

        # tqdm redraws its line with "\r": give it the raw stream, not Django's line-ending OutputWrapper.
        stream = getattr(self.stderr, "_out", sys.stderr)
        reports = []
        for model, fields in targets:
            total = model._default_manager.count()
            with tqdm(total=total, desc=model._meta.label, unit="row", file=stream, mininterval=0.5) as bar:
                report = rotate_model(model=model, fields=fields, batch_size=batch_size, max_batches=max_batches,
                                      on_batch=bar.update)
            reports.append(report)
            line = (f"{report.label}: rotated {report.rotated}, already current {report.current}, "
                    f"failed {len(report.failed_pks)}")
            if report.failed_pks:
                line += f" (pk {', '.join(str(pk) for pk in report.failed_pks)})"
            if report.remaining:
                line += f"; stopped after {report.batches} batch(es), {report.remaining} row(s) left: run again"
            self.stdout.write(line)

        rotated = sum(r.rotated for r in reports)
        current = sum(r.current for r in reports)
        failed = sum(len(r.failed_pks) for r in reports)
        remaining = sum(r.remaining for r in reports)
        summary = f"rotated {rotated}, already current {current}, failed {failed}"
        if remaining:
            summary += f", not yet examined {remaining}"
        self.stdout.write(summary)
        if failed:
            raise CommandError(
                f"{failed} row(s) could not be decrypted with any configured key and were left untouched; "
                "add the key they were written with to FIELD_ENCRYPTION_KEY and run again."
            )
