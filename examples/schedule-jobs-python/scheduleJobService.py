# Microsoft's "Schedule and broadcast jobs (Python)" tutorial, service side,
# on azure-iot-hub 2.x (IoTHubJobManager). The only changes from a cloud run:
# the connection string and device id come from IOTHUB_CONNECTION_STRING and
# DEVICE_ID, and the emulator's CA is trusted through REQUESTS_CA_BUNDLE (an
# environment variable; nothing in this file). Where the tutorial polls
# forever, this version stops once both jobs have finished (or after
# MAX_POLLS) and exits non-zero unless both completed.
import os
import sys
import datetime
import time
import threading
import uuid
import msrest

from azure.iot.hub import IoTHubJobManager, IoTHubRegistryManager
from azure.iot.hub.models import JobProperties, JobRequest, Twin, TwinProperties, CloudToDeviceMethod

CONNECTION_STRING = os.getenv("IOTHUB_CONNECTION_STRING", "{IoTHubConnectionString}")
DEVICE_ID = os.getenv("DEVICE_ID", "{deviceId}")

METHOD_NAME = "lockDoor"
METHOD_PAYLOAD = "{\"lockTime\":\"10m\"}"
UPDATE_PATCH = {"building":43,"floor":3}
TIMEOUT = 60
WAIT_COUNT = 5
MAX_POLLS = 24  # 24 polls WAIT_COUNT seconds apart: two minutes
FINISHED = ("completed", "failed", "cancelled")

# Create IoTHubJobManager
iothub_job_manager = IoTHubJobManager.from_connection_string(CONNECTION_STRING)


def device_method_job(job_id, device_id, execution_time):
    print ( "" )
    print ( "Scheduling job: " + str(job_id) )

    job_request = JobRequest()
    job_request.job_id = job_id
    job_request.type = "scheduleDeviceMethod"
    job_request.start_time = datetime.datetime.utcnow().isoformat()
    job_request.cloud_to_device_method = CloudToDeviceMethod(method_name=METHOD_NAME, payload=METHOD_PAYLOAD)
    job_request.max_execution_time_in_seconds = execution_time
    job_request.query_condition = "DeviceId in ['{}']".format(device_id)

    new_job_response = iothub_job_manager.create_scheduled_job(job_id, job_request)


def device_twin_job(job_id, device_id, execution_time):
    print ( "" )
    print ( "Scheduling job " + str(job_id) )

    job_request = JobRequest()
    job_request.job_id = job_id
    job_request.type = "scheduleUpdateTwin"
    job_request.start_time = datetime.datetime.utcnow().isoformat()
    job_request.update_twin = Twin(etag="*", properties=TwinProperties(desired=UPDATE_PATCH))
    job_request.max_execution_time_in_seconds = execution_time
    job_request.query_condition = "DeviceId in ['{}']".format(device_id)

    new_job_response = iothub_job_manager.create_scheduled_job(job_id, job_request)


def iothub_jobs_sample_run():
    try:
        method_job_id = uuid.uuid4()
        device_method_job(method_job_id, DEVICE_ID, TIMEOUT)

        print ( "" )
        print ( "Direct method called with Job Id: " + str(method_job_id) )

        twin_job_id = uuid.uuid4()
        device_twin_job(twin_job_id, DEVICE_ID, TIMEOUT)

        print ( "" )
        print ( "Device twin called with Job Id: " + str(twin_job_id) )

        for _ in range(MAX_POLLS):
            print ( "" )

            method_job_status = iothub_job_manager.get_scheduled_job(method_job_id)
            print ( "...job " + str(method_job_id) + " " + method_job_status.status )

            twin_job_status = iothub_job_manager.get_scheduled_job(twin_job_id)
            print ( "...job " + str(twin_job_id) + " " + twin_job_status.status )

            if method_job_status.status in FINISHED and twin_job_status.status in FINISHED:
                break

            print ( "Job status posted, press Ctrl-C to exit" )
            time.sleep(WAIT_COUNT)

        ok = True
        for job in (method_job_status, twin_job_status):
            stats = job.device_job_statistics
            print ( "" )
            print ( "Job " + str(job.job_id) + " (" + str(job.type) + "): " + str(job.status) )
            if stats is not None:
                print ( "    devices: {}, succeeded: {}, failed: {}".format(
                    stats.device_count, stats.succeeded_count, stats.failed_count) )
            if job.status != "completed":
                ok = False
        return 0 if ok else 1

    except msrest.exceptions.HttpOperationError as ex:
        print ( "" )
        print ( "Http error {}".format(ex.response.text) )
        return 1
    except Exception as ex:
        print ( "" )
        print ( "Unexpected error {}".format(ex) )
        return 1
    except KeyboardInterrupt:
        print ( "" )
        print ( "IoTHubService sample stopped" )
        return 130


if __name__ == '__main__':
    print ( "Starting the IoT Hub jobs Python sample..." )
    print ( "    Connection string = {0}".format(CONNECTION_STRING) )
    print ( "    Device ID         = {0}".format(DEVICE_ID) )

    sys.exit(iothub_jobs_sample_run())
