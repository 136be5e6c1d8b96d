"""API routes of the bank_accounts app (mounted under /api/v1/)."""

urlpatterns = []
