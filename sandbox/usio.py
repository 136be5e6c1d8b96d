"""Placeholder: replaced by the Usio fake."""

from sandbox.core import SandboxService, json_response


class UsioSandbox(SandboxService):
    name = "usio"

    def handle(self, request, subpath):
        return json_response({"error": "not_implemented"}, status=501)
