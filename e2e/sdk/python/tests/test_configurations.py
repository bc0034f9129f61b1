"""Automatic device management through IoTHubConfigurationManager: create,
get, list, update with an etag, delete, test_configuration_queries,
apply_configuration_on_edge_device, and a configuration's content reaching a
device that listens over MQTT (and leaving it when the configuration goes).
"""
import queue

import pytest
from azure.iot.hub import IoTHubConfigurationManager
from azure.iot.hub.models import (Configuration, ConfigurationContent, ConfigurationMetrics,
                                  ConfigurationQueriesTestInput, Twin)
from msrest.exceptions import HttpOperationError

from conftest import CONNECTION_STRING, poll_until, unique_id


@pytest.fixture
def configs():
    """A configuration manager; configurations made through `made` are deleted after the test."""
    manager = IoTHubConfigurationManager.from_connection_string(CONNECTION_STRING)
    made = []
    yield manager, made
    for config_id in made:
        try:
            manager.delete_configuration(config_id)
        except Exception:  # cleanup only
            pass


def error_code(exc):
    return exc.response.headers.get("iothub-errorcode")


def test_configuration_lifecycle(configs):
    manager, made = configs
    config_id = unique_id("py-cfg")
    made.append(config_id)
    config = Configuration(
        id=config_id, schema_version="1.0", labels={"owner": "py-e2e"}, priority=3,
        content=ConfigurationContent(device_content={"properties.desired.telemetryInterval": 30}),
        target_condition="tags.building='43'",
        metrics=ConfigurationMetrics(queries={"slow": "SELECT deviceId FROM devices WHERE properties.reported.interval > 60"}),
    )
    created = manager.create_configuration(config)
    assert created.id == config_id
    assert created.etag
    assert created.content.device_content == {"properties.desired.telemetryInterval": 30}
    assert created.system_metrics.queries["targetedCount"] == "select deviceId from devices where tags.building='43'"
    assert created.created_time_utc is not None

    got = manager.get_configuration(config_id)
    assert got.labels == {"owner": "py-e2e"}
    assert got.metrics.queries == {"slow": "SELECT deviceId FROM devices WHERE properties.reported.interval > 60"}
    assert any(c.id == config_id for c in manager.get_configurations())

    got.priority = 8
    updated = manager.update_configuration(got, got.etag)
    assert updated.priority == 8
    assert updated.etag != got.etag

    with pytest.raises(HttpOperationError) as stale:
        manager.update_configuration(got, got.etag)
    assert stale.value.response.status_code == 412
    assert error_code(stale.value) == "PreconditionFailed"

    with pytest.raises(HttpOperationError) as dup:
        manager.create_configuration(config)
    assert dup.value.response.status_code == 409
    assert error_code(dup.value) == "ConfigurationAlreadyExists"

    manager.delete_configuration(config_id)
    with pytest.raises(HttpOperationError) as gone:
        manager.get_configuration(config_id)
    assert gone.value.response.status_code == 404
    assert error_code(gone.value) == "ConfigurationNotFound"


def test_configuration_queries_are_checked(configs):
    manager, _ = configs
    result = manager.test_configuration_queries(ConfigurationQueriesTestInput(
        target_condition="tags.x = ", custom_metric_queries={"ok": "SELECT deviceId FROM devices", "bad": "SELECT FROM"}))
    assert result.target_condition_error
    assert result.custom_metric_query_errors.get("bad")
    assert not result.custom_metric_query_errors.get("ok")

    ok = manager.test_configuration_queries(ConfigurationQueriesTestInput(target_condition="tags.x = 1"))
    assert not ok.target_condition_error


def test_configuration_content_reaches_the_device_and_leaves(configs, registry, make_device, connect_device):
    manager, made = configs
    device_id, key = make_device("py-cfg-dev")
    config_id = unique_id("py-cfg-fw")
    made.append(config_id)
    registry.update_twin(device_id, Twin(tags={"rollout": config_id}), "*")
    client = connect_device(device_id, key)
    patches = queue.Queue()
    client.on_twin_desired_properties_patch_received = patches.put

    manager.create_configuration(Configuration(
        id=config_id, priority=1, target_condition=f"tags.rollout='{config_id}'",
        content=ConfigurationContent(device_content={"properties.desired": {"mode": "eco", "level": 2}}),
    ))
    patch = patches.get(timeout=30)
    assert patch["mode"] == "eco" and patch["level"] == 2

    def applied():
        c = manager.get_configuration(config_id)
        return c if c.system_metrics.results.get("appliedCount") == 1 else None

    cfg = poll_until(applied, "appliedCount 1", timeout=30)
    assert cfg.system_metrics.results["targetedCount"] == 1

    manager.delete_configuration(config_id)
    removal = patches.get(timeout=30)
    assert removal.get("mode", "absent") is None and removal.get("level", "absent") is None
    desired = registry.get_twin(device_id).properties.desired
    assert "mode" not in desired and "level" not in desired


def test_apply_configuration_on_edge_device(configs, registry, make_device):
    manager, _ = configs
    device_id, _ = make_device("py-cfg-edge")
    registry.create_module_with_sas(device_id, "sensor", None, None, None)
    manager.apply_configuration_on_edge_device(device_id, ConfigurationContent(
        modules_content={"sensor": {"properties.desired.sampleRate": 5}}))
    assert registry.get_module_twin(device_id, "sensor").properties.desired["sampleRate"] == 5
