"""The kubelet API's request parsing and first chunk (pure parts of ``kubeletapi``)."""

from __future__ import annotations

import pytest

from kubetune.cluster.kubeletapi import BadRequestError, initial_chunk, parse_log_request

pytestmark = pytest.mark.unit


def test_parses_the_path_and_the_query_the_api_server_sends() -> None:
    request = parse_log_request(
        "/containerLogs/acme-ml/support-g1-x/trainer?follow=true&tailLines=20&limitBytes=500"
        "&timestamps=false"
    )
    assert (request.namespace, request.pod, request.container) == (
        "acme-ml",
        "support-g1-x",
        "trainer",
    )
    assert request.follow and not request.previous
    assert (request.tail_lines, request.limit_bytes) == (20, 500)


def test_container_is_optional_and_flags_default_off() -> None:
    request = parse_log_request("/containerLogs/ns/pod")
    assert request.container is None
    assert not request.follow and request.tail_lines is None


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("/stats/summary", "unsupported path"),
        ("/containerLogs/ns", "unsupported path"),
        ("/containerLogs/ns/pod/c?tailLines=ten", "tailLines must be an integer"),
        ("/containerLogs/ns/pod/c?limitBytes=-1", "limitBytes must not be negative"),
    ],
)
def test_bad_requests_say_what_is_wrong(target: str, message: str) -> None:
    with pytest.raises(BadRequestError, match=message):
        parse_log_request(target)


def test_tail_then_limit() -> None:
    data = b"a\nb\nc\n"
    assert initial_chunk(data, tail_lines=None, limit_bytes=None) == data
    assert initial_chunk(data, tail_lines=2, limit_bytes=None) == b"b\nc\n"
    assert initial_chunk(data, tail_lines=0, limit_bytes=None) == b""
    assert initial_chunk(data, tail_lines=2, limit_bytes=3) == b"b\nc"
