"""Placeholder: the token_refresh pipeline (issue 7) is being written."""
