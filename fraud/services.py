"""Fraud services (SPEC §2.6, §8): evaluate a fraud check, save a fraud result.

Rules:
- Raw inputs (install id, routing and account numbers, card last 4 + expiry) are hashed on arrival and never stored
  or logged: a check keeps ``blind_index("install", install_id)``, ``account_routing_hash`` and
  ``hashed_card_number`` only.
- A check evaluates each signal whose input is given (user history always: the user id is required), stores itself
  with every signal, the window and thresholds used and the verdict (``review`` when any signal fired, else
  ``clear``), and returns that row.
- Fail closed: a database error while evaluating or storing is a 503 ``fraud_check_unavailable`` (nothing stored),
  never a "clear" verdict.
"""

import json
import logging
import re
import uuid
from decimal import Decimal, InvalidOperation

from django.db import DatabaseError, transaction
from django.utils import timezone

from core.card_data import find_card_data
from core.errors import ServiceUnavailableError, ValidationError
from core.hashing import blind_index
from core.redaction import redact
from core.validators import validate_account_number, validate_routing_number, validate_user_id
from fraud import signals as sig
from fraud.models import FraudCheck, FraudResult, FraudResultVerdict, FraudVerdict

logger = logging.getLogger(__name__)

INSTALL_ID_MAX_LENGTH = 255
_HASH = re.compile(r"^[0-9a-f]{64}$")
_LAST4 = re.compile(r"^\d{4}$")
_CARD_EXP = re.compile(r"^(0[1-9]|1[0-2])\d{4}$")
_SOURCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_FLAG = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")
MAX_FLAGS = 20
DETAILS_MAX_BYTES = 4096
DETAILS_MAX_DEPTH = 5
DETAILS_MAX_KEY_LENGTH = 64
ACTOR_MAX_LENGTH = 150


def fraud_refuse_card_data(data: object, *, skip: frozenset[str] = frozenset()) -> None:
    """Raise 422 ``card_data_not_allowed`` (naming the field, never the value) when ``data`` holds a PAN or a CVV
    field anywhere, top-level keys in ``skip`` excepted (fields whose values are legitimately long digit strings)."""
    if isinstance(data, dict):
        data = {key: value for key, value in data.items() if key not in skip}
    path = find_card_data(data)
    if path:
        raise ValidationError("Card numbers and CVVs are not accepted.", code="card_data_not_allowed",
                              details={"field": path})


# --- input cleaning -----------------------------------------------------------------------------------------------

def _clean_hash(value: object, *, field: str) -> str:
    if not isinstance(value, str) or not _HASH.match(value.strip().lower()):
        raise ValidationError(f"{field} must be 64 hexadecimal characters (a blind index).", code=f"invalid_{field}")
    return value.strip().lower()


def _clean_install_id(install_id: object) -> str:
    if not isinstance(install_id, str) or not install_id.strip() or len(install_id.strip()) > INSTALL_ID_MAX_LENGTH:
        raise ValidationError(f"install_id must be 1 to {INSTALL_ID_MAX_LENGTH} characters.", code="invalid_install_id")
    fraud_refuse_card_data({"install_id": install_id})
    return install_id.strip()


def _bank_hash(routing_number: str | None, account_number: str | None, account_routing_hash: str | None) -> str | None:
    raw_given = routing_number is not None or account_number is not None
    if raw_given and account_routing_hash is not None:
        raise ValidationError("Send either routing_number + account_number or account_routing_hash, not both.",
                              code="ambiguous_bank_account")
    if account_routing_hash is not None:
        return _clean_hash(account_routing_hash, field="account_routing_hash")
    if not raw_given:
        return None
    if routing_number is None or account_number is None:
        raise ValidationError("routing_number and account_number go together.", code="incomplete_bank_account")
    validate_routing_number(routing_number)
    validate_account_number(account_number)
    from bank_accounts.services import bank_account_hash

    return bank_account_hash(routing_number=routing_number, account_number=account_number)


def _card_hash(card_last4: str | None, card_exp: str | None, hashed_card_number: str | None) -> str | None:
    raw_given = card_last4 is not None or card_exp is not None
    if raw_given and hashed_card_number is not None:
        raise ValidationError("Send either card_last4 + card_exp or hashed_card_number, not both.",
                              code="ambiguous_card")
    if hashed_card_number is not None:
        return _clean_hash(hashed_card_number, field="hashed_card_number")
    if not raw_given:
        return None
    if card_last4 is None or card_exp is None:
        raise ValidationError("card_last4 and card_exp go together.", code="incomplete_card")
    if not isinstance(card_last4, str) or not _LAST4.match(card_last4):
        raise ValidationError("card_last4 must be exactly 4 digits.", code="invalid_card_last4")
    if not isinstance(card_exp, str) or not _CARD_EXP.match(card_exp):
        # An expired card is still evidence: only the format is checked.
        raise ValidationError("card_exp must be MMYYYY.", code="invalid_card_exp")
    from cards.services import card_hash

    return card_hash(last4=card_last4, card_exp=card_exp)


