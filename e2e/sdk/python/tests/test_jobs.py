"""Scheduled jobs through IoTHubJobManager: create_scheduled_job and
get_scheduled_job. query_scheduled_jobs is left out on purpose: the SDK
deserializes the hub's array answer as an object and fails against the real
hub too (docs/sdk-notes.md).
"""
import datetime
import time

from azure.iot.device import MethodResponse
from azure.iot.hub.models import CloudToDeviceMethod, JobRequest, Twin, TwinProperties

from conftest import unique_id

TERMINAL = {"completed", "failed", "cancelled"}


def wait_for_job(job_manager, job_id, timeout=30):
    deadline = time.monotonic() + timeout
    job = None
    while time.monotonic() < deadline:
        job = job_manager.get_scheduled_job(job_id)
        if job.status in TERMINAL:
            return job
        time.sleep(0.2)  # poll interval
    raise AssertionError(f"job {job_id} did not finish within {timeout} s; last status {job and job.status}")


def test_scheduled_method_job_runs_on_the_device(registry, job_manager, make_device, connect_device):
    device_id, key = make_device("py-job-m")
    client = connect_device(device_id, key)
    calls = []

    def on_method(request):
        calls.append(request.payload)
        client.send_method_response(MethodResponse.create_from_method_request(request, 200, {"ok": True}))

    client.on_method_request_received = on_method

    job_id = unique_id("py-job")
    request = JobRequest(
        job_id=job_id, type="scheduleDeviceMethod",
        cloud_to_device_method=CloudToDeviceMethod(method_name="calibrate", payload={"level": 2},
                                                   response_timeout_in_seconds=10),
        query_condition=f"deviceId = '{device_id}'",
        start_time=datetime.datetime.now(datetime.timezone.utc),
        max_execution_time_in_seconds=300)
    created = job_manager.create_scheduled_job(job_id, request)
    assert created.job_id == job_id
    assert created.type == "scheduleDeviceMethod"

    done = wait_for_job(job_manager, job_id)
    assert done.status == "completed"
    assert calls == [{"level": 2}]
    assert done.device_job_statistics.succeeded_count == 1
    assert done.device_job_statistics.failed_count == 0


def test_scheduled_twin_job_patches_desired(registry, job_manager, make_device):
    device_id, _ = make_device("py-job-t")
    job_id = unique_id("py-job")
    request = JobRequest(
        job_id=job_id, type="scheduleUpdateTwin",
        update_twin=Twin(etag="*", properties=TwinProperties(desired={"fromPythonJob": 7})),
        query_condition=f"deviceId = '{device_id}'",
        start_time=datetime.datetime.now(datetime.timezone.utc),
        max_execution_time_in_seconds=300)
    job_manager.create_scheduled_job(job_id, request)
    done = wait_for_job(job_manager, job_id)
    assert done.status == "completed"
    assert done.type == "scheduleUpdateTwin"
    assert registry.get_twin(device_id).properties.desired["fromPythonJob"] == 7
