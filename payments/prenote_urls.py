"""API routes of prenotes (mounted under /api/v1/ by ``config/urls.py``)."""

from django.urls import path

from payments import prenote_views

urlpatterns = [
    path("prenotes", prenote_views.PrenoteRequestView.as_view(), name="prenote-request"),
]
