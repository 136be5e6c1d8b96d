"""Back office of the blocklist: the read-only log, and the "Block" / "Unblock" pages that call the services.

Records are never edited or deleted (the log is append-only). Blocking or unblocking a user is done on
``admin:blocklist_blocklistrecord_block`` / ``_unblock`` (``?user_id=U`` pre-fills the form; permission
``blocklist.add_blocklistrecord``): a reason is required, and ``blocklist_block`` / ``blocklist_unblock`` append the
record (source ``manual``, actor = the staff username) and its ``AuditEntry`` in one transaction. The model's "add"
page sends you to the block page.
"""

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import NoReverseMatch, path, reverse
from django.utils.http import urlencode

from blocklist.models import BlocklistRecord, BlocklistSource, BlocklistStatus
from blocklist.selectors import blocklist_history, blocklist_is_blocked, blocklist_status
from blocklist.services import blocklist_block, blocklist_unblock
from core.admin_base import BackofficeActionsMixin, ReadOnlyAdmin, ReasonField, add_service_error
from core.errors import ServiceError
from core.validators import validate_user_id

HISTORY_SHOWN = 10


class BlocklistChangeForm(forms.Form):
    """Block (``block=True``) or unblock one user; refuses what would not change anything."""

    user_id = forms.CharField(label="User id", max_length=64)
    reason = ReasonField()

    def __init__(self, *args, block: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.block = block

    def clean_user_id(self):
        user_id = self.cleaned_data["user_id"].strip()
        try:
            validate_user_id(user_id)
        except ServiceError as exc:
            raise forms.ValidationError(exc.message, code=exc.code) from None
        if self.block and blocklist_is_blocked(user_id=user_id):
            raise forms.ValidationError("This user is already blocked.", code="already_blocked")
        if not self.block and not blocklist_is_blocked(user_id=user_id):
            raise forms.ValidationError("This user is not blocked.", code="not_blocked")
        return user_id


@admin.register(BlocklistRecord)
class BlocklistRecordAdmin(BackofficeActionsMixin, ReadOnlyAdmin):
    list_display = ("user_id", "status", "source", "return_code", "short_reason", "actor", "payment_id",
                    "created_at")
    list_filter = ("status", "source", "return_code", "created_at")
    search_fields = ("=user_id", "=return_code", "=actor", "=payment_id")
    search_help_text = "Exact user id, return code, actor or payment id."
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")

    @admin.display(description="reason")
    def short_reason(self, obj: BlocklistRecord) -> str:
        return obj.reason if len(obj.reason) <= 80 else obj.reason[:79] + "…"

    def has_add_permission(self, request):
        # "Add" means block a user (the add page redirects to the block page); records are never edited.
        return request.user.has_perm("blocklist.add_blocklistrecord")

    def get_urls(self):
        return [
            path("block/", self.admin_site.admin_view(self.block_view), name="blocklist_blocklistrecord_block"),
            path("unblock/", self.admin_site.admin_view(self.unblock_view), name="blocklist_blocklistrecord_unblock"),
            *super().get_urls(),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        self.require_permission(request, "blocklist.add_blocklistrecord")
        query = {"user_id": request.GET["user_id"]} if request.GET.get("user_id") else {}
        url = reverse("admin:blocklist_blocklistrecord_block", current_app=self.admin_site.name)
        return HttpResponseRedirect(f"{url}?{urlencode(query)}" if query else url)

    def block_view(self, request):
        return self._change_view(request, block=True)

    def unblock_view(self, request):
        return self._change_view(request, block=False)

    def _change_view(self, request, *, block: bool):
        self.require_permission(request, "blocklist.add_blocklistrecord")
        if request.method == "POST":
            form = BlocklistChangeForm(request.POST, block=block)
        else:
            form = BlocklistChangeForm(initial={"user_id": request.GET.get("user_id", "").strip()}, block=block)
        if form.is_bound and form.is_valid():
            user_id, reason = form.cleaned_data["user_id"], form.cleaned_data["reason"]
            service = blocklist_block if block else blocklist_unblock
            try:
                outcome = service(user_id=user_id, reason=reason, actor=request.user.get_username(),
                                  source=BlocklistSource.MANUAL)
            except ServiceError as exc:
                add_service_error(form, exc)
            else:
                if outcome.changed:
                    self.message_user(request, f"User {user_id} {'blocked' if block else 'unblocked'}.",
                                      messages.SUCCESS)
                else:  # another session changed it between the form check and the service's lock
                    self.message_user(request, f"Nothing changed: user {user_id} is "
                                               f"{'already blocked' if block else 'not blocked'}.", messages.WARNING)
                return HttpResponseRedirect(self._after_url(user_id))
        return self.render_action(
            request, template="admin/blocklist/blocklistrecord/change_state.html",
            title="Block a user" if block else "Unblock a user", form=form,
            submit_label="Block" if block else "Unblock", block=block, **self._state_context(form),
        )

    def _state_context(self, form: BlocklistChangeForm) -> dict:
        """The current state and recent history of the user the form is about (if the id is valid)."""
        user_id = (form.data.get("user_id") if form.is_bound else form.initial.get("user_id")) or ""
        try:
            validate_user_id(user_id.strip())
        except ServiceError:
            return {"state": None, "history": []}
        user_id = user_id.strip()
        return {"state": blocklist_status(user_id=user_id),
                "history": list(blocklist_history(user_id=user_id)[:HISTORY_SHOWN]),
                "blocked": BlocklistStatus.BLOCKED}

    def _after_url(self, user_id: str) -> str:
        """The user's back-office page when it exists, else this log filtered on the user."""
        try:
            return reverse("admin:backoffice_user", args=[user_id], current_app=self.admin_site.name)
        except NoReverseMatch:
            url = reverse("admin:blocklist_blocklistrecord_changelist", current_app=self.admin_site.name)
            return f"{url}?{urlencode({'q': user_id})}"
