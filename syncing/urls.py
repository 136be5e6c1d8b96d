"""``/webhooks/``: processor callbacks (placeholder until the JPM webhook intake lands)."""

urlpatterns: list = []
