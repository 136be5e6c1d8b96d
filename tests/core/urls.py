"""A test URL conf: the project's URLs plus views that exercise the error handler with real DRF parsing."""

from django.db import OperationalError
from django.urls import include, path
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ConflictError
from core.models import ApiKey
from core.serializers import StrictInputSerializer


class EchoInput(StrictInputSerializer):
    amount = serializers.DecimalField(max_digits=12, decimal_places=2)
    note = serializers.CharField(required=False, max_length=20)


class EchoView(APIView):
    def post(self, request):
        data = EchoInput(data=request.data)
        data.is_valid(raise_exception=True)
        return Response({"amount": str(data.validated_data["amount"])}, status=201)


class DatabaseDownView(APIView):
    def get(self, request):
        raise OperationalError("connection to server at 127.0.0.1 failed: password=hunter2")


class BrokenView(APIView):
    def get(self, request):
        raise RuntimeError("account 123456789012 exploded")


class ConflictView(APIView):
    def get(self, request):
        raise ConflictError("Already in progress.", code="in_progress", details={"retry_after": 1})


class ApiKeyOutput(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["name", "role", "created_at"]


class ApiKeyListView(ListAPIView):
    """A list endpoint using the project's default pagination (cursor) and filter backend."""

    queryset = ApiKey.objects.all()
    serializer_class = ApiKeyOutput
    filterset_fields = ["role"]


urlpatterns = [
    path("test/keys", ApiKeyListView.as_view()),
    path("test/echo", EchoView.as_view()),
    path("test/db-down", DatabaseDownView.as_view()),
    path("test/broken", BrokenView.as_view()),
    path("test/conflict", ConflictView.as_view()),
    path("", include("config.urls")),
]
handler404 = "core.views.json_not_found"
handler500 = "core.views.json_server_error"
