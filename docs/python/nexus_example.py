#!/usr/bin/python3
"""Ingest one event into nexusd over gRPC and read the resolved person back (Debian's python3-grpcio).

Stubs first (see docs/python/README.md):  docs/python/gen-stubs.sh /tmp/nexus-py
Then:  PYTHONPATH=/tmp/nexus-py /usr/bin/python3 docs/python/nexus_example.py --server 127.0.0.1:50051
An API key, when the server requires one, comes from the environment variable NEXUS_API_KEY.
"""
import argparse
import os
import sys
import time

import grpc
from google.protobuf.json_format import MessageToJson

from nexus.v1 import ingest_pb2, ingest_pb2_grpc, query_pb2, query_pb2_grpc, types_pb2


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default=os.environ.get("NEXUS_SERVER", "127.0.0.1:50051"))
    ap.add_argument("--email", default="jane.doe@acme.io")
    args = ap.parse_args()

    channel = grpc.insecure_channel(args.server)  # grpc.secure_channel(args.server, grpc.ssl_channel_credentials(ca)) for TLS
    key = os.environ.get("NEXUS_API_KEY")
    metadata = [("authorization", "Bearer " + key)] if key else []
    ingest = ingest_pb2_grpc.IngestServiceStub(channel)
    query = query_pb2_grpc.QueryServiceStub(channel)

    event = ingest_pb2.IngestEventsRequest(events=[types_pb2.Event(
        event_id="py-example-1", event_name="note_added", event_type="support", source="python-example",
        value=1.0,  # an `optional` field: Debian's grpc_tools is too old for these, protoc + grpc_python_plugin is not
        persons=[types_pb2.EntityMention(
            role="customer",
            identifiers=[types_pb2.Identifier(type="email", value=args.email)],
            traits={"name": "Jane Doe"})])])
    event.events[0].occurred_at.FromJsonString("2026-11-02T10:00:00Z")
    resp = ingest.IngestEvents(event, metadata=metadata, timeout=30)
    print(f"ingest: accepted={resp.accepted} duplicates={resp.duplicates}")  # a second run: a duplicate

    # The resolver runs asynchronously (seconds at most): poll the lookup until the person exists.
    deadline = time.time() + 30
    while True:
        try:
            person = query.LookupPerson(query_pb2.LookupPersonRequest(identifier_type="email",
                                                                      identifier_value=args.email),
                                        metadata=metadata, timeout=30)
            break
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND or time.time() > deadline:
                print(f"lookup failed: {e.code().name}: {e.details()}", file=sys.stderr)
                return 1
            time.sleep(0.2)
    print(f"person: {person.person_id} name={person.name!r} email={person.email}")
    timeline = query.ListPersonTimeline(query_pb2.ListPersonTimelineRequest(person_id=person.person_id, page_size=5),
                                        metadata=metadata, timeout=30)
    for e in timeline.events:
        print(f"  {e.occurred_at.ToJsonString()}  {e.event_type}/{e.event_name}  {e.source}  roles={list(e.roles)}")
    print(MessageToJson(timeline, preserving_proto_field_name=True, indent=None)[:200])
    return 0


if __name__ == "__main__":
    sys.exit(main())
