"""confluent-kafka-python's SchemaRegistryClient and its Avro and JSON Schema serializers
against Herald's schema registry and broker: register, evolve under every level (a
compatible and an incompatible change each), delete, then serialize through the broker and
deserialize. Run by tests/registry_client.rs with the registry URL and the bootstrap
address; prints "ok" when everything held."""

import json
import sys

from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

registry_url, bootstrap = sys.argv[1], sys.argv[2]
client = SchemaRegistryClient({"url": registry_url})


def json_schema(properties, required=()):
    return Schema(
        json.dumps(
            {
                "type": "object",
                "properties": {name: {"type": kind} for name, kind in properties.items()},
                "required": list(required),
                "additionalProperties": False,
            }
        ),
        "JSON",
    )


def expect_error(code, action):
    try:
        action()
    except SchemaRegistryError as error:
        assert error.error_code == code, f"expected {code}, got {error.error_code}: {error}"
        return
    raise AssertionError(f"expected error {code}")


# Closed content models: adding an optional property is backward compatible (the new
# schema reads old data) but not forward; removing one is the reverse.
base = {"id": "string", "qty": "integer"}
added = json_schema({**base, "note": "string"})
removed = json_schema({"id": "string"})
expected = {
    "BACKWARD": (True, False),
    "BACKWARD_TRANSITIVE": (True, False),
    "FORWARD": (False, True),
    "FORWARD_TRANSITIVE": (False, True),
    "FULL": (False, False),
    "FULL_TRANSITIVE": (False, False),
    "NONE": (True, True),
}
for level, (add_ok, remove_ok) in expected.items():
    subject = f"levels-{level.lower()}"
    first = client.register_schema(subject, json_schema(base))
    client.set_compatibility(subject_name=subject, level=level)
    assert client.get_compatibility(subject) == level, level
    assert client.test_compatibility(subject, added) == add_ok, f"{level}: adding"
    assert client.test_compatibility(subject, removed) == remove_ok, f"{level}: removing"
    if add_ok:
        assert client.register_schema(subject, added) != first
    else:
        expect_error(409, lambda: client.register_schema(subject, added))

# Ids: the same schema under two subjects has one id; versions and lookups.
a = client.register_schema("ids-a", json_schema({"x": "string"}))
b = client.register_schema("ids-b", json_schema({"x": "string"}))
assert a == b, (a, b)
latest = client.get_latest_version("ids-a")
assert (latest.schema_id, latest.version) == (a, 1), latest
assert client.lookup_schema("ids-b", json_schema({"x": "string"})).version == 1
assert json.loads(client.get_schema(a).schema_str)["properties"]["x"]["type"] == "string"

# Deletes: soft, then permanent; bad input.
assert client.delete_version("ids-b", 1) == 1
expect_error(40401, lambda: client.get_versions("ids-b"))
assert client.delete_subject("ids-b", permanent=True) == [1]
expect_error(40401, lambda: client.get_latest_version("nobody"))
expect_error(42201, lambda: client.register_schema("bad", Schema('{"type": "nope"}', "AVRO")))

# Avro and JSON Schema serializers through the broker.
avro_schema = json.dumps(
    {
        "type": "record",
        "name": "Order",
        "namespace": "shop",
        "fields": [{"name": "id", "type": "string"}, {"name": "qty", "type": "int"}],
    }
)
json_order = json.dumps(
    {
        "type": "object",
        "properties": {"id": {"type": "string"}, "qty": {"type": "integer"}},
        "required": ["id", "qty"],
    }
)
cases = [
    ("avro-orders", AvroSerializer(client, avro_schema), AvroDeserializer(client)),
    ("json-orders", JSONSerializer(json_order, client), JSONDeserializer(json_order, schema_registry_client=client)),
]
producer = Producer({"bootstrap.servers": bootstrap})
for topic, serialize, _ in cases:
    for n in range(3):
        value = serialize({"id": f"o{n}", "qty": n}, SerializationContext(topic, MessageField.VALUE))
        assert value[0] == 0, "Confluent framing: magic byte 0, then the schema id"
        producer.produce(topic, key=f"o{n}", value=value)
assert producer.flush(30) == 0
for topic, _, deserialize in cases:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"check-{topic}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    received = []
    for _ in range(300):
        message = consumer.poll(0.1)
        if message is None or message.error():
            continue
        received.append(deserialize(message.value(), SerializationContext(topic, MessageField.VALUE)))
        if len(received) == 3:
            break
    consumer.close()
    assert sorted(received, key=lambda r: r["id"]) == [{"id": f"o{n}", "qty": n} for n in range(3)], received
    assert client.get_latest_version(f"{topic}-value").version == 1

print("ok")
