"""Back office for debit cards: read the card and its history; change expiry or validity through the service.

Tokens are never shown. No card can be added or deleted here (cards come from the app through the API). Editing
a card asks for a reason and goes through ``card_admin_update`` with the staff user as actor, which records the
change and an ``AuditEntry``; nothing is written by the admin's own ``save()``.
"""

from django import forms
from django.contrib import admin

from cards import services
from cards.models import DebitCard, DebitCardChange
from core.admin_base import ReadOnlyAdmin
from core.errors import ServiceError


class DebitCardAdminForm(forms.ModelForm):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000,
                             help_text="Why you change this card (recorded in the audit trail).")

    class Meta:
        model = DebitCard
        fields = ["card_exp", "is_valid"]

    def clean_card_exp(self):
        value = self.cleaned_data["card_exp"]
        if "card_exp" in self.changed_data:
            try:
                services.clean_card_exp(value)
            except ServiceError as exc:
                raise forms.ValidationError(exc.message, code=exc.code) from None
        return value

    def clean_reason(self):
        value = self.cleaned_data["reason"].strip()
        if not value:
            raise forms.ValidationError("A reason is required.", code="reason_required")
        return value


@admin.register(DebitCard)
class DebitCardAdmin(admin.ModelAdmin):
    form = DebitCardAdminForm
    list_display = ("user_id", "masked_card_number", "card_exp", "is_valid", "invalid_date", "created_on",
                    "token_refreshed_at", "force_failure")
    list_filter = ("is_valid", "force_failure")
    search_fields = ("=user_id", "=masked_card_number")
    search_help_text = "Exact user id or last 4 digits."
    date_hierarchy = "created_on"
    fields = ("user_id", "masked_card_number", "card_exp", "is_valid", "reason", "invalid_date", "invalid_reason",
              "hashed_card_number", "created_on", "token_refreshed_at", "force_failure", "created_at", "updated_at")
    readonly_fields = ("user_id", "masked_card_number", "invalid_date", "invalid_reason", "hashed_card_number",
                       "created_on", "token_refreshed_at", "force_failure", "created_at", "updated_at")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        updates = {name: form.cleaned_data[name] for name in ("card_exp", "is_valid") if name in form.changed_data}
        if updates:
            services.card_admin_update(user_id=obj.user_id, actor=request.user.get_username(),
                                       reason=form.cleaned_data["reason"], **updates)
        obj.refresh_from_db()


@admin.register(DebitCardChange)
class DebitCardChangeAdmin(ReadOnlyAdmin):
    list_display = ("at", "user_id", "change_type", "old_masked_card_number", "new_masked_card_number",
                    "new_card_exp", "actor")
    list_filter = ("change_type",)
    search_fields = ("=user_id", "=old_masked_card_number", "=new_masked_card_number", "actor")
    search_help_text = "Exact user id or last 4 digits, or actor."
    date_hierarchy = "at"
