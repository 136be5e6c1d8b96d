"""Per-caller rate limit: API key or end user; by client IP before authentication."""

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle


class PrincipalRateThrottle(SimpleRateThrottle):
    scope = "principal"

    def get_rate(self):
        # Read at request time (DRF's default reads it once at import), so a settings change applies.
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view):
        principal = request.user
        ident = getattr(principal, "client_id", None) or self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}
