"""API routes of the fraud app (mounted under /api/v1/)."""

from django.urls import path

from fraud import views

urlpatterns = [
    path("fraud/checks", views.FraudCheckCreateView.as_view(), name="fraud-checks"),
    path("fraud/results", views.FraudResultCreateView.as_view(), name="fraud-results"),
]
