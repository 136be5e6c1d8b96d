"""Placeholder: the jpm_sync pipeline (issue 7) is being written."""
