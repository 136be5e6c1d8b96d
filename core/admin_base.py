"""Admin building blocks shared by the apps."""

from django.contrib import admin


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
