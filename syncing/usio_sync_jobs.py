"""Placeholder: the usio_sync pipeline (issue 7) is being written."""
