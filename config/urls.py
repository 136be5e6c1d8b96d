"""URL configuration. Every endpoint but the health probes, metrics and the schema requires auth."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from backoffice.urls import admin_site_urls
from core import views as core_views

api_v1 = [
    path("auth/whoami", core_views.WhoAmIView.as_view(), name="whoami"),
    path("", include("cards.urls")),
    path("", include("bank_accounts.urls")),
    path("", include("blocklist.urls")),
    path("", include("fraud.urls")),
    path("", include("payments.urls")),
    path("", include("payments.prenote_urls")),
    path("", include("refunds.urls")),
    path("", include("core.urls_events")),
]

urlpatterns = [
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("", include("django_prometheus.urls")),  # /metrics
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/v1/", include(api_v1)),
    path("webhooks/", include("syncing.urls")),  # processor callbacks (JPM), authenticated by signature
    path("admin/", admin_site_urls(admin.site)),  # the admin site with the back-office pages (backoffice/urls.py)
]

handler400 = "core.views.json_bad_request"
handler403 = "core.views.json_permission_denied"
handler404 = "core.views.json_not_found"
handler500 = "core.views.json_server_error"
