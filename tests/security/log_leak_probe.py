"""Run only by tests/security/test_log_audit.py, in a pytest subprocess (not collected: no ``test_`` prefix)."""

import logging

from django.conf import settings

from tests import log_audit

logger = logging.getLogger("probe")
TOKEN = "tok_probe_unmasked_token"


def test_logs_the_jwt_secret():
    logger.warning("signing with %s", settings.JWT_SECRET)


def test_logs_a_card_token():
    log_audit.remember(TOKEN, "card token")
    logger.warning("refreshing card %s", TOKEN)


def test_logs_an_account_number_which_redaction_masks():
    log_audit.remember("739146285017", "account number")
    logger.warning("debiting account 739146285017")
