"""Back office of the blocklist: read-only history; the "add" form blocks or unblocks through the services.

Records are never edited or deleted (the log is append-only). Adding a record means "block" or "unblock" the user:
the form calls ``blocklist_block`` / ``blocklist_unblock`` with the staff user as actor (source ``manual``, audited).
"""

from django import forms
from django.contrib import admin, messages

from blocklist.models import BlocklistRecord, BlocklistSource, BlocklistStatus
from blocklist.selectors import blocklist_current_record, blocklist_is_blocked
from blocklist.services import blocklist_block, blocklist_unblock
from core.errors import ValidationError as ServiceValidationError
from core.validators import validate_user_id


class BlocklistChangeForm(forms.ModelForm):
    class Meta:
        model = BlocklistRecord
        fields = ["user_id", "status", "reason"]
        labels = {"status": "New status"}
        help_texts = {
            "status": "BLOCKED blocks the user; NOTBLOCKED unblocks them.",
            "reason": "Why (required; kept in the record and the audit trail).",
        }

    def clean_user_id(self):
        user_id = self.cleaned_data["user_id"].strip()
        try:
            validate_user_id(user_id)
        except ServiceValidationError as exc:
            raise forms.ValidationError(exc.message) from exc
        return user_id

    def clean(self):
        data = super().clean()
        user_id, status = data.get("user_id"), data.get("status")
        if user_id and status:
            blocked = blocklist_is_blocked(user_id=user_id)
            if status == BlocklistStatus.BLOCKED and blocked:
                raise forms.ValidationError("This user is already blocked.")
            if status == BlocklistStatus.NOTBLOCKED and not blocked:
                raise forms.ValidationError("This user is not blocked.")
        return data


@admin.register(BlocklistRecord)
class BlocklistRecordAdmin(admin.ModelAdmin):
    form = BlocklistChangeForm
    list_display = ("user_id", "status", "source", "return_code", "short_reason", "actor", "created_at")
    list_filter = ("status", "source")
    search_fields = ("=user_id", "return_code", "actor")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")

    @admin.display(description="reason")
    def short_reason(self, obj: BlocklistRecord) -> str:
        return obj.reason if len(obj.reason) <= 80 else obj.reason[:79] + "…"

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["user_id", "status", "reason"]
        return [f.name for f in BlocklistRecord._meta.fields]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else [f.name for f in BlocklistRecord._meta.fields]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_form(self, request, form, change):
        """Apply the block/unblock through the services; the admin saves nothing itself."""
        data = form.cleaned_data
        actor = request.user.get_username()
        if data["status"] == BlocklistStatus.BLOCKED:
            outcome = blocklist_block(user_id=data["user_id"], reason=data["reason"], actor=actor,
                                      source=BlocklistSource.MANUAL)
        else:
            outcome = blocklist_unblock(user_id=data["user_id"], reason=data["reason"], actor=actor,
                                        source=BlocklistSource.MANUAL)
        if not outcome.changed:
            self.message_user(request, "Nothing changed: the user was already in that state.", messages.WARNING)
        record = outcome.record or blocklist_current_record(user_id=data["user_id"])
        return record

    def save_model(self, request, obj, form, change):
        """The service has saved the record."""

    def save_related(self, request, form, formsets, change):
        """No related objects."""
