package emulator;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Date;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.microsoft.azure.sdk.iot.device.DeviceClient;
import com.microsoft.azure.sdk.iot.device.IotHubClientProtocol;
import com.microsoft.azure.sdk.iot.device.Message;
import com.microsoft.azure.sdk.iot.device.twin.DirectMethodResponse;
import com.microsoft.azure.sdk.iot.service.auth.IotHubServiceSasToken;
import com.microsoft.azure.sdk.iot.service.auth.IotHubConnectionString;
import com.microsoft.azure.sdk.iot.service.auth.IotHubConnectionStringBuilder;
import com.microsoft.azure.sdk.iot.service.exceptions.IotHubNotFoundException;
import com.microsoft.azure.sdk.iot.service.jobs.ScheduledJob;
import com.microsoft.azure.sdk.iot.service.jobs.ScheduledJobStatus;
import com.microsoft.azure.sdk.iot.service.jobs.ScheduledJobType;
import com.microsoft.azure.sdk.iot.service.jobs.ScheduledJobsClient;
import com.microsoft.azure.sdk.iot.service.jobs.DirectMethodsJobOptions;
import com.microsoft.azure.sdk.iot.service.methods.DirectMethodRequestOptions;
import com.microsoft.azure.sdk.iot.service.methods.DirectMethodsClient;
import com.microsoft.azure.sdk.iot.service.query.JobQueryResponse;
import com.microsoft.azure.sdk.iot.service.query.QueryClient;
import com.microsoft.azure.sdk.iot.service.query.TwinQueryResponse;
import com.microsoft.azure.sdk.iot.service.registry.Device;
import com.microsoft.azure.sdk.iot.service.registry.DeviceStatus;
import com.microsoft.azure.sdk.iot.service.registry.Module;
import com.microsoft.azure.sdk.iot.service.registry.RegistryClient;
import com.microsoft.azure.sdk.iot.service.twin.Twin;
import com.microsoft.azure.sdk.iot.service.twin.TwinClient;

/** The Java service SDK 2.1.9 and device SDK 2.5.0, unmodified, against the emulator. */
@Timeout(value = 90, unit = TimeUnit.SECONDS)
class ServiceAndDeviceTest {
    private final RegistryClient registry = new RegistryClient(Hub.SERVICE_CS);
    private final TwinClient twins = new TwinClient(Hub.SERVICE_CS);

    @Test
    void registryCreateGetUpdateDelete() throws Exception {
        String id = Hub.uniqueId("reg");
        Device d = Hub.createDevice(registry, id);
        assertNotNull(d.getPrimaryKey(), "created device has a key");

        Device got = registry.getDevice(id);
        assertEquals(DeviceStatus.Enabled, got.getStatus());
        got.setStatus(DeviceStatus.Disabled);
        Device updated = registry.updateDevice(got);
        assertEquals(DeviceStatus.Disabled, updated.getStatus());

        Module m = registry.addModule(new Module(id, "m1"));
        assertEquals("m1", m.getId());
        assertEquals(1, registry.getModulesOnDevice(id).size());

        registry.removeDevice(id);
        assertThrows(IotHubNotFoundException.class, () -> registry.getDevice(id));
    }

