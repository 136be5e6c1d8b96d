"""API routes of the bank_accounts app (mounted under /api/v1/)."""

from django.urls import path

from bank_accounts import views

urlpatterns = [
    path("users/<str:user_id>/bank-accounts/<str:account_id>", views.BankAccountView.as_view(),
         name="bank-account"),
    path("bank-accounts/lookup", views.BankAccountLookupView.as_view(), name="bank-account-lookup"),
]
