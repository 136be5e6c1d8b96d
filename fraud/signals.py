"""The four fraud signals of SPEC §8 and the settings that tune them.

Each signal counts evidence and fires when the count exceeds its threshold (a "maximum allowed"):

- ``user_history``: the user's ``fraudulent`` results + BLOCKED blocklist records, ever (no window);
  ``FRAUD_MAX_USER_FLAGS`` (default 0).
- ``install_id``: other users whose fraud checks carried the install id within the window;
  ``FRAUD_MAX_OTHER_USERS_PER_INSTALL`` (default 1).
- ``bank_account``: other users who hold or held the account (``bank_account_user_ids_for_hash``), or whose checks
  carried it within the window; ``FRAUD_MAX_OTHER_USERS_PER_BANK_ACCOUNT`` (default 0).
- ``card``: other users who hold or held the card (``card_user_ids_for_hash``), or whose checks carried it within
  the window; ``FRAUD_MAX_OTHER_USERS_PER_CARD`` (default 0).

The window is ``FRAUD_WINDOW_HOURS`` (24) back from the check, inclusive. Every query runs on the database as it is:
an error propagates (fail closed); no signal ever answers "no risk" from a failure.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from fraud.models import FraudCheck, FraudResult, FraudResultVerdict

USER_HISTORY = "user_history"
INSTALL_ID = "install_id"
BANK_ACCOUNT = "bank_account"
CARD = "card"
SIGNAL_NAMES = (USER_HISTORY, INSTALL_ID, BANK_ACCOUNT, CARD)

# name -> (setting, default). Read at every check, so an override takes effect without a restart.
THRESHOLD_SETTINGS = {
    USER_HISTORY: ("FRAUD_MAX_USER_FLAGS", 0),
    INSTALL_ID: ("FRAUD_MAX_OTHER_USERS_PER_INSTALL", 1),
    BANK_ACCOUNT: ("FRAUD_MAX_OTHER_USERS_PER_BANK_ACCOUNT", 0),
    CARD: ("FRAUD_MAX_OTHER_USERS_PER_CARD", 0),
}
WINDOW_SETTING = ("FRAUD_WINDOW_HOURS", 24)
# Evidence lists at most this many user ids (sorted); ``count`` is always the full number.
EVIDENCE_MAX_USER_IDS = 100


def _int_setting(name: str, default: int, minimum: int) -> int:
    value = getattr(settings, name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ImproperlyConfigured(f"{name} must be an integer >= {minimum}")
    return value


def window_hours() -> int:
    return _int_setting(*WINDOW_SETTING, minimum=1)


def thresholds() -> dict[str, int]:
    return {name: _int_setting(setting, default, minimum=0) for name, (setting, default) in THRESHOLD_SETTINGS.items()}


@dataclass(frozen=True)
class Signal:
    name: str
    fired: bool
    threshold: int
    other_user_ids: list[str]
    count: int
    extra: dict

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "fired": self.fired,
            "threshold": self.threshold,
            "evidence": {"other_user_ids": self.other_user_ids, "count": self.count, **self.extra},
        }


def _other_users_signal(name: str, user_ids: set[str], *, user_id: str, threshold: int) -> Signal:
    others = sorted(user_ids - {user_id})
    return Signal(name=name, fired=len(others) > threshold, threshold=threshold,
                  other_user_ids=others[:EVIDENCE_MAX_USER_IDS], count=len(others), extra={})


def _users_in_checks(field: str, value: str, *, since: datetime) -> set[str]:
    """Users whose fraud checks since ``since`` carried ``value`` in the hash column ``field``."""
    rows = (FraudCheck.objects.filter(**{field: value, "created_at__gte": since})
            .order_by("user_id").values_list("user_id", flat=True).distinct())
    return set(rows)


def user_history_signal(*, user_id: str, threshold: int) -> Signal:
    from blocklist.selectors import blocklist_block_count

    fraudulent = FraudResult.objects.filter(user_id=user_id, verdict=FraudResultVerdict.FRAUDULENT).count()
    blocks = blocklist_block_count(user_id=user_id)
    count = fraudulent + blocks
    return Signal(name=USER_HISTORY, fired=count > threshold, threshold=threshold, other_user_ids=[], count=count,
                  extra={"fraudulent_results": fraudulent, "blocks": blocks})


def install_id_signal(*, user_id: str, install_id_hash: str, since: datetime, threshold: int) -> Signal:
    users = _users_in_checks("install_id_hash", install_id_hash, since=since)
    return _other_users_signal(INSTALL_ID, users, user_id=user_id, threshold=threshold)


def bank_account_signal(*, user_id: str, account_routing_hash: str, since: datetime, threshold: int) -> Signal:
    from bank_accounts.selectors import bank_account_user_ids_for_hash

    users = set(bank_account_user_ids_for_hash(account_routing_hash=account_routing_hash))
    users |= _users_in_checks("account_routing_hash", account_routing_hash, since=since)
    return _other_users_signal(BANK_ACCOUNT, users, user_id=user_id, threshold=threshold)


def card_signal(*, user_id: str, hashed_card_number: str, since: datetime, threshold: int) -> Signal:
    from cards.selectors import card_user_ids_for_hash

    users = set(card_user_ids_for_hash(hashed_card_number=hashed_card_number))
    users |= _users_in_checks("hashed_card_number", hashed_card_number, since=since)
    return _other_users_signal(CARD, users, user_id=user_id, threshold=threshold)


def window_start(now: datetime, hours: int) -> datetime:
    return now - timedelta(hours=hours)
