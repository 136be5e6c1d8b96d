"""Placeholder: the debit_fixer pipeline (issue 7) is being written."""
