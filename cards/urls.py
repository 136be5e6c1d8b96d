"""API routes of the cards app (mounted under /api/v1/)."""

urlpatterns = []
