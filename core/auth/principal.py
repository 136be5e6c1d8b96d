"""Who is calling: the object DRF puts in ``request.user`` for API callers."""

from dataclasses import dataclass

ROLE_SERVICE = "service"
ROLE_SUPPORT = "support"
ROLE_ADMIN = "admin"
ROLE_USER = "user"
ROLES = (ROLE_SERVICE, ROLE_SUPPORT, ROLE_ADMIN, ROLE_USER)


@dataclass(frozen=True)
class Principal:
    """An authenticated API caller.

    ``client_id`` scopes per-client state (idempotency keys, throttling): ``key:<pk>`` for API keys,
    ``user:<sub>`` for end users. ``user_id`` is set only for the ``user`` role.
    """

    role: str
    name: str
    client_id: str
    user_id: str | None = None

    is_authenticated = True
    is_anonymous = False

    @property
    def pk(self) -> str:
        return self.client_id

    def __str__(self) -> str:
        return f"{self.role}:{self.name}"
