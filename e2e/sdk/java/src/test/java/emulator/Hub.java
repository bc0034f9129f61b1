package emulator;

import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

import com.microsoft.azure.sdk.iot.device.ClientOptions;
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
}
