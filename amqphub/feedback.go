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
		if err != nil {
			// No outcome: the batch is abandoned below and goes out again.
			cs.srv.log.Debug("send C2D feedback", "error", err)
		}
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
	return cs.sendOne(l, &amqp.Message{
		Properties: &amqp.Properties{
			MessageID:   uuid.NewString(),
			ContentType: wire.FeedbackContentType,
			UserID:      []byte(hubName(cs.srv.cfg.Hostname)),
		},
		Data: [][]byte{wire.FeedbackBatch(b.Records)},
	})
}

// sendOne sends m and waits for its outcome as long as a lock lasts, or
// until the link ends; nil means no outcome.
func (cs *connState) sendOne(l *amqp.Link, m *amqp.Message) (amqp.Outcome, error) {
	ctx, cancel := context.WithTimeout(l.Conn().Context(), messaging.DefaultLockDuration)
	defer cancel()
	go func() {
		select {
		case <-l.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	return l.Send(ctx, m)
}

// serveFileNotifications hands file notifications to a receiver link, one
// message each, oldest first, from the first one no receiver has accepted
// yet. Accepted or rejected moves past it (for every link of the hub);
// released, modified, or no outcome within a minute sends it again. The
// position is kept in memory: after a restart the kept notifications (an
// hour's) come again, so delivery is at least once.
func (cs *connState) serveFileNotifications(l *amqp.Link) {
	src := cs.srv.deps.FileNotifications
	after := cs.srv.fileDone.Load()
	for {
		changed := src.Changed()
		ns, err := src.Notifications(l.Conn().Context(), "", max(after, cs.srv.fileDone.Load()), 64)
		if err != nil {
			cs.srv.log.Error("read file notifications", "error", err)
			l.Close(amqpError(err))
			return
		}
		if len(ns) == 0 {
			select {
			case <-changed:
			case <-time.After(feedbackRecheck):
			case <-l.Done():
				return
			}
			continue
		}
		for _, n := range ns {
			outcome, _ := cs.sendOne(l, &amqp.Message{
				Properties: &amqp.Properties{MessageID: uuid.NewString(), ContentType: wire.FileNotificationContentType,
					UserID: []byte(hubName(cs.srv.cfg.Hostname))},
				Data: [][]byte{wire.FileNotificationBody(n)},
			})
			select {
			case <-l.Done():
				return
			default:
			}
			switch outcome.(type) {
			case *amqp.Accepted, *amqp.Rejected:
				after = n.Seq
				cs.srv.advanceFileDone(n.Seq)
				continue
			}
			break // not settled: list again from after, this one first
		}
	}
}

// advanceFileDone records that every file notification up to seq has been
// accepted by some receiver.
func (s *Server) advanceFileDone(seq int64) {
	for {
		cur := s.fileDone.Load()
		if seq <= cur || s.fileDone.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// hubName is the hub's name: the first label of its host name.
func hubName(hostname string) string {
	name, _, _ := strings.Cut(hostname, ".")
	return name
}
