package emulator;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import com.microsoft.azure.sdk.iot.device.DeviceClient;
import com.microsoft.azure.sdk.iot.device.IotHubClientProtocol;
import com.microsoft.azure.sdk.iot.device.IotHubMessageResult;
import com.microsoft.azure.sdk.iot.service.exceptions.IotHubNotFoundException;
import com.microsoft.azure.sdk.iot.service.messaging.AcknowledgementType;
import com.microsoft.azure.sdk.iot.service.messaging.DeliveryAcknowledgement;
import com.microsoft.azure.sdk.iot.service.messaging.FeedbackRecord;
import com.microsoft.azure.sdk.iot.service.messaging.FeedbackStatusCode;
import com.microsoft.azure.sdk.iot.service.messaging.IotHubServiceClientProtocol;
import com.microsoft.azure.sdk.iot.service.messaging.Message;
import com.microsoft.azure.sdk.iot.service.messaging.MessageFeedbackProcessorClient;
import com.microsoft.azure.sdk.iot.service.messaging.MessagingClient;
import com.microsoft.azure.sdk.iot.service.registry.Device;
import com.microsoft.azure.sdk.iot.service.registry.RegistryClient;

/**
 * Cloud-to-device over AMQP with the Java service SDK 2.1.9: MessagingClient sends to a device on
 * MQTT (AMQPS 5671 and AMQP over WebSockets on 443), MessageFeedbackProcessorClient gets the
 * device's completion, and an unknown device gives IotHubNotFoundException.
 */
@Timeout(value = 90, unit = TimeUnit.SECONDS)
class C2DAmqpTest {
    private final RegistryClient registry = new RegistryClient(Hub.SERVICE_CS);

    @Test
    void messagingClientReachesAnMqttDeviceAndFeedbackFollows() throws Exception {
        sendAndGetFeedback(IotHubServiceClientProtocol.AMQPS);
    }

    @Test
    void messagingClientOverWebSockets() throws Exception {
        sendAndGetFeedback(IotHubServiceClientProtocol.AMQPS_WS);
    }

    private void sendAndGetFeedback(IotHubServiceClientProtocol protocol) throws Exception {
        Device d = Hub.createDevice(registry, Hub.uniqueId("c2d"));
        DeviceClient device = Hub.openDevice(d, IotHubClientProtocol.MQTT);
        MessagingClient messaging = new MessagingClient(Hub.SERVICE_CS, protocol);
        List<FeedbackRecord> feedback = new CopyOnWriteArrayList<>();
        MessageFeedbackProcessorClient processor = new MessageFeedbackProcessorClient(Hub.SERVICE_CS, protocol, batch -> {
            feedback.addAll(batch.getRecords());
            return AcknowledgementType.COMPLETE;
        });
        try {
            BlockingQueue<com.microsoft.azure.sdk.iot.device.Message> received = new ArrayBlockingQueue<>(10);
            device.setMessageCallback((message, context) -> {
                received.add(message);
                return IotHubMessageResult.COMPLETE;
            }, null);
            // A message sent before the device subscribes waits in its queue.
            messaging.open();
            processor.start();

            Message msg = new Message("{\"command\":\"reboot\"}");
            String messageId = Hub.uniqueId("mid");
            msg.setMessageId(messageId);
            msg.setCorrelationId("corr-1");
            msg.setDeliveryAcknowledgement(DeliveryAcknowledgement.Full);
            msg.setProperties(Map.of("level", "high"));
            messaging.send(d.getDeviceId(), msg);

            com.microsoft.azure.sdk.iot.device.Message got = received.poll(30, TimeUnit.SECONDS);
            assertNotNull(got, "the device received nothing");
            assertEquals("{\"command\":\"reboot\"}", new String(got.getBytes(), StandardCharsets.UTF_8));
            assertEquals(messageId, got.getMessageId());
            assertEquals("corr-1", got.getCorrelationId());
            assertEquals("high", got.getProperty("level"));

            Hub.await("feedback for " + messageId, 30,
                    () -> feedback.stream().anyMatch(r -> messageId.equals(r.getOriginalMessageId())));
            FeedbackRecord r = feedback.stream().filter(x -> messageId.equals(x.getOriginalMessageId())).findFirst().orElseThrow();
            assertEquals(FeedbackStatusCode.success, r.getStatusCode());
            assertEquals(d.getDeviceId(), r.getDeviceId());
            assertNotNull(r.getEnqueuedTimeUtc());
        } finally {
            processor.stop();
            messaging.close();
            device.close();
            registry.removeDevice(d.getDeviceId());
        }
    }

    @Test
    void sendingToAnUnknownDeviceThrowsNotFound() throws Exception {
        MessagingClient messaging = new MessagingClient(Hub.SERVICE_CS, IotHubServiceClientProtocol.AMQPS);
        try {
            messaging.open();
            assertThrows(IotHubNotFoundException.class,
                    () -> messaging.send(Hub.uniqueId("nobody"), new Message("lost")));
        } finally {
            messaging.close();
        }
    }
}
