"""API routes of the fraud app (mounted under /api/v1/)."""

urlpatterns = []
