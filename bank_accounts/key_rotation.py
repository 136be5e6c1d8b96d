"""Re-encryption of stored values under the current (first) ``FIELD_ENCRYPTION_KEY`` (SPEC §9).

Used by ``manage.py rotate_encryption_keys``. The procedure of a key rotation:

1. deploy with ``FIELD_ENCRYPTION_KEY=new,old`` (new values are written under ``new``, everything stays readable);
2. run ``rotate_encryption_keys`` until it reports no failures (it is resumable: re-run it after an interruption);
3. deploy with ``FIELD_ENCRYPTION_KEY=new``.

How a batch is done, and why:
- rows are visited in primary-key order, ``batch_size`` at a time, each batch in its own transaction with its rows
  locked (``select_for_update``), so a concurrent save of the same account waits rather than being overwritten;
- the ciphertext is read raw (cast to text: the field's decryption is bypassed) and a value already under the
  first key is left alone (``core.encryption.is_current``) — which is what makes a re-run after an interruption
  finish the rest without redoing or corrupting anything;
- a value under an older key is decrypted and written back with a queryset ``update()`` of the plaintext, which
  the field encrypts exactly once under the first key (``update()`` also leaves ``updated_at`` alone: the data did
  not change). Writing the new *ciphertext* instead, as a ``Value`` expression, would be wrong here:
  ``EncryptedCharField.get_db_prep_save`` encrypts whatever it is given, expressions included (it would store the
  encryption of the text ``"Value('gAAAA…')"``), so the plaintext is the one value it stores correctly;
- a row with a value no configured key decrypts is not touched and is reported by primary key.

Any model with a ``core.encryption.EncryptedCharField`` is covered, so dropping the old key is safe for all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.apps import apps
from django.db import models, transaction
from django.db.models.functions import Cast

from core.encryption import DecryptionError, EncryptedCharField, decrypt, is_current

DEFAULT_BATCH_SIZE = 500


@dataclass
class RotationReport:
    label: str
    total: int = 0
    rotated: int = 0
    current: int = 0
    failed_pks: list = field(default_factory=list)
    batches: int = 0
    remaining: int = 0  # rows not examined because the run stopped at max_batches

    @property
    def examined(self) -> int:
        return self.rotated + self.current + len(self.failed_pks)

    @property
    def complete(self) -> bool:
        return self.remaining == 0


def encrypted_models() -> list[tuple[type[models.Model], list[str]]]:
    """Every installed concrete model with ``EncryptedCharField`` fields, and the names of those fields."""
    found = []
    for model in apps.get_models():
        if model._meta.abstract or model._meta.proxy:
            continue
        names = [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedCharField)]
        if names:
            found.append((model, names))
    return sorted(found, key=lambda item: item[0]._meta.label)


def _raw(name: str) -> str:
    return f"_raw_{name}"


def _stale_plaintexts(values: dict[str, str | None]) -> dict[str, str]:
    """The plaintext of each value not under the first key; ``{}`` if all are current.

    ``DecryptionError`` when any value cannot be decrypted (the row is then left as it is).
    """
    return {
        name: decrypt(ciphertext)
        for name, ciphertext in values.items()
        if ciphertext is not None and not is_current(ciphertext)
    }


def rotate_model(
    *,
    model: type[models.Model],
    fields: list[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_batches: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> RotationReport:
    """Re-encrypt every row of ``model`` whose ``fields`` are not all under the first key (see the module doc).

    Stops after ``max_batches`` batches when given (``remaining`` says how many rows were left; a re-run finishes
    them).
    ``on_batch(n)`` is called after each committed batch with the number of rows it examined (progress).
    Idempotent and resumable.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    report = RotationReport(label=model._meta.label, total=model._default_manager.count())
    annotations = {_raw(name): Cast(name, output_field=models.TextField()) for name in fields}
    last_pk = None
    while max_batches is None or report.batches < max_batches:
        with transaction.atomic():
            queryset = model._default_manager.select_for_update().order_by("pk")
            if last_pk is not None:
                queryset = queryset.filter(pk__gt=last_pk)
            rows = list(queryset.annotate(**annotations).values("pk", *annotations)[:batch_size])
            for row in rows:
                try:
                    stale = _stale_plaintexts({name: row[_raw(name)] for name in fields})
                except DecryptionError:
                    report.failed_pks.append(row["pk"])
                    continue
                if not stale:
                    report.current += 1
                    continue
                model._default_manager.filter(pk=row["pk"]).update(**stale)  # the field encrypts, once
                report.rotated += 1
        if not rows:
            break
        report.batches += 1
        last_pk = rows[-1]["pk"]
        if on_batch:
            on_batch(len(rows))
        if len(rows) < batch_size:
            break
    else:
        # Stopped by max_batches: count what is left after the last row examined.
        rest = model._default_manager.all()
        report.remaining = (rest.filter(pk__gt=last_pk) if last_pk is not None else rest).count()
    return report
