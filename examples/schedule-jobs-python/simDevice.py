# Microsoft's "Schedule and broadcast jobs (Python)" tutorial, device side,
# on azure-iot-device 2.x. The only changes from a cloud run: the connection
# string comes from IOTHUB_DEVICE_CONNECTION_STRING, and when IOTHUB_CA_FILE is
# set (the emulator's CA) the client trusts it through server_verification_cert.
import os
import time
from azure.iot.device import IoTHubDeviceClient, MethodResponse

CONNECTION_STRING = os.getenv("IOTHUB_DEVICE_CONNECTION_STRING", "{deviceConnectionString}")
CA_FILE = os.getenv("IOTHUB_CA_FILE")  # emulator only; leave unset for a real hub


def iothub_client_init():
    # Instantiate the client
    if CA_FILE:
        with open(CA_FILE, encoding="utf-8") as f:
            client = IoTHubDeviceClient.create_from_connection_string(
                CONNECTION_STRING, server_verification_cert=f.read())
    else:
        client = IoTHubDeviceClient.create_from_connection_string(CONNECTION_STRING)

    # Define behavior for responding to the lockDoor direct method
    def method_request_handler(method_request):
        if method_request.name == "lockDoor":
            print("Received method [%s]" % (method_request.name))
            print("    payload: %s" % (method_request.payload,))
            print("Locking Door!")

            resp_status = 200
            resp_payload = {"Response": "lockDoor called successfully"}
            method_response = MethodResponse.create_from_method_request(
                method_request=method_request,
                status=resp_status,
                payload=resp_payload
            )
            client.send_method_response(method_response)

    # Define behavior for receiving a twin patch
    def twin_patch_handler(twin_patch):
        print("")
        print("Twin desired properties patch received:")
        print(twin_patch)

    # Set the handlers on the client
    try:
        print("Beginning to listen for 'lockDoor' direct method invocations...")
        client.on_method_request_received = method_request_handler
        print("Beginning to listen for updates to the Twin desired properties...")
        client.on_twin_desired_properties_patch_received = twin_patch_handler
    except:
        # If something goes wrong while setting the handlers, clean up the client
        client.shutdown()
        raise

    return client


def main():
    print("Starting the IoT Hub Python jobs sample...")
    client = iothub_client_init()

    print("IoTHubDeviceClient waiting for commands, press Ctrl-C to exit")
    try:
        while True:
            time.sleep(100)
    except KeyboardInterrupt:
        print("IoTHubDeviceClient sample stopped!")
    finally:
        # Graceful exit
        print("Shutting down IoT Hub Client")
        client.shutdown()


if __name__ == '__main__':
    main()
