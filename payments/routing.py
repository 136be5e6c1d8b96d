"""The routing table of SPEC §5: which processor and which Usio merchant account move a payment.

| purpose | type | method | provider | Usio account |
|---|---|---|---|---|
| subscription | debit | ach | JPM; Usio with ``SUBSCRIPTION_ACH_PROVIDER=usio`` or ``provider: usio`` | subscription |
| float | debit | ach | Usio | float_debit |
| float | credit | ach | Usio | float_credit |
| loan | debit / credit | ach | Usio | loan |
| subscription, float, loan | debit | pinless | Usio (debit token) | the purpose's: subscription, float_debit, loan |
| float, loan | credit | pinless | Usio PinlessCredit (credit token) | float_credit |
| float, loan | credit | rtp | Usio RTPCredit after RTPAccountCheck (ACH credit fallback on request) | float_credit |

Anything else (RTP debit, JPM for anything but subscription ACH debit, a credit to a subscription, a prenote — they
have their own endpoint) is 422 ``unsupported_route``. The table is data (``ROUTES``); ``route`` only reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from core.errors import ValidationError
from payments.models import Method, PaymentType, Provider, Purpose


@dataclass(frozen=True)
class Route:
    """Where a payment goes: the processor, and for Usio the name of the merchant account (``USIO_ACCOUNTS`` key)."""

    provider: str
    usio_account_name: str | None


@dataclass(frozen=True)
class _Entry:
    """A row of the table. ``usio_account`` is used whenever the provider is Usio; ``configurable`` marks the one
    route whose provider may be switched (subscription ACH debit: JPM by default)."""

    default_provider: str
    usio_account: str
    configurable: bool = False


# (purpose, payment_type, payment_method) → entry.
ROUTES: dict[tuple[str, str, str], _Entry] = {
    (Purpose.SUBSCRIPTION, PaymentType.DEBIT, Method.ACH): _Entry(Provider.JPM, "subscription", configurable=True),
    (Purpose.FLOAT, PaymentType.DEBIT, Method.ACH): _Entry(Provider.USIO, "float_debit"),
    (Purpose.FLOAT, PaymentType.CREDIT, Method.ACH): _Entry(Provider.USIO, "float_credit"),
    (Purpose.LOAN, PaymentType.DEBIT, Method.ACH): _Entry(Provider.USIO, "loan"),
    (Purpose.LOAN, PaymentType.CREDIT, Method.ACH): _Entry(Provider.USIO, "loan"),
    (Purpose.SUBSCRIPTION, PaymentType.DEBIT, Method.PINLESS): _Entry(Provider.USIO, "subscription"),
    (Purpose.FLOAT, PaymentType.DEBIT, Method.PINLESS): _Entry(Provider.USIO, "float_debit"),
    (Purpose.LOAN, PaymentType.DEBIT, Method.PINLESS): _Entry(Provider.USIO, "loan"),
    (Purpose.FLOAT, PaymentType.CREDIT, Method.PINLESS): _Entry(Provider.USIO, "float_credit"),
    (Purpose.LOAN, PaymentType.CREDIT, Method.PINLESS): _Entry(Provider.USIO, "float_credit"),
    (Purpose.FLOAT, PaymentType.CREDIT, Method.RTP): _Entry(Provider.USIO, "float_credit"),
    (Purpose.LOAN, PaymentType.CREDIT, Method.RTP): _Entry(Provider.USIO, "float_credit"),
}


def subscription_ach_provider() -> str:
    """``SUBSCRIPTION_ACH_PROVIDER`` (``jpm`` default, or ``usio``); anything else is a configuration error."""
    value = str(getattr(settings, "SUBSCRIPTION_ACH_PROVIDER", Provider.JPM) or Provider.JPM).strip().lower()
    if value not in Provider.values:
        raise ValueError(f"SUBSCRIPTION_ACH_PROVIDER must be one of {Provider.values}, not {value!r}")
    return value


def _unsupported(purpose, payment_type, payment_method, provider_override) -> ValidationError:
    details = {"purpose": purpose, "payment_type": payment_type, "payment_method": payment_method}
    if provider_override:
        details["provider"] = provider_override
    return ValidationError(
        "This combination of purpose, payment type, payment method and provider is not supported.",
        code="unsupported_route",
        details=details,
    )


def route(*, purpose: str, payment_type: str, payment_method: str, provider_override: str | None = None) -> Route:
    """The route of a payment (SPEC §5 table), or 422 ``unsupported_route``.

    ``provider_override`` (a request's ``provider``) switches the subscription ACH debit between JPM and Usio; on any
    other route it must name the route's own provider (Usio) or the request is ``unsupported_route``. Without it,
    subscription ACH debits go to ``SUBSCRIPTION_ACH_PROVIDER``. Pure: reads settings, writes nothing.
    """
    entry = ROUTES.get((purpose, payment_type, payment_method))
    if entry is None:
        raise _unsupported(purpose, payment_type, payment_method, provider_override)
    if entry.configurable:
        provider = provider_override or subscription_ach_provider()
        if provider not in Provider.values:
            raise _unsupported(purpose, payment_type, payment_method, provider_override)
    else:
        provider = entry.default_provider
        if provider_override and provider_override != provider:
            raise _unsupported(purpose, payment_type, payment_method, provider_override)
    return Route(provider=provider, usio_account_name=entry.usio_account if provider == Provider.USIO else None)


def usio_merchant_id(account_name: str) -> str | None:
    """The merchant id configured for a Usio account name (``USIO_ACCOUNTS[name]["merchant_id"]``), or None."""
    account = (getattr(settings, "USIO_ACCOUNTS", {}) or {}).get(account_name) or {}
    return str(account.get("merchant_id") or "") or None
