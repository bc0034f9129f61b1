package emulator;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.Map;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.api.Timeout;

import com.google.gson.JsonArray;
import com.google.gson.JsonParser;
import com.microsoft.azure.sdk.iot.device.DeviceClient;
import com.microsoft.azure.sdk.iot.device.IotHubClientProtocol;
import com.microsoft.azure.sdk.iot.device.IotHubMessageResult;
import com.microsoft.azure.sdk.iot.device.twin.DirectMethodResponse;
import com.microsoft.azure.sdk.iot.device.twin.TwinCollection;
import com.microsoft.azure.sdk.iot.service.auth.IotHubConnectionString;
import com.microsoft.azure.sdk.iot.service.auth.IotHubConnectionStringBuilder;
import com.microsoft.azure.sdk.iot.service.auth.IotHubServiceSasToken;
import com.microsoft.azure.sdk.iot.service.messaging.IotHubServiceClientProtocol;
import com.microsoft.azure.sdk.iot.service.messaging.MessagingClient;
import com.microsoft.azure.sdk.iot.service.methods.DirectMethodRequestOptions;
import com.microsoft.azure.sdk.iot.service.methods.DirectMethodsClient;
import com.microsoft.azure.sdk.iot.service.registry.Device;
import com.microsoft.azure.sdk.iot.service.registry.RegistryClient;
import com.microsoft.azure.sdk.iot.service.twin.Twin;
import com.microsoft.azure.sdk.iot.service.twin.TwinClient;

/**
 * The Java device client 2.5.0 over AMQPS (5671) and AMQPS_WS (443): telemetry, a C2D message
 * completed, the twin (get, reported patch, desired notification) and a direct method.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class AmqpDeviceTest {
    private final RegistryClient registry = new RegistryClient(Hub.SERVICE_CS);

    @ParameterizedTest
    @EnumSource(value = IotHubClientProtocol.class, names = {"AMQPS", "AMQPS_WS"})
    void deviceFlowsOverAmqp(IotHubClientProtocol protocol) throws Exception {
        Device d = Hub.createDevice(registry, Hub.uniqueId("amqp"));
        DeviceClient client = Hub.openDevice(d, protocol);
        try {
            // Telemetry: sendEvent returns once the hub settled it, i.e. stored it.
            com.microsoft.azure.sdk.iot.device.Message event = new com.microsoft.azure.sdk.iot.device.Message("{\"temp\":21.5}");
            event.setMessageId("java-amqp-mid");
            event.setProperty("level", "warn");
            client.sendEvent(event);
            Hub.await("the event in /_emulator/messages", 30,
                    () -> emulatorGet("/_emulator/messages?deviceId=" + d.getDeviceId()).size() == 1);

            // C2D, completed by the callback.
            BlockingQueue<com.microsoft.azure.sdk.iot.device.Message> received = new ArrayBlockingQueue<>(10);
            client.setMessageCallback((message, context) -> {
                received.add(message);
                return IotHubMessageResult.COMPLETE;
            }, null);
            MessagingClient messaging = new MessagingClient(Hub.SERVICE_CS, IotHubServiceClientProtocol.AMQPS);
            messaging.open();
            try {
                com.microsoft.azure.sdk.iot.service.messaging.Message c2d =
                        new com.microsoft.azure.sdk.iot.service.messaging.Message("{\"command\":\"open\"}");
                c2d.setMessageId("java-amqp-c2d");
                c2d.setProperties(Map.of("zone", "b2"));
                messaging.send(d.getDeviceId(), c2d);
            } finally {
                messaging.close();
            }
            com.microsoft.azure.sdk.iot.device.Message got = received.poll(30, TimeUnit.SECONDS);
            assertNotNull(got, protocol + ": no C2D message");
            assertEquals("java-amqp-c2d", got.getMessageId());
            assertEquals("b2", got.getProperty("zone"));
            Hub.await("the C2D queue to drain", 30,
                    () -> emulatorGet("/_emulator/devices/" + d.getDeviceId() + "/messages/devicebound").size() == 0);

            // Twin.
            BlockingQueue<Object> desired = new ArrayBlockingQueue<>(10);
            client.subscribeToDesiredProperties((twin, context) -> {
                Object v = twin.getDesiredProperties().get("rate");
                if (v != null) {
                    desired.add(v);
                }
            }, null);
            com.microsoft.azure.sdk.iot.device.twin.Twin deviceTwin = Hub.getTwin(client);
            assertNotNull(deviceTwin, protocol + ": getTwin");
            TwinCollection reported = deviceTwin.getReportedProperties();
            reported.put("fw", "1.2");
            Hub.reportProperties(client, reported);
            TwinClient twins = new TwinClient(Hub.SERVICE_CS);
            Twin svc = twins.get(d.getDeviceId());
            assertEquals("1.2", svc.getReportedProperties().get("fw"), protocol + ": reported");
            svc.getDesiredProperties().put("rate", 5);
            twins.replace(svc);
            Object rate = desired.poll(30, TimeUnit.SECONDS);
            assertNotNull(rate, protocol + ": no desired notification");
            assertEquals(5.0, ((Number) rate).doubleValue());

            // Direct method.
            client.subscribeToMethods((name, payload, ctx) -> new DirectMethodResponse(201, Map.of("method", name)), null);
            com.microsoft.azure.sdk.iot.service.methods.DirectMethodResponse r = new DirectMethodsClient(Hub.SERVICE_CS).invoke(
                    d.getDeviceId(), "reboot", DirectMethodRequestOptions.builder().payload(Map.of("delay", 5)).methodResponseTimeoutSeconds(10).build());
            assertEquals(201, r.getStatus(), protocol + ": method status");
            assertEquals("reboot", r.getPayloadAsJsonElement().getAsJsonObject().get("method").getAsString());
        } finally {
            client.close();
            registry.removeDevice(d.getDeviceId());
        }
    }

    /** GET on an emulator-only endpoint with an iothubowner token. */
    private static JsonArray emulatorGet(String path) {
        try {
            IotHubConnectionString cs = IotHubConnectionStringBuilder.createIotHubConnectionString(Hub.SERVICE_CS);
            String token = new IotHubServiceSasToken(cs).toString();
            HttpRequest req = HttpRequest.newBuilder(URI.create("https://" + Hub.HOSTNAME + path)).header("Authorization", token).GET().build();
            HttpResponse<String> resp = HttpClient.newHttpClient().send(req, HttpResponse.BodyHandlers.ofString());
            assertEquals(200, resp.statusCode(), "GET " + path + ": " + resp.body());
            return JsonParser.parseString(resp.body()).getAsJsonArray();
        } catch (Exception e) {
            throw new AssertionError(e);
        }
    }
}