    @Test
    void twinGetPatchReplaceAndDesiredCallback() throws Exception {
        Device d = Hub.createDevice(registry, Hub.uniqueId("twin"));
        DeviceClient client = Hub.openDevice(d, IotHubClientProtocol.MQTT);
        try {
            BlockingQueue<com.microsoft.azure.sdk.iot.device.twin.Twin> desired = new ArrayBlockingQueue<>(16);
            client.subscribeToDesiredProperties((twin, ctx) -> desired.offer(twin), null);

            Twin twin = twins.get(d.getDeviceId());
            assertEquals(d.getDeviceId(), twin.getDeviceId());
            // TwinClient.patch is POST with X-HTTP-Method-Override: PATCH.
            twin.getDesiredProperties().put("interval", 60);
            twin.getTags().put("building", 43);
            Twin patched = twins.patch(twin);
            assertEquals(60.0, ((Number) patched.getDesiredProperties().get("interval")).doubleValue());
            assertEquals(43.0, ((Number) patched.getTags().get("building")).doubleValue());

            com.microsoft.azure.sdk.iot.device.twin.Twin update = desired.poll(30, TimeUnit.SECONDS);
            assertNotNull(update, "desired-properties callback");
            assertEquals(60.0, ((Number) update.getDesiredProperties().get("interval")).doubleValue());

            // The device reports; the service sees it.
            com.microsoft.azure.sdk.iot.device.twin.TwinCollection reported = new com.microsoft.azure.sdk.iot.device.twin.TwinCollection();
            reported.put("fw", "1.2");
            Hub.reportProperties(client, reported);
            assertEquals("1.2", twins.get(d.getDeviceId()).getReportedProperties().get("fw"));

            // replace drops what the new document lacks.
            Twin replacement = twins.get(d.getDeviceId());
            replacement.getDesiredProperties().clear();
            replacement.getDesiredProperties().put("mode", "eco");
            replacement.getTags().clear();
            Twin replaced = twins.replace(replacement);
            assertEquals("eco", replaced.getDesiredProperties().get("mode"));
            assertFalse(replaced.getDesiredProperties().containsKey("interval"));
        } finally {
            client.close();
            registry.removeDevice(d.getDeviceId());
        }
    }

    @Test
    void directMethodsOverMqttAndWebSockets() throws Exception {
        for (IotHubClientProtocol protocol : new IotHubClientProtocol[] {IotHubClientProtocol.MQTT, IotHubClientProtocol.MQTT_WS}) {
            Device d = Hub.createDevice(registry, Hub.uniqueId("meth"));
            DeviceClient client = Hub.openDevice(d, protocol);
            try {
                client.subscribeToMethods((name, payload, ctx) ->
                        new DirectMethodResponse(200, Map.of("method", name, "echo", payload.getPayloadAsJsonString())), null);
                DirectMethodsClient methods = new DirectMethodsClient(Hub.SERVICE_CS);
                com.microsoft.azure.sdk.iot.service.methods.DirectMethodResponse r = methods.invoke(d.getDeviceId(), "reboot",
                        DirectMethodRequestOptions.builder().payload(Map.of("delay", 5)).methodResponseTimeoutSeconds(10).build());
                assertEquals(200, r.getStatus(), protocol + " status");
                JsonObject body = r.getPayloadAsJsonElement().getAsJsonObject();
                assertEquals("reboot", body.get("method").getAsString(), protocol + " payload");
            } finally {
                client.close();
                registry.removeDevice(d.getDeviceId());
            }
        }
    }

