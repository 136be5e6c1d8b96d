"""``/api/v1/events``: the pull feed of events (mounted by ``config.urls``)."""

from django.urls import path

from core.views_events import EventFeedView

urlpatterns = [
    path("events", EventFeedView.as_view(), name="events-feed"),
]
