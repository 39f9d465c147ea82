"""Old Kafka clients against a broker: kafka-python pinned to broker versions from 0.8.2
to 1.0, so it speaks the request versions Kafka 4 removed (Produce v0-2, Fetch v0-3,
ListOffsets v0, OffsetCommit v0-1, OffsetFetch v0, CreateTopics v0-1, DeleteTopics v0,
DescribeConfigs v0, DescribeLogDirs v0). With a capture directory it saves there the
first request frame of each (api, version) it sends (the test fixtures come from this).

usage: legacy_clients.py <bootstrap> [capture dir]
"""
import os
import struct
import sys

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic


SEEN = set()


def record_requests(capture):
    """Saves the first frame (without its length) of each (api, version) the client sends."""
    from kafka.protocol.parser import KafkaProtocol
    send_request = KafkaProtocol.send_request

    def recording(self, request, correlation_id=None):
        result = send_request(self, request, correlation_id)
        frame = self.bytes_to_send[-1][4:]
        api, version = struct.unpack(">hh", frame[:4])
        SEEN.add((api, version))
        if capture:
            path = os.path.join(capture, f"{api}-v{version}.bin")
            if not os.path.exists(path):
                with open(path, "wb") as f:
                    f.write(frame)
        return result

    KafkaProtocol.send_request = recording


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def produce_and_read(bootstrap, version, compression):
    tag = "-".join(map(str, version)) + f"-{compression or 'none'}"
    topic = f"legacy-{tag}"
    producer = KafkaProducer(bootstrap_servers=bootstrap, api_version=version, compression_type=compression,
                             acks=1, request_timeout_ms=10000)
    sent = [producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=0) for i in range(3)]
    offsets = [future.get(timeout=10).offset for future in sent]
    producer.close()
    check(offsets == [0, 1, 2], f"{tag}: produced at offsets {offsets}")
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, api_version=version, group_id=None,
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=10000)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got = [(m.offset, m.key, m.value) for _, m in zip(range(3), consumer)]
    check(got == [(i, f"k{i}".encode(), f"v{i}".encode()) for i in range(3)], f"{tag}: read back {got}")
    ends = consumer.end_offsets([tp])
    begins = consumer.beginning_offsets([tp])
    check((begins[tp], ends[tp]) == (0, 3), f"{tag}: list offsets {begins[tp]}..{ends[tp]}")
    consumer.close()
    return topic


def commit_and_fetch(bootstrap, version, topic):
    tag = "-".join(map(str, version))
    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, api_version=version, group_id=f"legacy-group-{tag}",
                             enable_auto_commit=False, auto_offset_reset="earliest", consumer_timeout_ms=10000)
    consumer.assign([tp])
    consumer.commit({tp: __import__("kafka").OffsetAndMetadata(2, "", -1)})
    check(consumer.committed(tp) == 2, f"{tag}: committed offset 2 and fetched it back")
    consumer.close()


def admin(bootstrap, topic):
    client = KafkaAdminClient(bootstrap_servers=bootstrap, api_version=(0, 10, 1), request_timeout_ms=10000)
    client.create_topics([NewTopic("legacy-admin", 2, 1)])
    check("legacy-admin" in client.list_topics(), "CreateTopics v0 created a topic")
    client.delete_topics(["legacy-admin"])
    check("legacy-admin" not in client.list_topics(), "DeleteTopics v0 deleted it")
    client.close()
    client = KafkaAdminClient(bootstrap_servers=bootstrap, api_version=(0, 10, 2), request_timeout_ms=10000)
    client.create_topics([NewTopic("legacy-configured", 1, 1, topic_configs={"retention.ms": "60000"})])
    check("legacy-configured" in client.list_topics(), "CreateTopics v1 created a topic with a config")
    client.close()
    client = KafkaAdminClient(bootstrap_servers=bootstrap, api_version=(1, 0), request_timeout_ms=10000)
    described = client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "legacy-configured")])
    configs = described["topic"]["legacy-configured"]
    check(list(configs) == ["retention.ms"] and configs["retention.ms"]["value"] == "60000",
          f"DescribeConfigs v0 shows the one config set (is_default false): {configs}")
    dirs = client.describe_log_dirs()
    check(any(t["name"] == topic for d in dirs for l in d["log_dirs"] for t in l["topics"]),
          "DescribeLogDirs v0 lists a topic")
    from kafka.protocol.old.offset_for_leader_epoch import OffsetForLeaderEpochRequest

    async def send(request):
        return await client._manager.send(request)

    for version in (0, 1):
        response = client._manager.run(send, OffsetForLeaderEpochRequest[version](topics=[(topic, [(0, 0)])]))
        [(name, [partition])] = response.topics
        check(name == topic and partition[0] == 0 and partition[-1] == 3,
              f"OffsetForLeaderEpoch v{version}: epoch 0 ends at offset 3 ({partition})")
    client.close()


def main():
    bootstrap = sys.argv[1]
    capture = sys.argv[2] if len(sys.argv) > 2 else None
    if capture:
        os.makedirs(capture, exist_ok=True)
    record_requests(capture)
    for version, compression in [((0, 8, 2), None), ((0, 9), "gzip"), ((0, 10, 0), None), ((0, 10, 1), "snappy")]:
        topic = produce_and_read(bootstrap, version, compression)
        commit_and_fetch(bootstrap, version, topic)
    # Commits kept in the broker rather than ZooKeeper began with 0.8.2; 0.8.1's are v0.
    commit_and_fetch(bootstrap, (0, 8, 1), topic)
    admin(bootstrap, topic)
    print("requests sent:", " ".join(f"{api}v{version}" for api, version in sorted(SEEN)))
    print("all legacy clients passed")


main()
