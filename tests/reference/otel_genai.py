"""GenAI spans from the official OpenTelemetry Python SDK, exported to inferwatch.

Shapes: an OpenLIT-style chat span (current gen_ai.* names, gen_ai.usage.cost, content
attributes), an OpenLLMetry-style chat span (gen_ai.system, prompt/completion tokens,
traceloop session), an execute_tool span, an invoke_agent span that failed, a chat span that
timed out, and one plain HTTP span (no gen_ai.operation.name: skipped).

    otel_genai.py --endpoint URL [--token T] --json-out FILE

Exports the spans with the SDK's OTLP/HTTP protobuf exporter to URL (…/v1/traces) and writes
the same export request in the OTLP/JSON encoding to FILE (hex ids, as the spec says), for a
second client to send. Prints one JSON line: {"export": "SUCCESS" | "FAILURE"}.
"""

import argparse
import base64
import json
import sys

from google.protobuf.json_format import MessageToDict
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns


def spans(provider):
    chat = provider.get_tracer("openlit")
    legacy = provider.get_tracer("opentelemetry.instrumentation.openai")

    s = chat.start_span("chat gpt-4o-mini", start_time=T0, attributes={
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 45,
        "gen_ai.usage.cache_read.input_tokens": 20,
        "gen_ai.usage.cost": 0.0021,
        "gen_ai.conversation.id": "conv-1",
        "gen_ai.response.finish_reasons": ["length"],
        "gen_ai.request.temperature": 0.2,
        "gen_ai.prompt": "a user's question, never stored",
        "gen_ai.input.messages": "[{\"role\": \"user\"}]",
    })
    s.end(end_time=T0 + 812_500_000)

    s = legacy.start_span("anthropic.chat", start_time=T0 + 1_000_000_000, attributes={
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "anthropic",
        "gen_ai.request.model": "claude-3-5-haiku",
        "gen_ai.usage.prompt_tokens": 300,
        "gen_ai.usage.completion_tokens": 80,
        "gen_ai.usage.cache_read_input_tokens": 100,
        "traceloop.association.properties.session_id": "sess-9",
        "gen_ai.response.finish_reasons": ["content_filter"],
    })
    s.end(end_time=T0 + 1_000_000_000 + 2_000_000_000)

    s = chat.start_span("execute_tool search", start_time=T0 + 3_000_000_000, attributes={
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "search",
        "session.id": "sess-9",
        "gen_ai.tool.call.arguments": "{\"q\": \"secret\"}",
    })
    s.end(end_time=T0 + 3_000_000_000 + 50_000_000)

    s = chat.start_span("invoke_agent planner", start_time=T0 + 4_000_000_000, attributes={
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.agent.name": "planner",
        "error.type": "RateLimitError",
    })
    s.set_status(Status(StatusCode.ERROR, "rate limited"))
    s.end(end_time=T0 + 4_000_000_000 + 1_500_000_000)

    s = chat.start_span("chat gpt-4o", start_time=T0 + 6_000_000_000, attributes={
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "error.type": "APITimeoutError",
    })
    s.set_status(Status(StatusCode.ERROR))
    s.end(end_time=T0 + 6_000_000_000 + 30_000_000_000)

    s = chat.start_span("GET /health", start_time=T0 + 7_000_000_000,
                        attributes={"http.request.method": "GET"})
    s.end(end_time=T0 + 7_000_000_000 + 1_000_000)


def hex_ids(node):
    """OTLP/JSON writes trace and span ids as hex, not protobuf JSON's base64."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
                node[k] = base64.b64decode(v).hex()
            else:
                hex_ids(v)
    elif isinstance(node, list):
        for v in node:
            hex_ids(v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--token")
    ap.add_argument("--json-out", required=True)
    a = ap.parse_args()

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    spans(provider)
    finished = memory.get_finished_spans()

    headers = {"Authorization": f"Bearer {a.token}"} if a.token else None
    exporter = OTLPSpanExporter(endpoint=a.endpoint, headers=headers, timeout=10)
    result = exporter.export(finished)

    body = MessageToDict(encode_spans(finished), use_integers_for_enums=True)
    hex_ids(body)
    with open(a.json_out, "w") as f:
        json.dump(body, f)
    print(json.dumps({"export": result.name, "spans": len(finished)}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
