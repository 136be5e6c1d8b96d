"""API routes of the refunds app (mounted under /api/v1/)."""

from django.urls import path

from refunds import views

urlpatterns = [
    path("refunds", views.RefundCreateView.as_view(), name="refund-create"),
    path("users/<str:user_id>/refunds", views.UserRefundListView.as_view(), name="user-refunds"),
]
