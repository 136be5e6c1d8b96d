"""Concurrent saves for one user cannot overrun the change limit nor create two active cards.

Runs on both databases: on PostgreSQL the row lock and the unique ``user_id`` (with one retry) serialise the
writers; on SQLite ``BEGIN IMMEDIATE`` does. Each thread has its own connection.
"""

import itertools

import pytest

from cards import services
from cards.models import ChangeType, DebitCard, DebitCardChange
from core.errors import ConflictError
from tests.cards.conftest import USER, card_body
from tests.concurrency import run_concurrently

WRITERS = 8


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_saves_make_one_card_and_respect_the_limit():
    def save(index: int):
        return services.card_save(user_id=USER, actor=f"writer-{index}",
                                  **card_body(masked_card_number=f"{1000 + index}"))

    results = run_concurrently(save, WRITERS)
    saved = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, ConflictError)]
    assert len(saved) == 3 and len(refused) == WRITERS - 3, results
    assert all(r.details["reason"] == "max_changes_reached" for r in refused)
    assert sum(1 for _, created in saved if created) == 1
    assert DebitCard.objects.filter(user_id=USER).count() == 1
    changes = DebitCardChange.objects.filter(user_id=USER)
    assert changes.count() == 3
    assert changes.filter(change_type=ChangeType.CREATED).count() == 1
    # The history chains: every replacement starts from the card the previous writer left.
    ordered = list(changes.order_by("at", "id"))
    for previous, current in itertools.pairwise(ordered):
        assert current.old_masked_card_number == previous.new_masked_card_number
    assert DebitCard.objects.get().masked_card_number == ordered[-1].new_masked_card_number
