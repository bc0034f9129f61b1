package amqphub

import (
	"context"

	"github.com/iothub-emulator/iothub-emulator/amqp"
	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// serveSubmissions reads the transfers of a link whose client sends (C2D
// from a back end, telemetry from a device) and hands each message to
// submit: one message, or each message of a batch (format 0x80013700, as the
// service SDKs batch C2D and the C# and Java device SDKs SendEventBatch).
// submit queues a message and returns a wait for its commit. The link reads
// on while earlier transfers commit, so many transfers share a commit; a
// transfer is accepted once all its messages are stored, else rejected with
// the first refusal. refusedSettled hears of refusals the client cannot be
// told of, because it sent the transfer pre-settled.
func serveSubmissions(l *amqp.Link, submit func(context.Context, *amqp.Message) (func() error, error), refusedSettled func(error)) {
	ctx := l.Conn().Context()
	for {
		d, err := l.Receive(ctx)
		if err != nil {
			return
		}
		waits, err := submitTransfer(ctx, d.Message, submit)
		go settleSubmission(d, waits, err, refusedSettled)
	}
}

// submitTransfer submits one transfer's messages in order, stopping at the
// first that cannot be read or queued.
func submitTransfer(ctx context.Context, m *amqp.Message, submit func(context.Context, *amqp.Message) (func() error, error)) ([]func() error, error) {
	msgs := []*amqp.Message{m}
	if m.Format == amqp.BatchMessageFormat {
		var err error
		if msgs, err = m.Batch(); err != nil {
			return nil, iothub.Errorf(iothub.ArgumentInvalid, "The batch cannot be decoded: %v", err)
		}
	}
	waits := make([]func() error, 0, len(msgs))
	for _, m := range msgs {
		wait, err := submit(ctx, m)
		if err != nil {
			return waits, err
		}
		waits = append(waits, wait)
	}
	return waits, nil
}

// settleSubmission waits for a transfer's messages and settles it: accepted
// when all were stored, else rejected with the first refusal.
func settleSubmission(d *amqp.Delivery, waits []func() error, err error, refusedSettled func(error)) {
	for _, wait := range waits {
		if werr := wait(); werr != nil && err == nil {
			err = werr
		}
	}
	switch {
	case err != nil && d.Settled:
		refusedSettled(err)
	case err != nil:
		_ = d.Reject(amqpError(err))
	case !d.Settled:
		_ = d.Accept()
	}
}
