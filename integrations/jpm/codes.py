"""JPM reason codes → NACHA return codes (SPEC §12: the table lives in code, in one place).

JPM reports a return or reject reason in ``exception[].externalCode`` as an ISO 20022 reason code (``AC04``)
or, where none exists, as the NACHA code itself (``R07``). ``nacha_for`` turns either into the NACHA code we
store and report; BE01→R03 is SPEC §12's "name mismatch" mapping (both AC01 and BE01 map to R03).
"""

from __future__ import annotations

import re

ISO_TO_NACHA: dict[str, str] = {
    "AM04": "R01",  # insufficient funds
    "AC04": "R02",  # account closed
    "AC01": "R03",  # no account / unable to locate account
    "AC03": "R04",  # invalid account number
    "MS02": "R08",  # payment stopped
    "MD01": "R10",  # customer advises not authorized
    "AC06": "R16",  # account frozen
    "AG01": "R20",  # non-transaction account
    "AM05": "R24",  # duplicate entry
    "MD07": "R15",  # beneficiary or account holder deceased
    "BE01": "R03",  # name mismatch (SPEC §12)
}

_NACHA = re.compile(r"^R\d{2}$")


def nacha_for(code: str | None) -> str | None:
    """The NACHA return code for a JPM reason code: ISO codes via the table, ``Rnn`` passes through, else None."""
    if not code:
        return None
    normalized = code.strip().upper()
    if _NACHA.match(normalized):
        return normalized
    return ISO_TO_NACHA.get(normalized)
