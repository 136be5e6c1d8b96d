"""Usio Payments API 2.0 (processors.md, "Usio"): ``client`` speaks HTTP, ``adapter`` reads Usio's JSON.

Callers use ``usio_client(account_name)`` and get the dataclasses of ``adapter``; Usio JSON stays here.
"""

from integrations.usio.adapter import (
    UsioBalance,
    UsioPaymentResult,
    UsioRtpEligibility,
    UsioTokenRefresh,
    UsioTransaction,
    UsioTransactionList,
    UsioTransactionReport,
)
from integrations.usio.client import ACH_TRANS_CODES, PRENOTE_TRANS_CODES, UsioClient, usio_client

__all__ = [
    "ACH_TRANS_CODES",
    "PRENOTE_TRANS_CODES",
    "UsioBalance",
    "UsioClient",
    "UsioPaymentResult",
    "UsioRtpEligibility",
    "UsioTokenRefresh",
    "UsioTransaction",
    "UsioTransactionList",
    "UsioTransactionReport",
    "usio_client",
]
