"""Deterministic outcomes a tester can rely on (docs/sandbox.md), shared by the Usio and JPM fakes.

Card tokens: any token is approved, except ``decline_NN`` (declined with Usio code NN), ``unknown`` (Usio
5030 "Unable to locate record") and ``timeout`` (processed, but the answer comes after the client's read
timeout).

Bank accounts (by account number): ending ``99NN`` → settles first, then is returned with ``RNN`` at the
returns sweep after submission; ending ``98NN`` → rejected at once with ``RNN``; anything else settles.
JPM reports the ISO equivalent of the R-code where one exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# JPM's ISO reason for a NACHA return code (the reverse of SPEC §12's ISO→NACHA table, where unique).
NACHA_TO_ISO = {"R01": "AM04", "R02": "AC04", "R03": "AC01", "R04": "AC03", "R08": "MS02", "R10": "MD01",
                "R15": "MD07", "R16": "AC06", "R20": "AG01", "R24": "AM05"}

_DECLINE = re.compile(r"^decline_(\d{2})$")


@dataclass(frozen=True)
class TokenOutcome:
    kind: str  # approve | decline | unknown | timeout
    code: str | None = None


@dataclass(frozen=True)
class AccountOutcome:
    kind: str  # settle | return | reject
    return_code: str | None = None  # NACHA "Rnn"

    @property
    def iso_code(self) -> str | None:
        """What JPM reports: the ISO code where one exists, else the NACHA code."""
        if self.return_code is None:
            return None
        return NACHA_TO_ISO.get(self.return_code, self.return_code)


def token_outcome(token: str) -> TokenOutcome:
    match = _DECLINE.match(token or "")
    if match:
        return TokenOutcome("decline", match.group(1))
    if token == "unknown":
        return TokenOutcome("unknown", "5030")
    if token == "timeout":
        return TokenOutcome("timeout")
    return TokenOutcome("approve")


def account_outcome(account_number: str) -> AccountOutcome:
    digits = str(account_number or "")
    if len(digits) >= 4 and digits[-4:-2] == "99":
        return AccountOutcome("return", f"R{digits[-2:]}")
    if len(digits) >= 4 and digits[-4:-2] == "98":
        return AccountOutcome("reject", f"R{digits[-2:]}")
    return AccountOutcome("settle")
