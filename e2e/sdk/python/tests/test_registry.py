"""Identity registry and twins through azure-iot-hub's IoTHubRegistryManager."""
import pytest
from azure.iot.hub.models import Twin, TwinProperties
from msrest.exceptions import HttpOperationError

from conftest import random_key, unique_id


def test_device_create_get_update_delete(registry):
    device_id = unique_id("py-reg")
    primary, secondary = random_key(), random_key()
    try:
        created = registry.create_device_with_sas(device_id, primary, secondary, "enabled")
        assert created.device_id == device_id
        assert created.status == "enabled"
        assert created.etag
        assert created.authentication.type == "sas"
        assert created.authentication.symmetric_key.primary_key == primary
        assert created.authentication.symmetric_key.secondary_key == secondary

        got = registry.get_device(device_id)
        assert got.device_id == device_id
        assert got.authentication.symmetric_key.primary_key == primary
        assert got.connection_state == "Disconnected"

        new_primary = random_key()
        updated = registry.update_device_with_sas(device_id, got.etag, new_primary, secondary, "disabled")
        assert updated.status == "disabled"
        assert updated.etag != got.etag
        again = registry.get_device(device_id)
        assert again.status == "disabled"
        assert again.authentication.symmetric_key.primary_key == new_primary

        listed = [d.device_id for d in registry.get_devices()]
        assert device_id in listed

        registry.delete_device(device_id)
        with pytest.raises(HttpOperationError) as info:
            registry.get_device(device_id)
        assert info.value.response.status_code == 404
    finally:
        try:
            registry.delete_device(device_id)
        except HttpOperationError:
            pass


def test_update_with_stale_etag_is_rejected(registry, make_device):
    device_id, primary = make_device("py-etag")
    stale = registry.get_device(device_id).etag
    registry.update_device_with_sas(device_id, stale, primary, random_key(), "enabled")
    with pytest.raises(HttpOperationError) as info:
        registry.update_device_with_sas(device_id, stale, primary, random_key(), "disabled")
    assert info.value.response.status_code == 412
    assert registry.get_device(device_id).status == "enabled"


def test_create_existing_device_conflicts(registry, make_device):
    device_id, primary = make_device("py-dup")
    with pytest.raises(HttpOperationError) as info:
        registry.create_device_with_sas(device_id, primary, random_key(), "enabled")
    assert info.value.response.status_code == 409


def test_get_unknown_device_is_404_device_not_found(registry):
    with pytest.raises(HttpOperationError) as info:
        registry.get_device(unique_id("py-nobody"))
    assert info.value.response.status_code == 404
    assert "DeviceNotFound" in info.value.response.text


def test_twin_get_and_update_with_etag(registry, make_device):
    device_id, _ = make_device("py-twin")
    twin = registry.get_twin(device_id)
    assert twin.device_id == device_id
    assert twin.etag
    assert twin.properties.desired["$version"] == 1

    patch = Twin(tags={"building": "43", "floor": 2},
                 properties=TwinProperties(desired={"telemetryInterval": 15, "limits": {"max": 80}}))
    updated = registry.update_twin(device_id, patch, twin.etag)
    assert updated.tags == {"building": "43", "floor": 2}
    assert updated.properties.desired["telemetryInterval"] == 15
    assert updated.properties.desired["limits"] == {"max": 80}
    assert updated.properties.desired["$version"] == 2
    assert updated.etag != twin.etag

    # Merge semantics: a second patch keeps what it does not name, and null deletes.
    updated2 = registry.update_twin(device_id, Twin(properties=TwinProperties(desired={"limits": None, "mode": "eco"})),
                                    updated.etag)
    assert updated2.properties.desired["telemetryInterval"] == 15
    assert "limits" not in updated2.properties.desired
    assert updated2.properties.desired["mode"] == "eco"

    # The stale etag is refused.
    with pytest.raises(HttpOperationError) as info:
        registry.update_twin(device_id, Twin(tags={"building": "x"}), twin.etag)
    assert info.value.response.status_code == 412
    assert registry.get_twin(device_id).tags["building"] == "43"


def test_registry_statistics_count_devices(registry, make_device):
    before = registry.get_device_registry_statistics()
    make_device("py-stat-on")
    make_device("py-stat-off", status="disabled")
    after = registry.get_device_registry_statistics()
    assert after.total_device_count == before.total_device_count + 2
    assert after.enabled_device_count == before.enabled_device_count + 1
    assert after.disabled_device_count == before.disabled_device_count + 1
