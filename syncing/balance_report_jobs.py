"""Placeholder: the balance_report pipeline (issue 7) is being written."""