# --- fraud checks -------------------------------------------------------------------------------------------------

def fraud_check(
    *,
    user_id: str,
    install_id: str | None = None,
    routing_number: str | None = None,
    account_number: str | None = None,
    account_routing_hash: str | None = None,
    card_last4: str | None = None,
    card_exp: str | None = None,
    hashed_card_number: str | None = None,
    requested_by: str = "",
) -> FraudCheck:
    """Evaluate the fraud signals of SPEC §8 for ``user_id`` and store the check; returns the stored row.

    Signals (``fraud.signals``): ``user_history`` always; ``install_id`` when ``install_id`` is given;
    ``bank_account`` for ``routing_number`` + ``account_number`` or ``account_routing_hash``; ``card`` for
    ``card_last4`` + ``card_exp`` or ``hashed_card_number``. The verdict is ``review`` when any signal fired
    (``fired`` lists them all), else ``clear``. Not idempotent: every call is a new evaluation and a new row, and
    is itself evidence for later checks of other users.

    Raises 422 (``invalid_user_id``, ``invalid_install_id``, ``card_data_not_allowed``, ``invalid_routing_number``,
    ``invalid_account_number``, ``incomplete_bank_account``, ``ambiguous_bank_account``,
    ``invalid_account_routing_hash``, ``invalid_card_last4``, ``invalid_card_exp``, ``incomplete_card``,
    ``ambiguous_card``, ``invalid_hashed_card_number``) before touching the database, and 503
    ``fraud_check_unavailable`` on any database error (fail closed: nothing is stored, no verdict is given).
    """
    validate_user_id(user_id)
    install_hash = None if install_id is None else blind_index("install", _clean_install_id(install_id))
    bank_hash = _bank_hash(routing_number, account_number, account_routing_hash)
    card = _card_hash(card_last4, card_exp, hashed_card_number)
    hours = sig.window_hours()
    limits = sig.thresholds()

    try:
        with transaction.atomic():
            now = timezone.now()
            since = sig.window_start(now, hours)
            signals = [sig.user_history_signal(user_id=user_id, threshold=limits[sig.USER_HISTORY])]
            if install_hash is not None:
                signals.append(sig.install_id_signal(user_id=user_id, install_id_hash=install_hash, since=since,
                                                     threshold=limits[sig.INSTALL_ID]))
            if bank_hash is not None:
                signals.append(sig.bank_account_signal(user_id=user_id, account_routing_hash=bank_hash, since=since,
                                                       threshold=limits[sig.BANK_ACCOUNT]))
            if card is not None:
                signals.append(sig.card_signal(user_id=user_id, hashed_card_number=card, since=since,
                                               threshold=limits[sig.CARD]))
            fired = [s.name for s in signals if s.fired]
            check = FraudCheck.objects.create(
                user_id=user_id, install_id_hash=install_hash, account_routing_hash=bank_hash,
                hashed_card_number=card, window_hours=hours, thresholds=limits,
                signals=[s.as_dict() for s in signals], fired=fired,
                verdict=FraudVerdict.REVIEW if fired else FraudVerdict.CLEAR, created_at=now,
                requested_by=requested_by[:ACTOR_MAX_LENGTH],
            )
    except DatabaseError as exc:
        logger.error("fraud check failed closed: database error", extra={"user_id": user_id,
                                                                         "error_type": type(exc).__name__})
        raise ServiceUnavailableError(
            "The fraud check could not be completed. It is not a clear result; retry later.",
            code="fraud_check_unavailable",
        ) from exc
    logger.info("fraud check", extra={"user_id": user_id, "fraud_check_id": str(check.id),
                                      "verdict": check.verdict, "fired": fired})
    return check


# --- fraud results ------------------------------------------------------------------------------------------------

def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _bad_keys(value: object) -> bool:
    if isinstance(value, dict):
        return any(not isinstance(k, str) or not k or len(k) > DETAILS_MAX_KEY_LENGTH or _bad_keys(v)
                   for k, v in value.items())
    if isinstance(value, list):
        return any(_bad_keys(v) for v in value)
    return False


