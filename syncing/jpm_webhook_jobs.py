"""Placeholder: the jpm_webhook pipeline (issue 7) is being written."""
