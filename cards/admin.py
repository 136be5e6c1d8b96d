"""Back office for debit cards: read the card and its history; override validity (or expiry) on the override page.

Read-only model pages: no card is added, edited or deleted through a model form (cards come from the app through the
API). Support changes a card only on ``admin:cards_debitcard_override`` (permission ``cards.change_debitcard``): valid
or invalid, optionally a reissued expiry, and a required reason → ``cards.services.card_admin_update`` with the
staff user as actor, which records the change and exactly one ``AuditEntry``.

Tokens: no role sees a token value. Every role sees the last 4, expiry and whether the Usio tokens are on file.
"""

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import path

from cards import services
from cards.models import DebitCard, DebitCardChange
from core.admin_base import BackofficeActionsMixin, ReadOnlyAdmin, ReasonField, add_service_error
from core.errors import ServiceError

VALIDITY_CHOICES = (("valid", "Valid"), ("invalid", "Invalid"))


def _exp_display(card_exp: str) -> str:
    return f"{card_exp[:2]}/{card_exp[2:]}" if len(card_exp) == 6 else card_exp


class CardOverrideForm(forms.Form):
    is_valid = forms.TypedChoiceField(label="Validity", choices=VALIDITY_CHOICES, widget=forms.RadioSelect,
                                      coerce=lambda value: value == "valid")
    card_exp = forms.CharField(label="Expiry (MMYYYY)", max_length=6, required=False,
                               help_text="Change only when the bank reissued the card with a new expiry.")
    reason = ReasonField()

    def __init__(self, *args, card: DebitCard, **kwargs):
        kwargs.setdefault("initial", {"is_valid": "valid" if card.is_valid else "invalid", "card_exp": card.card_exp})
        super().__init__(*args, **kwargs)
        self.card = card

    def updates(self) -> dict:
        """The fields that differ from the card on file (what ``card_admin_update`` is asked to change)."""
        data, updates = self.cleaned_data, {}
        if data["is_valid"] != self.card.is_valid:
            updates["is_valid"] = data["is_valid"]
        card_exp = (data.get("card_exp") or "").strip()
        if card_exp and card_exp != self.card.card_exp:
            updates["card_exp"] = card_exp
        return updates

    def clean(self):
        data = super().clean()
        if not self.errors and not self.updates():
            state = "valid" if self.card.is_valid else "invalid"
            raise forms.ValidationError(
                f"Nothing to change: the card is already {state} and expires {_exp_display(self.card.card_exp)}.",
                code="nothing_to_update")
        return data


@admin.register(DebitCard)
class DebitCardAdmin(BackofficeActionsMixin, ReadOnlyAdmin):
    list_display = ("user_id", "masked_card_number", "expiry", "is_valid", "invalid_reason", "invalid_date",
                    "created_on", "token_refreshed_at", "force_failure")
    list_filter = ("is_valid", "invalid_reason", "force_failure", "created_on", "token_refreshed_at")
    search_fields = ("=user_id", "=masked_card_number")
    search_help_text = "Exact user id or last 4 digits."
    date_hierarchy = "created_on"
    fields = ("user_id", "masked_card_number", "expiry", "is_valid", "invalid_date", "invalid_reason",
              "tokens_on_file", "hashed_card_number", "created_on", "token_refreshed_at", "force_failure",
              "created_at", "updated_at")
    readonly_fields = fields

    @admin.display(description="expiry", ordering="card_exp")
    def expiry(self, obj: DebitCard) -> str:
        return _exp_display(obj.card_exp)

    @admin.display(description="Usio tokens")
    def tokens_on_file(self, obj: DebitCard) -> str:
        # Whether they exist, never their values (they would let anyone charge the card through Usio).
        present = [name for name, value in (("credit", obj.transaction_reference_id),
                                            ("debit", obj.debit_transaction_reference_id)) if value]
        return f"on file ({', '.join(present)})" if present else "none"

    def get_urls(self):
        return [
            path("<path:object_id>/override/", self.admin_site.admin_view(self.override_view),
                 name="cards_debitcard_override"),
            *super().get_urls(),
        ]

    def override_view(self, request, object_id: str):
        self.require_permission(request, "cards.change_debitcard")
        card = self.get_action_object(request, object_id)
        form = CardOverrideForm(request.POST if request.method == "POST" else None, card=card)
        if form.is_bound and form.is_valid():
            try:
                card = services.card_admin_update(user_id=card.user_id, actor=request.user.get_username(),
                                                  reason=form.cleaned_data["reason"], **form.updates())
            except ServiceError as exc:
                add_service_error(form, exc)
            else:
                self.message_user(request, f"Card ••••{card.masked_card_number} of {card.user_id} is now "
                                           f"{'valid' if card.is_valid else 'invalid'}, expires "
                                           f"{_exp_display(card.card_exp)}.", messages.SUCCESS)
                return HttpResponseRedirect(self.change_url(card))
        return self.render_action(
            request, template="admin/cards/debitcard/override.html", title="Override a debit card", form=form,
            original=card, submit_label="Save override", expiry=_exp_display(card.card_exp),
        )


@admin.register(DebitCardChange)
class DebitCardChangeAdmin(ReadOnlyAdmin):
    list_display = ("at", "user_id", "change_type", "old_masked_card_number", "new_masked_card_number",
                    "new_card_exp", "actor", "reason")
    list_filter = ("change_type", "at")
    search_fields = ("=user_id", "=old_masked_card_number", "=new_masked_card_number", "actor")
    search_help_text = "Exact user id or last 4 digits, or actor."
    date_hierarchy = "at"
