"""Admin building blocks shared by the apps."""

import json

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import reverse

from core.errors import ServiceError
from core.redaction import redact, redact_text


class ReadOnlyAdmin(admin.ModelAdmin):
    """An admin for records nobody edits by hand (history, audit, staging): view only.

    Changes of state go through services (ARCHITECTURE.md §7), never through a model form.
    """

    def get_readonly_fields(self, request, obj=None):
        # An explicit list wins (an admin that must not show some fields — encrypted numbers — names the rest).
        return self.readonly_fields or [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReasonField(forms.CharField):
    """The ``reason`` every back-office action asks for (required; kept in the audit trail)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 3, "cols": 60}))
        kwargs.setdefault("max_length", 2000)
        kwargs.setdefault("help_text", "Why you do this. Recorded in the audit trail with your name and the time.")
        kwargs.setdefault("error_messages", {"required": "A reason is required."})
        super().__init__(**kwargs)


class ReasonForm(forms.Form):
    reason = ReasonField()


def add_service_error(form: forms.Form, exc: ServiceError, *, field_codes: dict[str, str] | None = None) -> None:
    """Show a service's refusal on the form as the API words it ("message (code)"): on the field ``field_codes``
    maps its code to, else the field its ``details.field`` names, else above the form."""
    details = exc.details if isinstance(exc.details, dict) else {}
    field = (field_codes or {}).get(exc.code) or details.get("field")
    form.add_error(field if field in form.fields else None,
                   forms.ValidationError(f"{exc.message} ({exc.code})", code=exc.code))


def pretty_json(value) -> str:
    """Redacted, indented JSON for display (dead-letter arguments, raw answers, event data)."""
    return redact_text(json.dumps(redact(value), indent=2, sort_keys=True, default=str))


class BackofficeActionsMixin:
    """Per-object back-office action pages of a ``ModelAdmin`` (GET = the form, POST = act)."""

    def require_permission(self, request, permission: str) -> None:
        """403 unless the user holds ``permission`` (checked on GET and POST, before anything is read)."""
        if not request.user.has_perm(permission):
            raise PermissionDenied

    def get_action_object(self, request, object_id: str):
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404
        return obj

    def change_url(self, obj) -> str:
        opts = self.model._meta
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk],
                       current_app=self.admin_site.name)

    def render_action(self, request, *, template: str, title: str, form: forms.Form, original=None,
                      submit_label: str = "Confirm", **context) -> TemplateResponse:
        opts = self.model._meta
        return TemplateResponse(request, template, {
            **self.admin_site.each_context(request),
            "opts": opts,
            "app_label": opts.app_label,
            "title": title,
            "form": form,
            "original": original,
            "submit_label": submit_label,
            "media": self.media + form.media,
            **context,
        })