    @Test
    void telemetryOverMqttAndWebSockets() throws Exception {
        for (IotHubClientProtocol protocol : new IotHubClientProtocol[] {IotHubClientProtocol.MQTT, IotHubClientProtocol.MQTT_WS}) {
            Device d = Hub.createDevice(registry, Hub.uniqueId("tel"));
            DeviceClient client = Hub.openDevice(d, protocol);
            try {
                Message msg = new Message("{\"temp\":21.5}");
                msg.setMessageId("java-mid-1");
                msg.setProperty("level", "warn");
                client.sendEvent(msg);
                // The Event Hub endpoint is AMQP (not served yet): read the
                // message back from the emulator-only /_emulator/messages.
                JsonArray[] got = new JsonArray[1];
                Hub.await("the message in /_emulator/messages", 30, () -> {
                    got[0] = emulatorGet("/_emulator/messages?deviceId=" + URLEncoder.encode(d.getDeviceId(), StandardCharsets.UTF_8));
                    return got[0].size() > 0;
                });
                JsonObject m = got[0].get(0).getAsJsonObject();
                assertEquals("{\"temp\":21.5}", m.get("body").getAsString(), protocol + " body");
                assertEquals("warn", m.getAsJsonObject("properties").get("level").getAsString(), protocol + " property");
                assertEquals("java-mid-1", m.getAsJsonObject("systemProperties").get("message-id").getAsString(), protocol + " message id");
            } finally {
                client.close();
                registry.removeDevice(d.getDeviceId());
            }
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

    @Test
    void queryTwins() throws Exception {
        String tag = Hub.uniqueId("q");
        List<String> ids = new ArrayList<>();
        try {
            for (int i = 0; i < 3; i++) {
                Device d = Hub.createDevice(registry, tag + "-" + i);
                ids.add(d.getDeviceId());
                Twin t = twins.get(d.getDeviceId());
                t.getTags().put("suite", tag);
                t.getTags().put("n", i);
                twins.patch(t);
            }
            QueryClient query = new QueryClient(Hub.SERVICE_CS);
            TwinQueryResponse r = query.queryTwins("SELECT * FROM devices WHERE tags.suite = '" + tag + "' AND tags.n >= 1");
            List<String> found = new ArrayList<>();
            while (r.hasNext()) {
                found.add(r.next().getDeviceId());
            }
            assertEquals(2, found.size(), "devices with n >= 1: " + found);
            assertFalse(found.contains(tag + "-0"));
        } finally {
            for (String id : ids) {
                registry.removeDevice(id);
            }
        }
    }

    @Test
    void scheduledTwinAndMethodJobs() throws Exception {
        Device d = Hub.createDevice(registry, Hub.uniqueId("job"));
        DeviceClient client = Hub.openDevice(d, IotHubClientProtocol.MQTT);
        try {
            client.subscribeToMethods((name, payload, ctx) -> new DirectMethodResponse(200, Map.of("pong", true)), null);
            ScheduledJobsClient jobs = new ScheduledJobsClient(Hub.SERVICE_CS);
            String condition = "deviceId = '" + d.getDeviceId() + "'";

            Twin patch = new Twin(d.getDeviceId());
            patch.setETag("*");
            patch.getDesiredProperties().put("floor", 3);
            String twinJobId = Hub.uniqueId("twinjob");
            ScheduledJob created = jobs.scheduleUpdateTwin(twinJobId, condition, patch, new Date(), 60);
            assertEquals(twinJobId, created.getJobId());

            String methodJobId = Hub.uniqueId("methodjob");
            jobs.scheduleDirectMethod(methodJobId, condition, "ping", new Date(),
                    DirectMethodsJobOptions.builder().payload(Map.of()).methodResponseTimeoutSeconds(10).build());

            for (String id : new String[] {twinJobId, methodJobId}) {
                Hub.await("job " + id + " to complete", 60, () -> {
                    try {
                        return jobs.get(id).getJobStatus() == ScheduledJobStatus.completed;
                    } catch (Exception e) {
                        throw new AssertionError(e);
                    }
                });
            }
            ScheduledJob twinJob = jobs.get(twinJobId);
            assertEquals(1, twinJob.getJobStatistics().getSucceededCount());
            assertEquals(d.getDeviceId(), twinJob.getUpdateTwin().getDeviceId(), "updateTwin.deviceId reads back");
            assertEquals(3.0, ((Number) twins.get(d.getDeviceId()).getDesiredProperties().get("floor")).doubleValue());

            JobQueryResponse listed = jobs.query(ScheduledJobType.scheduleDeviceMethod, ScheduledJobStatus.completed);
            boolean found = false;
            while (listed.hasNext()) {
                found |= methodJobId.equals(listed.next().getJobId());
            }
            assertTrue(found, "the method job in the completed method jobs");
        } finally {
            client.close();
            registry.removeDevice(d.getDeviceId());
        }
    }
}
