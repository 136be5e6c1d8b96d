"""API routes of the blocklist app (mounted under /api/v1/)."""

urlpatterns = []
