"""Every contract between processes, written and read back by its one codec: what the
controller writes is what the proxies and Prometheus read."""

from __future__ import annotations

import re
from pathlib import Path
from uuid import uuid4

import pytest

from workers.contracts import feeds, labels, load, prompts, service_discovery, windows
from workers.contracts.labels import RouteLabels, from_labels, to_labels
from workers.domain import EndpointMode, EndpointState, ModelServiceMetadata

README = Path(__file__).parents[3] / "README.md"


@pytest.mark.parametrize(
    "route",
    [
        RouteLabels(uuid4(), uuid4(), "svc", "custom"),
        RouteLabels(uuid4(), uuid4(), "svc", "vllm", revision=3, host="host-2", traffic_ratio=0.1),
        RouteLabels(uuid4(), uuid4(), "svc", "custom", traffic_ratio=0.0),
    ],
)
def test_route_labels_round_trip(route: RouteLabels) -> None:
    assert from_labels(to_labels(route)) == route


def test_labels_a_reader_cannot_use_are_refused_or_read_safely() -> None:
    assert from_labels({"route_id": str(uuid4())}) is None  # no endpoint: not routable
    endpoint = str(uuid4())
    assert from_labels({"endpoint_id": endpoint, "traffic_ratio": "x"}).traffic_ratio == 1.0  # type: ignore[union-attr]
    assert from_labels({"endpoint_id": endpoint, "traffic_ratio": "-2"}).traffic_ratio == 0.0  # type: ignore[union-attr]
    assert from_labels({"endpoint_id": endpoint, "revision": "x"}).revision is None  # type: ignore[union-attr]


def test_scrape_targets_round_trip_through_their_hash() -> None:
    route = RouteLabels(uuid4(), uuid4(), "svc", "custom", 2)
    target = ModelServiceMetadata(uuid4(), "svc", "10.0.0.5", 8000, "/metrics", to_labels(route))
    fields = service_discovery.target_fields(target)
    assert service_discovery.target_from_fields(str(target.route_id), fields) == target
    assert (
        service_discovery.target_from_fields(str(target.route_id), {**fields, "port": "x"}) is None
    )


def test_endpoint_modes_round_trip_with_their_generation() -> None:
    full = EndpointState(EndpointMode.UNAVAILABLE, "no host with a free slot")
    modes = {uuid4(): EndpointState(EndpointMode.WAKES),
             uuid4(): EndpointState(EndpointMode.OPERATOR_ZERO), uuid4(): full}  # fmt: skip
    fields = service_discovery.modes_fields(modes, generation=7)
    assert service_discovery.modes_from_fields(fields) == {str(i): s for i, s in modes.items()}
    assert service_discovery.generation_of(fields[service_discovery.GENERATION_FIELD]) == 7


@pytest.mark.parametrize("spec", [feeds.READINESS_CHANGES, feeds.TRAFFIC_SET_CHANGES, feeds.WAKES])
def test_feed_entries_round_trip(spec: feeds.FeedSpec) -> None:
    ids = [str(uuid4()) for _ in range(3)]
    assert spec.ids_in(spec.entry(ids)) == ids
    assert spec.ids_in({}) == []


def test_window_fields_round_trip() -> None:
    assert windows.parse_field(windows.class_field("3", "5xx")) == windows.WindowField(3, "5xx")
    assert windows.parse_field(windows.within_field("3", "0.25")) == windows.WindowField(
        3, within_s=0.25
    )
    assert windows.parse_field(windows.sum_field("3")) is None  # not a count of requests
    assert windows.parse_field(windows.class_field("", "2xx")) is None  # no revision
    assert windows.code_class(None) == windows.ERROR
    assert windows.code_class(503) == "5xx"


def test_the_readmes_tables_name_every_field_and_label_the_codecs_write() -> None:
    text = README.read_text()
    named = set(re.findall(r"`([a-z_]+)`", text))
    missing = [name for name in labels.LABELS if name not in named]
    assert missing == [], f"labels the README's key table does not name: {missing}"
    fields = {windows.WITHIN, windows.SUM_MS, windows.ERROR, service_discovery.GENERATION_FIELD,
              *(spec.field for spec in (feeds.READINESS_CHANGES, feeds.WAKES)),
              load.busy_field("{endpoint}"), load.started_field("{endpoint}")}  # fmt: skip
    fields = {f.replace("|", "\\|") if "{" in f else f for f in fields}  # as a table cell
    assert sorted(f for f in fields if f not in text) == []


def test_load_fields_round_trip() -> None:
    endpoint = str(uuid4())
    second = {load.busy_field(endpoint): "2.5", load.started_field(endpoint): "7"}
    assert load.read_second(second, endpoint) == (2.5, 7.0)
    assert load.read_second({}, endpoint) == (0.0, 0.0)


def test_prompts_read_and_their_blocks_chain() -> None:
    assert prompts.prompt_of("/v1/completions", {"prompt": ["a", "b"]}) == "a\nb"
    chat = {"messages": [{"role": "system", "content": "x"},
                         {"role": "user", "content": [{"type": "text", "text": "y"}]}]}  # fmt: skip
    assert prompts.prompt_of("/v1/chat/completions", chat) == "system: x\nuser: y\n"
    assert prompts.prompt_of("/v1/embeddings", {"input": "z"}) is None
    assert prompts.prompt_of("/v1/completions", {"prompt": [1, 2]}) is None  # token ids
    one, two = prompts.block_hashes("ab" * 8 + "c", 4), prompts.block_hashes("ab" * 8 + "d", 4)
    assert len(one) == 4  # full blocks only
    assert one == two  # the last partial block is not one
    changed = prompts.block_hashes("X" + ("ab" * 8)[1:], 4)
    assert all(a != b for a, b in zip(one, changed, strict=True))  # a chain: all differ
