"""API routes of the payments app (mounted under /api/v1/)."""

from django.urls import path

from payments import views

urlpatterns = [
    path("payments", views.PaymentSubmitView.as_view(), name="payment-submit"),
    path("payments/<str:confirmation_id>", views.PaymentDetailView.as_view(), name="payment-detail"),
    path("users/<str:user_id>/payments", views.UserPaymentListView.as_view(), name="user-payments"),
]
