"""Role checks of SPEC §10.

``require_roles("service", "user")`` builds a DRF permission class. The ``user`` role may only touch
its own ``user_id``: when the URL has a ``user_id`` the check is done here; views that take a
``user_id`` in the body call ``ensure_user_access``.
"""

from rest_framework.permissions import BasePermission

from core.auth.principal import ROLE_USER, ROLES, Principal
from core.errors import PermissionDeniedError


def ensure_user_access(principal: Principal, user_id: str) -> None:
    """Raise 403 when an end user acts on another user's data. Other roles pass."""
    if principal.role == ROLE_USER and principal.user_id != str(user_id):
        raise PermissionDeniedError("You may only access your own data.", code="not_your_user")


class _RolePermission(BasePermission):
    roles: frozenset[str] = frozenset()

    def has_permission(self, request, view) -> bool:
        principal = request.user
        if not isinstance(principal, Principal) or principal.role not in self.roles:
            return False
        path_user = view.kwargs.get("user_id") if hasattr(view, "kwargs") else None
        if path_user is not None:
            ensure_user_access(principal, path_user)
        return True


def require_roles(*roles: str) -> type[BasePermission]:
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles: {sorted(unknown)}")
    name = "Require" + "Or".join(r.capitalize() for r in roles)
    return type(name, (_RolePermission,), {"roles": frozenset(roles)})
