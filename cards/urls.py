"""API routes of the cards app (mounted under /api/v1/)."""

from django.urls import path

from cards import views

urlpatterns = [
    path("users/<str:user_id>/debit-card", views.DebitCardView.as_view(), name="debit-card"),
    path("users/<str:user_id>/debit-card/changeable", views.DebitCardChangeableView.as_view(),
         name="debit-card-changeable"),
    path("users/<str:user_id>/debit-card/changes", views.DebitCardChangesView.as_view(), name="debit-card-changes"),
    path("admin/users/<str:user_id>/debit-card", views.DebitCardAdminView.as_view(), name="debit-card-admin"),
    # Test environments only: the view answers 404 when ENVIRONMENT=prod.
    path("test/users/<str:user_id>/debit-card/toggle-failure", views.DebitCardToggleFailureView.as_view(),
         name="debit-card-toggle-failure"),
]
