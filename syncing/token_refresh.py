"""Usio token refresh (SPEC §7.4, seed 004 "Usio Token Refresh").

- **Scheduler** (``token_refresh_schedule``): the valid cards whose tokens are due, selected at the source in one
  query (ids and token pair only), de-duplicated by token pair (credit ``transaction_reference_id``, debit
  ``debit_transaction_reference_id``): one job per pair, carrying the ids of the cards that share it. Due:
  - *by expiry*: the card expires (end of its ``card_exp`` month, America/Chicago) within
    ``USIO_TOKEN_EXPIRY_DAYS`` (30) of now and its tokens were not refreshed since it entered that window;
    a card already expired is not due by expiry (a refresh does not extend a card; the age rule still applies);
  - *by age*: the tokens are older than ``USIO_TOKEN_MAX_AGE_DAYS`` (180): ``token_refreshed_at``, or
    ``created_on`` when never refreshed.
  A job carries the card ids and ``pair``, a keyed fingerprint of the pair (``pair_fingerprint``: HMAC under
  ``HASH_KEY``), never the tokens.
- **Worker** (``token_refresh_pair``): re-reads the cards and keeps those still carrying the fingerprinted pair
  (a card replaced, or refreshed by an earlier delivery of the same message, is skipped), calls Usio
  ``RefreshToken`` through ``USIO_TOKEN_ACCOUNT`` for the debit token and for the credit token, outside any
  transaction, then ``cards.services.card_store_refreshed_tokens`` stores both new tokens and
  ``token_refreshed_at`` on the cards still carrying the old pair (one transaction). Usio refuses
  (``ProcessorDeclined``) → ``card_invalidate`` (reason ``token refresh refused: <code>``, only if the card
  still carries the refused token). Any other processor error is raised: the ``usio-refresh`` queue has one
  attempt, so the job is dead-lettered at once (with the raw answer for a protocol error) and replayable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db.models import Q

from core.business_days import CHICAGO
from core.jobs import job_clock
from core.transactions import in_transaction
from integrations.errors import ProcessorDeclined

logger = logging.getLogger(__name__)

ACTOR = "token_refresh"
#: Cards read per round trip by the scheduler's single query (a server-side cursor on PostgreSQL).
SELECT_CHUNK_SIZE = 2000


def _end_of_month(year: int, month: int) -> datetime:
    """The instant a card with expiry ``month/year`` stops being good: the start (Chicago) of the next month."""
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return datetime(year, month, 1, tzinfo=CHICAGO)


def _expiry_window(now: datetime, days: int) -> list[tuple[str, datetime]]:
    """The ``card_exp`` values (MMYYYY) of cards not yet expired at ``now`` that expire by ``now + days``, each
    with the instant its refresh window opened (expiry minus ``days``)."""
    local = now.astimezone(CHICAGO)
    year, month = local.year, local.month
    horizon = now + timedelta(days=days)
    months = []
    while (end := _end_of_month(year, month)) <= horizon:
        months.append((f"{month:02d}{year}", end - timedelta(days=days)))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def due_cards_filter(*, now: datetime) -> Q:
    """The SQL condition "this valid card's tokens are due at ``now``" (module docstring)."""
    expiry_days = int(settings.USIO_TOKEN_EXPIRY_DAYS)
    old_before = now - timedelta(days=int(settings.USIO_TOKEN_MAX_AGE_DAYS))
    by_age = (Q(token_refreshed_at__isnull=True, created_on__lt=old_before)
              | Q(token_refreshed_at__lt=old_before))
    by_expiry = Q(pk__in=[])
    for card_exp, window_opened in _expiry_window(now, expiry_days):
        by_expiry |= Q(card_exp=card_exp) & (Q(token_refreshed_at__isnull=True)
                                              | Q(token_refreshed_at__lt=window_opened))
    return Q(is_valid=True) & (by_age | by_expiry)


@dataclass
class TokenRefreshScheduleStats:
    cards: int = 0  # due cards selected
    pairs: int = 0  # distinct token pairs = jobs
    enqueued: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def pair_fingerprint(*, credit_token: str, debit_token: str) -> str:
    """A keyed fingerprint of a token pair (``core.hashing.blind_index``): lets a job name the pair it was
    scheduled for without carrying the tokens."""
    from core.hashing import blind_index

    return blind_index("usio-token-pair", credit_token, debit_token)


def token_refresh_due_pairs(*, now: datetime) -> dict[tuple[str, str], list[int]]:
    """The due cards grouped by token pair ``(credit, debit)`` → card ids (ascending), in one query. The pairs
    stay in memory only (they are never logged nor put in a job message)."""
    from cards.models import DebitCard

    pairs: dict[tuple[str, str], list[int]] = {}
    rows = (DebitCard.objects.filter(due_cards_filter(now=now))
            .order_by("pk").values_list("pk", "transaction_reference_id", "debit_transaction_reference_id"))
    for pk, credit, debit in rows.iterator(chunk_size=SELECT_CHUNK_SIZE):
        pairs.setdefault((credit, debit), []).append(pk)
    return pairs


def token_refresh_schedule(*, enqueue: Callable[[list[int], str], object], as_of: date | datetime | None = None,
                           now: datetime | None = None) -> TokenRefreshScheduleStats:
    """Fan out one refresh per due token pair: ``enqueue(card_ids, pair)`` for each (the job sends a message on
    ``usio-refresh``; ``run_job`` runs the worker inline). ``as_of``/``now`` move the clock due-ness is judged
    at (``core.jobs.job_clock``). Reads only; re-running before the workers ran enqueues the same pairs again,
    which is harmless: the second worker finds the fingerprinted pair gone and refreshes nothing."""
    moment = job_clock(as_of=as_of, now=now)
    pairs = token_refresh_due_pairs(now=moment)
    stats = TokenRefreshScheduleStats(cards=sum(len(ids) for ids in pairs.values()), pairs=len(pairs))
    for (credit, debit), card_ids in pairs.items():
        enqueue(card_ids, pair_fingerprint(credit_token=credit, debit_token=debit))
        stats.enqueued += 1
    logger.info("token refresh scheduled", extra={"stats": stats.as_dict()})
    return stats


@dataclass
class TokenRefreshResult:
    """What one worker run did, per card id (JSON-able, for the job result and the fixer's audit entry)."""

    refreshed: list[int] = field(default_factory=list)
    invalidated: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # gone, invalid, or changed since scheduling
    refused_code: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def outcome(self) -> str:
        if self.refused_code is not None:
            return f"refused: {self.refused_code}"
        return "refreshed" if self.refreshed else "skipped"


def token_refresh_pair(*, card_ids: list[int], pair: str | None, actor: str = ACTOR, include_invalid: bool = False,
                       reason: str = "Usio tokens refreshed") -> TokenRefreshResult:
    """Refresh the tokens of the cards ``card_ids`` that still carry the pair fingerprinted ``pair``
    (``pair_fingerprint``; None: the first card's current pair — the fixer's "refresh this card now").

    The cards are re-read: those gone, invalid (unless ``include_invalid``: the fixer's explicit request) or
    carrying another pair are skipped. For the remaining pair, Usio ``RefreshToken``
    (``usio_client(USIO_TOKEN_ACCOUNT)``) is called for the debit token, then the credit token (once when they are
    the same token), outside any transaction; then one ``card_store_refreshed_tokens`` call stores the new pair
    on the cards still carrying the old one. ``ProcessorDeclined`` on either call → every card of the pair is
    invalidated (``card_invalidate``, reason ``token refresh refused: <code>``, ``only_if_token`` the refused
    token) and a new token got for the other one is dropped (the card is unusable anyway; the old token keeps
    working at Usio). Other processor errors propagate (nothing stored). Idempotent per pair: once stored, the
    old pair is gone and a replay of the message skips every card (no call to Usio).
    """
    from cards.models import DebitCard
    from cards.services import card_invalidate, card_store_refreshed_tokens
    from integrations.usio import usio_client

    if in_transaction():
        raise RuntimeError("token_refresh_pair calls Usio: it must not run inside a transaction")
    result = TokenRefreshResult()
    ids = sorted({int(card_id) for card_id in card_ids})
    cards = {card.pk: card for card in DebitCard.objects.filter(pk__in=ids).only(
        "pk", "user_id", "is_valid", "transaction_reference_id", "debit_transaction_reference_id")}
    eligible = [cards[pk] for pk in ids if pk in cards and (include_invalid or cards[pk].is_valid)]
    if not eligible:
        result.skipped = ids
        return result
    if pair is None:
        pair = pair_fingerprint(credit_token=eligible[0].transaction_reference_id,
                                debit_token=eligible[0].debit_transaction_reference_id)
    group = [card for card in eligible
             if pair_fingerprint(credit_token=card.transaction_reference_id,
                                 debit_token=card.debit_transaction_reference_id) == pair]
    if not group:
        result.skipped = ids
        return result
    old_credit, old_debit = group[0].transaction_reference_id, group[0].debit_transaction_reference_id
    group_ids = {card.pk for card in group}
    result.skipped = [pk for pk in ids if pk not in group_ids]

    client = usio_client(settings.USIO_TOKEN_ACCOUNT)
    new_tokens: dict[str, str] = {}
    for token in (old_debit, old_credit):
        if token in new_tokens:
            continue
        try:
            new_tokens[token] = client.refresh_token(token=token).token
        except ProcessorDeclined as exc:
            result.refused_code = str(exc.code)
            for card in group:
                changed = card_invalidate(user_id=card.user_id, reason=f"token refresh refused: {exc.code}",
                                          actor=actor, only_if_token=token)
                (result.invalidated if changed is not None else result.skipped).append(card.pk)
            logger.warning("token refresh refused; cards invalidated",
                           extra={"card_ids": result.invalidated, "usio_code": exc.code})
            return result
    updated = card_store_refreshed_tokens(
        card_ids=sorted(group_ids), old_credit_token=old_credit, old_debit_token=old_debit,
        new_credit_token=new_tokens[old_credit], new_debit_token=new_tokens[old_debit], actor=actor, reason=reason)
    result.refreshed = updated
    result.skipped += [pk for pk in sorted(group_ids) if pk not in updated]
    result.skipped.sort()
    return result
