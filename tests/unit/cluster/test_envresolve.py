"""Container environment resolution (``kubetune.cluster.envresolve``, ``downward``).

Covers: ``$(VAR)`` expansion rules; env order and precedence (envFrom, then env, later wins);
ConfigMap/Secret key references incl. optional and missing ones with kubelet-like errors;
envFrom prefixes; fieldRef paths (name, namespace, uid, labels, annotations, podIP, nodeName);
resourceFieldRef with divisors and node-allocatable fallback; quantities; the downwardAPI map
format; which objects a container needs fetched.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from kubetune.cluster.downward import FieldRefError, field_value, format_map, parse_quantity
from kubetune.cluster.envresolve import (
    EnvError,
    EnvSources,
    expand,
    referenced_objects,
    resolve_container_env,
)

POD: dict[str, Any] = {
    "metadata": {
        "name": "p",
        "namespace": "ns",
        "uid": "u-1",
        "labels": {"app": "a", "tier": "t"},
        "annotations": {"note": 'say "hi"'},
    },
    "spec": {
        "nodeName": "node-1",
        "containers": [
            {"name": "c", "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}}},
            {"name": "bare"},
        ],
    },
}
SOURCES = EnvSources(
    config_maps={"cm": {"A": "1", "B": "2"}, "gone": None},
    secrets={"sec": {"TOKEN": "t0k"}},
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(X)", "x"),
        ("a-$(X)-$(Y)", "a-x-y"),
        ("$$(X)", "$(X)"),
        ("$(UNSET)", "$(UNSET)"),
        ("$(X", "$(X"),
        ("$X and ${X}", "$X and ${X}"),
        ("$$$(X)", "$x"),
    ],
)
def test_expand(text: str, expected: str) -> None:
    assert expand(text, {"X": "x", "Y": "y"}) == expected


def resolve(container: dict[str, Any]) -> dict[str, str]:
    return resolve_container_env(
        pod=POD,
        container={"name": "c", **container},
        sources=SOURCES,
        pod_ip="127.1.0.9",
        host_ip="127.0.0.1",
        node_allocatable={"memory": "1Gi", "cpu": "4"},
    )


def test_order_precedence_and_expansion() -> None:
    env = resolve(
        {
            "envFrom": [
                {"configMapRef": {"name": "cm"}, "prefix": "CM_"},
                {"secretRef": {"name": "sec"}},
            ],
            "env": [
                {"name": "CM_A", "value": "override"},
                {"name": "LATER", "value": "$(CM_A)/$(EARLY)"},
                {"name": "EARLY", "value": "e"},
                {"name": "REF", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "B"}}},
            ],
        }
    )
    assert env == {
        "CM_A": "override",
        "CM_B": "2",
        "TOKEN": "t0k",
        "LATER": "override/$(EARLY)",
        "EARLY": "e",
        "REF": "2",
    }


@pytest.mark.parametrize(
    ("value_from", "message"),
    [
        ({"configMapKeyRef": {"name": "missing", "key": "A"}}, 'configmap "missing" not found'),
        ({"configMapKeyRef": {"name": "cm", "key": "Z"}}, 'find key Z in configmap "cm"'),
        ({"secretKeyRef": {"name": "nope", "key": "A"}}, 'secret "nope" not found'),
        ({"fieldRef": {"fieldPath": "status.phase"}}, "unsupported fieldRef.fieldPath"),
        ({"resourceFieldRef": {"resource": "limits.gpu"}}, "unsupported resourceFieldRef"),
    ],
)
def test_errors(value_from: dict[str, Any], message: str) -> None:
    with pytest.raises(EnvError, match=message):
        resolve({"env": [{"name": "V", "valueFrom": value_from}]})


def test_optional_references_are_skipped() -> None:
    env = resolve(
        {
            "envFrom": [{"configMapRef": {"name": "gone", "optional": True}}],
            "env": [
                {
                    "name": "V",
                    "valueFrom": {"secretKeyRef": {"name": "sec", "key": "X", "optional": True}},
                }
            ],
        }
    )
    assert env == {}
    with pytest.raises(EnvError, match='configmap "gone" not found'):
        resolve({"envFrom": [{"configMapRef": {"name": "gone"}}]})


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("metadata.name", "p"),
        ("metadata.namespace", "ns"),
        ("metadata.uid", "u-1"),
        ("metadata.labels['app']", "a"),
        ("metadata.labels['absent']", ""),
        ("metadata.annotations['note']", 'say "hi"'),
        ("spec.nodeName", "node-1"),
        ("spec.serviceAccountName", "default"),
        ("status.podIP", "127.1.0.9"),
        ("status.hostIP", "127.0.0.1"),
    ],
)
def test_field_refs(path: str, value: str) -> None:
    env = resolve({"env": [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": path}}}]})
    assert env == {"V": value}


@pytest.mark.parametrize(
    ("ref", "value"),
    [
        ({"resource": "limits.memory"}, str(64 * 2**20)),
        ({"resource": "limits.memory", "divisor": "1Mi"}, "64"),
        ({"resource": "limits.cpu"}, "1"),
        ({"resource": "limits.cpu", "divisor": "1m"}, "250"),
        ({"resource": "requests.cpu", "divisor": "1m"}, "250"),
        ({"resource": "limits.memory", "containerName": "bare", "divisor": "1Mi"}, "1024"),
        ({"resource": "requests.memory", "containerName": "bare"}, "0"),
    ],
)
def test_resource_field_refs(ref: dict[str, Any], value: str) -> None:
    env = resolve({"env": [{"name": "V", "valueFrom": {"resourceFieldRef": ref}}]})
    assert env == {"V": value}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1),
        ("500m", Decimal("0.5")),
        ("1Gi", 2**30),
        ("2k", 2000),
        ("1e3", 1000),
        (".5", Decimal("0.5")),
    ],
)
def test_quantities(text: str, value: Decimal | int) -> None:
    assert parse_quantity(text) == value


def test_bad_quantity_and_whole_maps() -> None:
    with pytest.raises(FieldRefError):
        parse_quantity("12 apples")
    assert format_map({"b": 'x"y', "a": "1"}) == 'a="1"\nb="x\\"y"'
    whole = field_value(POD, "metadata.labels", pod_ip="", host_ip="", whole_maps=True)
    assert whole == 'app="a"\ntier="t"'
    with pytest.raises(FieldRefError):
        field_value(POD, "metadata.labels", pod_ip="", host_ip="")


def test_referenced_objects() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "a"}}, {"secretRef": {"name": "s1"}}],
        "env": [
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "b", "key": "k"}}},
            {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "s2", "key": "k"}}},
            {"name": "Z", "value": "v"},
        ],
    }
    assert referenced_objects(container) == ({"a", "b"}, {"s1", "s2"})
