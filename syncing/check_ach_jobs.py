"""Placeholder: the check_ach pipeline (issue 7) is being written."""
