"""API routes of the blocklist app (mounted under /api/v1/)."""

from django.urls import path

from blocklist import views

urlpatterns = [
    path("users/<str:user_id>/blocklist", views.BlocklistView.as_view(), name="blocklist"),
    path("users/<str:user_id>/blocklist/history", views.BlocklistHistoryView.as_view(), name="blocklist-history"),
]
