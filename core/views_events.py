"""The pull feed of events (SPEC §4, §10): ``GET /api/v1/events?after=<cursor>&limit=`` (service role only)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.auth.permissions import require_roles
from core.outbox import FEED_DEFAULT_LIMIT, FEED_MAX_LIMIT, outbox_feed_page
from core.serializers import StrictInputSerializer


class EventFeedQuery(StrictInputSerializer):
    after = serializers.CharField(required=False, max_length=64, allow_blank=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=FEED_MAX_LIMIT,
                                     default=FEED_DEFAULT_LIMIT)


class EventEnvelopeOutput(serializers.Serializer):
    id = serializers.UUIDField(help_text="Stable event id: de-duplicate on it (delivery is at least once).")
    type = serializers.CharField(help_text="e.g. FLOAT_DEBIT_RETURNED (the catalogue: docs/payments.md).")
    source = serializers.CharField(help_text='Always "PaymentService".')
    subject = serializers.CharField(help_text="The payment's confirmation_id, or its id while it has none.")
    sequence = serializers.IntegerField(help_text="1, 2, … per payment, in the order its events happened.")
    occurred_at = serializers.DateTimeField()
    data = serializers.DictField(help_text="The payment as GET /api/v1/payments/{confirmation_id} renders it.")


class EventFeedOutput(serializers.Serializer):
    events = EventEnvelopeOutput(many=True)
    next_cursor = serializers.CharField(
        allow_null=True,
        help_text="Pass as `after` to read on. Equals `after` when nothing new was published (poll with it "
                  "later); null only when the feed is empty and no `after` was given.",
    )
    has_more = serializers.BooleanField(help_text="More events are available right now.")


class EventFeedView(APIView):
    """Published events in publication order, behind an opaque cursor (``core.outbox.outbox_feed_page``)."""

    permission_classes = [require_roles("service")]

    @extend_schema(
        operation_id="events_feed",
        summary="Read the event feed",
        description=(
            "Events in the order the outbox relay published them (each payment's events in their order), at least "
            "once: a client that re-reads from an older cursor sees events again, so de-duplicate on `id`. Only "
            "events whose transaction committed and which the relay has published appear, and an event never "
            "appears behind a cursor already handed out, so following `next_cursor` never skips one. The cursor "
            "is opaque: store it and send it back as `after`."
        ),
        parameters=[
            OpenApiParameter("after", OpenApiTypes.STR, OpenApiParameter.QUERY, required=False,
                             description="The `next_cursor` of the previous page; omit to start from the beginning."),
            OpenApiParameter("limit", OpenApiTypes.INT, OpenApiParameter.QUERY, required=False,
                             description=f"Events per page, 1-{FEED_MAX_LIMIT} (default {FEED_DEFAULT_LIMIT})."),
        ],
        responses={
            200: EventFeedOutput,
            400: OpenApiResponse(description="invalid_cursor; validation_error (limit, unknown parameter)."),
            401: OpenApiResponse(description="No or invalid credentials."),
            403: OpenApiResponse(description="Only the service role reads the feed."),
        },
    )
    def get(self, request):
        query = EventFeedQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        page = outbox_feed_page(after=query.validated_data.get("after"), limit=query.validated_data["limit"])
        # The envelopes go out exactly as consumers and push subscribers get them (EventFeedOutput documents them).
        return Response({"events": page.events, "next_cursor": page.next_cursor, "has_more": page.has_more})
