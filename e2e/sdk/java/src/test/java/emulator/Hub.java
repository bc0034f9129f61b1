package emulator;

import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

import com.microsoft.azure.sdk.iot.device.ClientOptions;
import com.microsoft.azure.sdk.iot.device.IotHubStatusCode;
import com.microsoft.azure.sdk.iot.device.Message;
import com.microsoft.azure.sdk.iot.device.exceptions.IotHubClientException;
import com.microsoft.azure.sdk.iot.device.transport.IotHubTransportMessage;
import com.microsoft.azure.sdk.iot.device.twin.GetTwinCorrelatingMessageCallback;
import com.microsoft.azure.sdk.iot.device.twin.ReportedPropertiesUpdateCorrelatingMessageCallback;
import com.microsoft.azure.sdk.iot.device.twin.ReportedPropertiesUpdateResponse;
import com.microsoft.azure.sdk.iot.device.twin.Twin;
import com.microsoft.azure.sdk.iot.device.twin.TwinCollection;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.CompletableFuture;
import com.microsoft.azure.sdk.iot.device.DeviceClient;
import com.microsoft.azure.sdk.iot.device.IotHubClientProtocol;
import com.microsoft.azure.sdk.iot.service.registry.Device;
import com.microsoft.azure.sdk.iot.service.registry.RegistryClient;

/**
 * What the tests share: the service connection string (its HostName rewritten
 * to a dotted name, which the Java SDKs require), device connection strings,
 * and polling. run.sh exports IOTHUB_CONNECTION_STRING and JAVA_IOTHUB_HOSTNAME
 * and starts the JVM with a trust store holding the emulator's CA and a hosts
 * file that resolves that name (-Djdk.net.hosts.file).
 */
final class Hub {
    static final String HOSTNAME = require("JAVA_IOTHUB_HOSTNAME");
    static final String SERVICE_CS = require("IOTHUB_CONNECTION_STRING")
            .replaceFirst("HostName=[^;]*", "HostName=" + HOSTNAME);

    private Hub() {
    }

    private static String require(String name) {
        String v = System.getenv(name);
        if (v == null || v.isEmpty()) {
            throw new IllegalStateException(name + " must be set (e2e/sdk/run.sh java sets it)");
        }
        return v;
    }

    static String uniqueId(String prefix) {
        return "java-" + prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
    }

    static String deviceConnectionString(Device d) {
        return "HostName=" + HOSTNAME + ";DeviceId=" + d.getDeviceId() + ";SharedAccessKey=" + d.getPrimaryKey();
    }

    /** Registers a SAS device. */
    static Device createDevice(RegistryClient registry, String id) throws Exception {
        return registry.addDevice(new Device(id));
    }

    /** Opens the unmodified device client over MQTT (or MQTT over WebSockets on 443). */
    static DeviceClient openDevice(Device d, IotHubClientProtocol protocol) throws Exception {
        // The JVM's default SSLContext trusts the emulator's CA (run.sh's trust store).
        DeviceClient c = new DeviceClient(deviceConnectionString(d), protocol,
                ClientOptions.builder().sslContext(javax.net.ssl.SSLContext.getDefault()).build());
        c.open(false);
        return c;
    }

    /** Polls cond every 100 ms until it holds or seconds pass. */
    static void await(String what, int seconds, BooleanSupplier cond) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        while (!cond.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out waiting for " + what);
            }
            Thread.sleep(100);
        }
    }

    // The device SDK (2.5.0, and its main branch) loses twin responses now
    // and then: IotHubTransport.onMessageReceived queues a response for the
    // receive thread before it looks up the request's correlation callback,
    // and the receive thread removes that callback once it has handled the
    // response, so onResponseReceived (what the synchronous getTwin and
    // updateReportedProperties wait for) is sometimes never called and they
    // time out after 60 s. onResponseAcknowledged is always called, by the
    // receive thread before the removal; these wait for either.

    /** updateReportedProperties, immune to the SDK's lost-response race; returns the new version. */
    static int reportProperties(DeviceClient client, TwinCollection reported) throws Exception {
        CompletableFuture<Message> done = new CompletableFuture<>();
        client.updateReportedPropertiesAsync(reported, new ReportedPropertiesUpdateCorrelatingMessageCallback() {
            @Override public void onRequestQueued(Message m, Object c) { }
            @Override public void onRequestSent(Message m, Object c) { }
            @Override public void onRequestAcknowledged(Message m, Object c, IotHubClientException e) {
                if (e != null) {
                    done.completeExceptionally(e);
                }
            }
            @Override public void onResponseReceived(Message m, Object c, IotHubStatusCode s, ReportedPropertiesUpdateResponse r, IotHubClientException e) {
                finish(done, m, e);
            }
            @Override public void onResponseAcknowledged(Message m, Object c) { finish(done, m, null); }
        }, null);
        return ((IotHubTransportMessage) done.get(60, TimeUnit.SECONDS)).getVersion();
    }

    /** getTwin, immune to the SDK's lost-response race. */
    static Twin getTwin(DeviceClient client) throws Exception {
        CompletableFuture<Message> done = new CompletableFuture<>();
        client.getTwinAsync(new GetTwinCorrelatingMessageCallback() {
            @Override public void onRequestQueued(Message m, Object c) { }
            @Override public void onRequestSent(Message m, Object c) { }
            @Override public void onRequestAcknowledged(Message m, Object c, IotHubClientException e) {
                if (e != null) {
                    done.completeExceptionally(e);
                }
            }
            @Override public void onResponseReceived(Twin t, Message m, Object c, IotHubStatusCode s, IotHubClientException e) {
                finish(done, m, e);
            }
            @Override public void onResponseAcknowledged(Message m, Object c) { finish(done, m, null); }
        }, null);
        Message m = done.get(60, TimeUnit.SECONDS);
        return Twin.createFromPropertiesJson(new String(m.getBytes(), StandardCharsets.UTF_8));
    }

    private static void finish(CompletableFuture<Message> done, Message m, IotHubClientException e) {
        if (e != null) {
            done.completeExceptionally(e);
            return;
        }
        int status = Integer.parseInt(((IotHubTransportMessage) m).getStatus());
        if (status >= 300) {
            done.completeExceptionally(new AssertionError("twin request answered with status " + status));
            return;
        }
        done.complete(m);
    }
}
