"""``/webhooks/``: processor callbacks, authenticated by the processor's own scheme (not the API's keys)."""

from django.urls import path

from syncing.jpm_webhook_views import JpmWebhookView

urlpatterns = [
    path("jpm", JpmWebhookView.as_view(), name="jpm-webhook"),
]
