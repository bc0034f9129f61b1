package amqphub

import (
	"context"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/iothub-emulator/iothub-emulator/amqp"
	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/messaging"
	"github.com/iothub-emulator/iothub-emulator/wire"
)

// feedbackRecheck is how often an idle feedback link looks for batches
// whose lock lapsed elsewhere.
const feedbackRecheck = 5 * time.Second

// serveFeedback hands feedback batches to a receiver link, one at a time:
// accepted or rejected removes the batch from the queue, released or
// modified gives it back at once, and a batch left unsettled (the link or
// connection ended, or the receiver never settled within the lock) becomes
// available again when its lock lapses or at once when the link ends.
func (cs *connState) serveFeedback(l *amqp.Link) {
	c2d := cs.srv.deps.C2D
	for {
		added := c2d.FeedbackAdded()
		batch, err := c2d.NextFeedback(l.Conn().Context())
		if err != nil {
			cs.srv.log.Error("read C2D feedback", "error", err)
			l.Close(amqpError(err))
			return
		}
		if batch == nil {
			// New records signal; a lapsed lock on another receiver's batch
			// does not, so look again now and then.
			select {
			case <-added:
			case <-time.After(feedbackRecheck):
			case <-l.Done():
				return
			}
			continue
		}
		outcome, err := cs.sendFeedback(l, batch)
		switch outcome.(type) {
		case *amqp.Accepted, *amqp.Rejected:
			err = c2d.CompleteFeedback(context.Background(), batch.LockToken)
		default:
			err = c2d.AbandonFeedback(context.Background(), batch.LockToken)
		}
		if err != nil && !iothub.Is(err, iothub.DeviceMessageLockLost) {
			cs.srv.log.Error("settle C2D feedback", "error", err)
		}
		select {
		case <-l.Done():
			return
		default:
		}
	}
}

// sendFeedback sends one batch and waits for its outcome, at most as long as
// the batch stays locked; nil means no outcome.
func (cs *connState) sendFeedback(l *amqp.Link, b *messaging.FeedbackBatch) (amqp.Outcome, error) {
	ctx, cancel := context.WithTimeout(l.Conn().Context(), messaging.DefaultLockDuration)
	defer cancel()
	go func() {
		select {
		case <-l.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	return l.Send(ctx, &amqp.Message{
		Properties: &amqp.Properties{
			MessageID:   uuid.NewString(),
			ContentType: wire.FeedbackContentType,
			UserID:      []byte(hubName(cs.srv.cfg.Hostname)),
		},
		Data: [][]byte{wire.FeedbackBatch(b.Records)},
	})
}

// serveFileNotifications keeps a file-notification receiver attached; the
// emulator has no file upload yet, so nothing arrives on it.
func (cs *connState) serveFileNotifications(l *amqp.Link) { <-l.Done() }

// hubName is the hub's name: the first label of its host name.
func hubName(hostname string) string {
	name, _, _ := strings.Cut(hostname, ".")
	return name
}
