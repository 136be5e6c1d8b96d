"""Optional JWS signing of JPM request bodies (JPM_SIGN_REQUESTS; processors.md: "some endpoints want the JSON
body signed as a compact JWS (RS256)").

**Assumption** (JPM's exact convention is not public): the request body on the wire *is* the compact JWS
``<header>.<payload>.<signature>`` whose payload is the UTF-8 JSON body, sent with ``Content-Type:
application/jose``. The protected header is ``{"alg": "RS256", "typ": "JOSE", "cty": "json"[, "kid"]}``.
The key is JPM_SIGNING_KEY_PATH, or JPM_PRIVATE_KEY_PATH when that is empty; ``kid`` is JPM_KEY_ID.
"""

from __future__ import annotations

import json
from typing import Any

from jwt import InvalidKeyError
from jwt.api_jws import PyJWS

from integrations.errors import ProcessorConfigurationError

CONTENT_TYPE = "application/jose"


class JwsSigner:
    def __init__(self, *, private_key, key_id: str = ""):
        self._private_key = private_key  # never logged
        self.key_id = key_id

    def __repr__(self) -> str:
        return f"JwsSigner(key_id={self.key_id!r})"

    def sign(self, payload: Any) -> str:
        """The compact JWS of ``payload`` serialised as compact JSON."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"typ": "JOSE", "cty": "json", **({"kid": self.key_id} if self.key_id else {})}
        try:
            return PyJWS().encode(body, self._private_key, algorithm="RS256", headers=headers)
        except (ValueError, TypeError, InvalidKeyError) as exc:
            raise ProcessorConfigurationError("the JPM signing key cannot sign RS256", processor="jpm",
                                              operation="sign") from exc