def _clean_details(details: object) -> dict:
    if details is None:
        return {}
    if not isinstance(details, dict):
        raise ValidationError("details must be a JSON object.", code="invalid_details")
    try:
        size = len(json.dumps(details, separators=(",", ":"), allow_nan=False).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        raise ValidationError("details must be plain JSON.", code="invalid_details") from exc
    if size > DETAILS_MAX_BYTES:
        raise ValidationError(f"details must be at most {DETAILS_MAX_BYTES} bytes of JSON.", code="details_too_large",
                              details={"max_bytes": DETAILS_MAX_BYTES})
    if _depth(details) > DETAILS_MAX_DEPTH:
        raise ValidationError(f"details may nest at most {DETAILS_MAX_DEPTH} levels.", code="details_too_deep",
                              details={"max_depth": DETAILS_MAX_DEPTH})
    if _bad_keys(details):
        raise ValidationError(f"details keys must be 1 to {DETAILS_MAX_KEY_LENGTH} characters.",
                              code="invalid_details")
    return details


def _clean_flags(flags: object) -> list[str]:
    if flags is None:
        return []
    if not isinstance(flags, list) or len(flags) > MAX_FLAGS or not all(
        isinstance(f, str) and _FLAG.match(f) for f in flags
    ):
        raise ValidationError(
            f"flags must be a list of at most {MAX_FLAGS} lower-case codes (letters, digits, '_', '.', ':', '-').",
            code="invalid_flags",
        )
    return list(dict.fromkeys(flags))


def _clean_score(score: object) -> Decimal | None:
    if score is None:
        return None
    try:
        value = Decimal(str(score))
    except InvalidOperation as exc:
        raise ValidationError("score must be a number from 0 to 1.", code="invalid_score") from exc
    if not value.is_finite() or not Decimal(0) <= value <= Decimal(1) or value.as_tuple().exponent < -4:
        raise ValidationError("score must be a number from 0 to 1 with at most 4 decimals.", code="invalid_score")
    return value


def fraud_result_save(
    *,
    user_id: str,
    verdict: str,
    source: str,
    actor: str,
    score: Decimal | float | str | None = None,
    flags: list[str] | None = None,
    details: dict | None = None,
    fraud_check_id: uuid.UUID | str | None = None,
) -> FraudResult:
    """Store a fraud result a caller reached for ``user_id``; returns the row. Not idempotent (each call stores one).

    ``verdict``: ``fraudulent`` (counts in the user-history signal of later checks), ``suspicious`` or
    ``legitimate``. ``score``: optional, 0..1, 4 decimals. ``flags``: optional short codes. ``source``: who decided
    (``sift``, ``manual-review``...). ``details``: an optional JSON object, at most 4 KB and 5 levels, that must not
    carry card, account or secret data: anything the log redaction filter would mask is refused. ``fraud_check_id``:
    optionally the check this result concludes (same user). ``actor`` (the API key name) is kept as ``created_by``.

    Raises 422: ``invalid_user_id``, ``invalid_verdict``, ``invalid_source``, ``invalid_score``, ``invalid_flags``,
    ``invalid_details``, ``details_too_large``, ``details_too_deep``, ``card_data_not_allowed``,
    ``sensitive_data_not_allowed``, ``fraud_check_not_found``, ``fraud_check_user_mismatch``; nothing is stored.
    """
    validate_user_id(user_id)
    if verdict not in FraudResultVerdict.values:
        raise ValidationError(f"verdict must be one of {', '.join(FraudResultVerdict.values)}.",
                              code="invalid_verdict", details={"allowed": FraudResultVerdict.values})
    if not isinstance(source, str) or not _SOURCE.match(source):
        raise ValidationError("source must be 1-64 letters, digits, '_', '.', ':' or '-'.", code="invalid_source")
    if not isinstance(actor, str) or not actor.strip():
        raise ValidationError("An actor is required.", code="actor_required")
    value = _clean_score(score)
    flags = _clean_flags(flags)
    details = _clean_details(details)
    fraud_refuse_card_data({"flags": flags, "details": details})
    if redact(details) != details:
        raise ValidationError("details must not carry account numbers, card data, tokens or secrets.",
                              code="sensitive_data_not_allowed")
    check = None
    if fraud_check_id is not None:
        try:
            check_uuid = fraud_check_id if isinstance(fraud_check_id, uuid.UUID) else uuid.UUID(str(fraud_check_id))
        except ValueError as exc:
            raise ValidationError("fraud_check_id must be a UUID.", code="fraud_check_not_found") from exc
        check = FraudCheck.objects.filter(pk=check_uuid).first()
        if check is None:
            raise ValidationError("No such fraud check.", code="fraud_check_not_found")
        if check.user_id != user_id:
            raise ValidationError("The fraud check belongs to another user.", code="fraud_check_user_mismatch")
    result = FraudResult.objects.create(
        user_id=user_id, verdict=verdict, score=value, flags=flags, source=source, details=details,
        fraud_check=check, created_by=actor.strip()[:ACTOR_MAX_LENGTH],
    )
    logger.info("fraud result saved", extra={"user_id": user_id, "fraud_result_id": str(result.id),
                                              "verdict": verdict, "source": source})
    return result
