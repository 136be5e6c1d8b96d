"""Fake J.P. Morgan Treasury Services: ``service`` (routes, ledger, callbacks) and ``wire`` (shapes)."""

from sandbox.jpm.service import JpmSandbox

__all__ = ["JpmSandbox"]
