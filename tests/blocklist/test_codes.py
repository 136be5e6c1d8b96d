"""The blocking return codes of SPEC §12: exactly these eight block; every other code does not."""

import pytest

from blocklist.codes import BLOCKING_RETURN_CODES, blocklist_code_is_blocking
from integrations.jpm.codes import ISO_TO_NACHA

SPEC_BLOCKING = ["R02", "R03", "R04", "R16", "AC04", "BE01", "AC01", "AC06"]


def test_the_table_is_exactly_the_spec_list():
    assert set(SPEC_BLOCKING) == BLOCKING_RETURN_CODES


@pytest.mark.parametrize("code", SPEC_BLOCKING)
def test_every_spec_blocking_code_blocks(code):
    assert blocklist_code_is_blocking(code) is True


@pytest.mark.parametrize("code", ["r02", " R03 ", "\tac04\n", "Be01", "ac06 "])
def test_case_and_surrounding_whitespace_are_ignored(code):
    assert blocklist_code_is_blocking(code) is True


@pytest.mark.parametrize(
    "code",
    [
        "R01", "R05", "R07", "R08", "R09", "R10", "R20", "R29", "R51",  # NACHA, not blocking
        "AM04", "AC03", "MS02", "MD01", "AG01", "AM05", "MD07",  # ISO codes that map to other NACHA codes
        "51", "57", "82", "05",  # Usio decline codes
        "R2", "R022", "R0 2", "XR02", "R02X", "AC0", "RETURNED",
    ],
)
def test_other_codes_do_not_block(code):
    assert blocklist_code_is_blocking(code) is False


@pytest.mark.parametrize("code", [None, "", "   ", 2, b"R02", ["R02"]])
def test_missing_or_non_string_codes_do_not_block(code):
    assert blocklist_code_is_blocking(code) is False


def test_of_every_nacha_code_only_r02_r03_r04_r16_block():
    codes = [f"R{n:02d}" for n in range(1, 100)]  # the NACHA table is R01-R85; the rest are unassigned
    assert [c for c in codes if blocklist_code_is_blocking(c)] == ["R02", "R03", "R04", "R16"]


def test_of_the_jpm_iso_codes_only_the_four_listed_block():
    # SPEC §12 lists AC04, BE01, AC01, AC06. AC03 maps to R04 for reporting but is not listed: it does not block.
    assert sorted(c for c in ISO_TO_NACHA if blocklist_code_is_blocking(c)) == ["AC01", "AC04", "AC06", "BE01"]
    assert blocklist_code_is_blocking("AC03") is False
