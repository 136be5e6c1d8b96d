"""Reading what the code under test published to the configured broker (Redis or the embedded one)."""

from django.conf import settings
from kombu import Connection


def drain(queue: str) -> list[tuple[dict, object]]:
    """Read and ack every message on ``queue``: ``[(headers, (args, kwargs, embed))]``.

    Publishing is synchronous, so everything sent is already there; nothing is waited for.
    """
    messages = []
    with Connection(settings.CELERY_BROKER_URL) as conn:
        simple = conn.SimpleQueue(queue)
        try:
            while True:
                message = simple.get(block=False)
                messages.append((message.headers, message.payload))
                message.ack()
        except simple.Empty:
            pass
        finally:
            simple.close()
    return messages
