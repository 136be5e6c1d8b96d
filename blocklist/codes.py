"""The blocking return codes of SPEC §12, in one place.

A payment returned with one of these codes means the account is unusable or the debit unauthorised: the user is
blocked (SPEC §8). NACHA: R02 account closed, R03 no account / unable to locate, R04 invalid account number,
R16 account frozen. JPM / ISO 20022: AC04 closed account, BE01 inconsistent with end customer (name mismatch),
AC01 incorrect account number, AC06 blocked account. Every other code (R01 insufficient funds, ...) does not block.
"""

BLOCKING_RETURN_CODES: frozenset[str] = frozenset({"R02", "R03", "R04", "R16", "AC04", "BE01", "AC01", "AC06"})


def normalise_return_code(code: object) -> str:
    """``code`` stripped and upper-cased; ``""`` for None or anything that is not a string."""
    if not isinstance(code, str):
        return ""
    return code.strip().upper()


def blocklist_code_is_blocking(code: str | None) -> bool:
    """True when a payment returned with ``code`` blocks its user (SPEC §12).

    Case and surrounding whitespace are ignored (``" r02 "`` blocks); None, empty and non-string codes never block.
    """
    return normalise_return_code(code) in BLOCKING_RETURN_CODES
