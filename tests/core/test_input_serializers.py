"""``StrictInputSerializer`` gives each instance its own fields without re-building them (``core.serializers``)."""

import threading

import pytest
from rest_framework import serializers

from core.serializers import StrictInputSerializer
from payments.views import PaymentSubmitInput


class _Input(StrictInputSerializer):
    name = serializers.CharField(max_length=5)
    kind = serializers.ChoiceField(choices=[("a", "A"), ("b", "B")], required=False)
    tags = serializers.ListField(child=serializers.CharField(max_length=3), required=False)


def test_each_instance_has_its_own_bound_fields_and_the_declared_ones_stay_unbound():
    first, second = _Input(data={"name": "x"}), _Input(data={"name": "y"})
    for name, declared in _Input._declared_fields.items():
        assert first.fields[name] is not declared and first.fields[name] is not second.fields[name]
        assert first.fields[name].parent is first and second.fields[name].parent is second
        assert declared.parent is None and declared.field_name is None


def test_a_contained_field_belongs_to_its_own_container():
    first, second = _Input(), _Input()
    first_child, second_child = first.fields["tags"].child, second.fields["tags"].child
    assert first_child is not second_child
    assert first_child.parent is first.fields["tags"] and second_child.parent is second.fields["tags"]
    assert first_child.root is first


@pytest.mark.parametrize(("data", "errors"), [
    ({"name": "toolong"}, {"name": ["Ensure this field has no more than 5 characters."]}),
    ({"name": "ok", "kind": "c"}, {"kind": ['"c" is not a valid choice.']}),
    ({"name": "ok", "tags": ["long"]}, {"tags": {0: ["Ensure this field has no more than 3 characters."]}}),
    ({"name": "ok", "nmae": "x"}, {"nmae": ["Unknown field."]}),
    ({}, {"name": ["This field is required."]}),
])
def test_validation_is_what_drf_gives(data, errors):
    serializer = _Input(data=data)
    assert not serializer.is_valid()
    assert serializer.errors == errors


def test_concurrent_instances_validate_independently():
    """Threads of one gunicorn worker validate at the same time; their fields share only what never changes."""
    results, barrier = {}, threading.Barrier(8)

    def validate(index: int) -> None:
        barrier.wait()
        for round_ in range(200):
            value = f"u{index}-{round_}"
            serializer = PaymentSubmitInput(data={"user_id": value, "purpose": "float", "payment_method": "pinless",
                                                  "payment_type": "debit", "amount": "1.00"})
            serializer.is_valid(raise_exception=True)
            if serializer.validated_data["user_id"] != value:
                results[index] = serializer.validated_data["user_id"]
                return
        results[index] = "ok"

    threads = [threading.Thread(target=validate, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == dict.fromkeys(range(8), "ok")
