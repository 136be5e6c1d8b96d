"""Placeholder: replaced by the Jpm fake."""

from sandbox.core import SandboxService, json_response


class JpmSandbox(SandboxService):
    name = "jpm"

    def handle(self, request, subpath):
        return json_response({"error": "not_implemented"}, status=501)
