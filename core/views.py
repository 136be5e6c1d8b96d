"""Health probes, the caller's identity, and JSON handlers for errors outside DRF."""

import logging

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views import defaults
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema, inline_serializer
from kombu import Connection
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.exception_handler import error_response

logger = logging.getLogger(__name__)


@require_GET
def healthz(request):
    """Liveness: the process is up and serving. Touches nothing else."""
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_broker() -> None:
    timeout = settings.READYZ_TIMEOUT_SECONDS
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)


@require_GET
def readyz(request):
    """Readiness: the database and the broker answer. 503 with the error format otherwise."""
    checks = {}
    for name, check in (("database", _check_database), ("broker", _check_broker)):
        try:
            check()
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready"; the kind is enough to act on
            logger.warning("readiness check failed", extra={"check": name, "error_type": type(exc).__name__})
            checks[name] = "unavailable"
    if all(state == "ok" for state in checks.values()):
        return JsonResponse({"status": "ok", "checks": checks})
    return error_response("not_ready", "A dependency is unavailable.", 503, {"checks": checks})


class WhoAmIView(APIView):
    """The authenticated caller: lets a client check its credentials and role."""

    @extend_schema(
        operation_id="whoami",
        responses=inline_serializer(
            "WhoAmIResponse",
            {
                "role": serializers.CharField(),
                "name": serializers.CharField(),
                "user_id": serializers.CharField(allow_null=True),
            },
        ),
    )
    def get(self, request):
        principal = request.user
        return Response({"role": principal.role, "name": principal.name, "user_id": principal.user_id})


def _is_admin_path(request) -> bool:
    return request.path.startswith("/admin/")


def json_bad_request(request, exception=None):
    if _is_admin_path(request):
        return defaults.bad_request(request, exception)
    return error_response("bad_request", "The request is malformed.", 400)


def json_permission_denied(request, exception=None):
    if _is_admin_path(request):
        return defaults.permission_denied(request, exception)
    return error_response("permission_denied", "You do not have permission to perform this action.", 403)


def json_not_found(request, exception=None):
    if _is_admin_path(request):
        return defaults.page_not_found(request, exception)
    return error_response("not_found", "Not found.", 404)


def json_server_error(request):
    if _is_admin_path(request):
        return defaults.server_error(request)
    return error_response("internal_error", "An internal error occurred.", 500)
