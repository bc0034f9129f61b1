package amqphub

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/iothub-emulator/iothub-emulator/amqp"
	"github.com/iothub-emulator/iothub-emulator/eventhub"
	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/messaging"
)

// The Event Hub-compatible endpoint's nodes: $management (READ of the event
// hub and of a partition), partition receivers on
// {name}/ConsumerGroups/{group}/Partitions/{id}, and the redirect of
// messages/events to them. They share the service endpoint's connections,
// SASL and $cbs, and need a ServiceConnect claim like its other nodes.

// Link properties, capabilities and annotations of the Event Hubs protocol.
const (
	propEpoch          = amqp.Symbol("com.microsoft:epoch")
	propReceiverName   = amqp.Symbol("com.microsoft:receiver-name")
	capRuntimeMetric   = amqp.Symbol("com.microsoft:enable-receiver-runtime-metric")
	selectorFilter     = amqp.Symbol("apache.org:selector-filter:string")
	selectorFilterCode = uint64(0x0000468C00000004)
	// eventBatch bounds the events one read takes from the log.
	eventBatch = 256
)

// attachEventHub routes a link to the Event Hub nodes; handled is false when
// the address is none of them.
func (cs *connState) attachEventHub(l *amqp.Link, node string) (handled bool, err error) {
	eh := cs.srv.deps.EventHub
	if eh == nil {
		return false, nil
	}
	name := strings.ToLower(eh.Name())
	switch {
	case node == "$management" || node == name+"/$management":
		if err := cs.authorize(l); err != nil {
			return true, err
		}
		cs.mu.Lock()
		if cs.mgmt == nil {
			cs.mgmt = amqp.NewRequestNode(cs.serveManagement, cs.srv.cfg.SendTimeout)
		}
		mgmt := cs.mgmt
		cs.mu.Unlock()
		if l.Role() == amqp.RoleReceiver {
			mgmt.AddRequestLink(l)
		} else {
			mgmt.AddReplyLink(l)
		}
		return true, nil
	case (node == "messages/events" || strings.HasPrefix(node, "messages/events/")) && l.Role() == amqp.RoleSender:
		// Only receivers are redirected; a sender finds no node here.
		if err := cs.authorize(l); err != nil {
			return true, err
		}
		return true, cs.redirect(l)
	case node == name || strings.HasPrefix(node, name+"/"):
		if l.Role() == amqp.RoleReceiver {
			return true, amqp.Errorf(amqp.ErrCondNotAllowed, "The Event Hub-compatible endpoint of an IoT hub is read-only: send operations are not supported on %s.", l.Address())
		}
		raw := rawPath(l.Address())
		m := partitionPath.FindStringSubmatch(raw[min(len(name), len(raw)):])
		if m == nil {
			return true, amqp.Errorf(amqp.ErrCondNotFound, "The messaging entity '%s' could not be found.", l.Address())
		}
		if err := cs.authorize(l); err != nil {
			return true, err
		}
		return true, cs.attachPartition(l, m[1], m[2])
	}
	return false, nil
}

var partitionPath = regexp.MustCompile(`(?i)^/consumergroups/([^/]+)/partitions/([^/]+)$`)

// rawPath is a link address without scheme, host and surrounding slashes,
// case kept (group names and redirect suffixes keep theirs).
func rawPath(addr string) string {
	for _, scheme := range []string{"amqps://", "amqp://", "wss://", "sb://"} {
		if len(addr) > len(scheme) && strings.EqualFold(addr[:len(scheme)], scheme) {
			addr = addr[len(scheme):]
			if i := strings.IndexByte(addr, '/'); i >= 0 {
				addr = addr[i:]
			} else {
				addr = ""
			}
			break
		}
	}
	return strings.Trim(addr, "/")
}

// redirect answers a link to messages/events the way the hub does: with
// amqp:link:redirect to the same path on the Event Hub-compatible endpoint.
func (cs *connState) redirect(l *amqp.Link) error {
	cfg := &cs.srv.cfg
	path := rawPath(l.Address())
	suffix := strings.TrimPrefix(path[len("messages/events"):], "/")
	address := fmt.Sprintf("amqps://%s:%d/%s", cfg.Hostname, cfg.EventHubPort(), cs.srv.deps.EventHub.Name())
	if suffix != "" {
		address += "/" + suffix
	}
	return &amqp.Error{Condition: amqp.ErrCondLinkRedirect,
		Description: "The link to messages/events is redirected to the Event Hub-compatible endpoint.",
		Info: amqp.Fields{"hostname": cfg.Hostname, "network-host": cfg.Hostname,
			"port": int32(cfg.EventHubPort()), "address": address}}
}

// serveManagement answers $management READ requests for the event hub and
// its partitions with the status and body the Event Hubs SDKs read; the
// security_token some SDKs add is not needed: the link's claim decided.
func (cs *connState) serveManagement(ctx context.Context, req *amqp.Message) *amqp.Message {
	eh := cs.srv.deps.EventHub
	reply := func(status int, desc string, body any) *amqp.Message {
		return &amqp.Message{ApplicationProperties: map[string]any{"status-code": int32(status), "status-description": desc}, Value: body, HasValue: true}
	}
	str := func(k string) string { s, _ := req.ApplicationProperties[k].(string); return s }
	if op := str("operation"); op != "READ" {
		return reply(400, fmt.Sprintf("The operation '%s' is not supported: only READ is.", op), nil)
	}
	if n := str("name"); !strings.EqualFold(n, eh.Name()) {
		return reply(404, fmt.Sprintf("The messaging entity '%s' could not be found.", n), nil)
	}
	switch str("type") {
	case "com.microsoft:eventhub":
		return reply(200, "OK", map[string]any{
			"name": eh.Name(), "type": "com.microsoft:eventhub", "created_at": eh.CreatedAt(),
			"partition_count": int32(eh.PartitionCount()), "partition_ids": eh.PartitionIDs(),
			"georeplication_factor": int32(1),
		})
	case "com.microsoft:partition":
		rctx, cancel := context.WithTimeout(ctx, cs.srv.cfg.SendTimeout)
		defer cancel()
		p, err := eh.PartitionProperties(rctx, str("partition"))
		var nf *eventhub.NotFoundError
		switch {
		case errors.As(err, &nf):
			return reply(404, nf.Error(), nil)
		case err != nil:
			cs.srv.log.Error("event hub partition properties", "error", err)
			return reply(500, "The partition's properties could not be read.", nil)
		}
		return reply(200, "OK", map[string]any{
			"name": eh.Name(), "type": "com.microsoft:partition", "partition": p.ID,
			"begin_sequence_number": p.BeginSequenceNumber, "last_enqueued_sequence_number": p.LastSequenceNumber,
			"last_enqueued_offset": p.LastOffset, "last_enqueued_time_utc": timeOrEpoch(p.LastEnqueuedTime),
			"is_partition_empty": p.IsEmpty,
		})
	}
	return reply(400, fmt.Sprintf("The entity type '%s' is not supported.", str("type")), nil)
}

func timeOrEpoch(t time.Time) time.Time {
	if t.IsZero() {
		return time.UnixMilli(0).UTC()
	}
	return t
}

// attachPartition opens a reader of the partition from the link's filter and
// owner level, and starts sending its events.
func (cs *connState) attachPartition(l *amqp.Link, group, id string) error {
	eh := cs.srv.deps.EventHub
	pos, err := linkPosition(l.Source())
	if err != nil {
		return err
	}
	owner := eventhub.Owner{Name: l.Name()}
	if n, ok := l.Properties()[propReceiverName].(string); ok && n != "" {
		owner.Name = n
	}
	switch e := l.Properties()[propEpoch].(type) {
	case int64:
		owner.Epoch = &e
	case int32:
		v := int64(e)
		owner.Epoch = &v
	}
	metric := false
	for _, c := range l.DesiredCapabilities() {
		if c == capRuntimeMetric {
			metric = true
		}
	}
	if metric {
		l.SetOfferedCapabilities([]amqp.Symbol{capRuntimeMetric})
	}
	ctx, cancel := context.WithTimeout(l.Conn().Context(), cs.srv.cfg.SendTimeout)
	defer cancel()
	r, err := eh.OpenReader(ctx, group, id, pos, owner)
	if err != nil {
		return eventHubError(err)
	}
	go cs.servePartition(l, r, metric)
	return nil
}

// eventHubError maps the Event Hub service's errors to the conditions the
// Event Hubs SDKs translate (ownership lost, not found, quota exceeded).
func eventHubError(err error) *amqp.Error {
	var (
		stolen *eventhub.StolenError
		nf     *eventhub.NotFoundError
		quota  *eventhub.QuotaError
		ae     *amqp.Error
	)
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &stolen):
		return &amqp.Error{Condition: amqp.ErrCondStolen, Description: stolen.Message}
	case errors.As(err, &nf):
		return &amqp.Error{Condition: amqp.ErrCondNotFound, Description: nf.Error()}
	case errors.As(err, &quota):
		return &amqp.Error{Condition: amqp.ErrCondResourceLimitExceeded, Description: quota.Message}
	case errors.Is(err, iothub.ErrClosed):
		return &amqp.Error{Condition: amqp.ErrCondDetachForced, Description: "The hub is shutting down."}
	}
	return amqpError(err)
}

// linkPosition reads the selector filter the SDKs send:
// amqp.annotation.<x-opt-offset|x-opt-sequence-number|x-opt-enqueued-time|x-opt-enqueuedtimeutc> <>|>=> '<value>',
// where the value may be '-1' (earliest) or '@latest'. No filter starts at
// the earliest event.
func linkPosition(src *amqp.Source) (eventhub.Position, error) {
	if src == nil || src.Filter == nil {
		return eventhub.Position{Kind: eventhub.Earliest}, nil
	}
	var expr string
	for k, v := range src.Filter {
		d, ok := v.(*amqp.Described)
		if !ok {
			continue
		}
		code, _ := d.Descriptor.(uint64)
		if k == selectorFilter || code == selectorFilterCode || d.Descriptor == selectorFilter {
			expr, _ = d.Value.(string)
		}
	}
	if expr == "" {
		return eventhub.Position{Kind: eventhub.Earliest}, nil
	}
	m := selectorExpr.FindStringSubmatch(strings.TrimSpace(expr))
	if m == nil {
		return eventhub.Position{}, amqp.Errorf(amqp.ErrCondNotImplemented, "The selector filter '%s' is not supported.", expr)
	}
	field, inclusive, value := strings.ToLower(m[1]), m[2] == ">=", m[3]
	switch {
	case value == "@latest":
		return eventhub.Position{Kind: eventhub.Latest}, nil
	case value == "-1" && field == "x-opt-offset":
		return eventhub.Position{Kind: eventhub.Earliest}, nil
	}
	n, err := strconv.ParseInt(value, 10, 64)
	if err != nil {
		return eventhub.Position{}, amqp.Errorf("com.microsoft:argument-error", "The value '%s' of the selector filter is not a number.", value)
	}
	switch field {
	case "x-opt-offset", "x-opt-sequence-number":
		if n < 0 {
			return eventhub.Position{Kind: eventhub.Earliest}, nil
		}
		return eventhub.Position{Kind: eventhub.SequenceNumber, Sequence: n, Inclusive: inclusive}, nil
	default: // the enqueued-time fields
		return eventhub.Position{Kind: eventhub.EnqueuedTime, Time: time.UnixMilli(n), Inclusive: inclusive}, nil
	}
}

var selectorExpr = regexp.MustCompile(`(?i)^amqp\.annotation\.(x-opt-offset|x-opt-sequence-number|x-opt-enqueued-time|x-opt-enqueuedtimeutc)\s*(>=|>)\s*'([^']*)'$`)

// servePartition sends the reader's events as the link's credit allows,
// until the link, the reader or the connection ends. A reader taken over by
// a higher owner level detaches the link with amqp:link:stolen.
func (cs *connState) servePartition(l *amqp.Link, r *eventhub.Reader, metric bool) {
	defer r.Close()
	ctx, cancel := context.WithCancel(l.Conn().Context())
	defer cancel()
	go func() {
		select {
		case <-l.Done():
		case <-r.Done():
		case <-ctx.Done():
		}
		cancel()
	}()
	eh := cs.srv.deps.EventHub
	p, _ := eh.ParsePartition(partitionID(l.Address()))
	for {
		events, err := r.Next(ctx, eventBatch)
		if err != nil {
			break
		}
		for _, e := range events {
			msg := eventMessage(e)
			if metric {
				seq, t := eh.LastEnqueued(p)
				msg.DeliveryAnnotations = amqp.Annotations{
					amqp.Symbol("last_enqueued_sequence_number"):   seq,
					amqp.Symbol("last_enqueued_offset"):            strconv.FormatInt(seq, 10),
					amqp.Symbol("last_enqueued_time_utc"):          timeOrEpoch(t),
					amqp.Symbol("runtime_info_retrieval_time_utc"): cs.srv.cfg.Now().UTC(),
				}
			}
			if err := l.SendSettled(ctx, msg); err != nil {
				break
			}
		}
	}
	select {
	case <-r.Done():
		if err := r.Err(); err != nil {
			var stolen *eventhub.StolenError
			if errors.As(err, &stolen) || errors.Is(err, iothub.ErrClosed) {
				l.Close(eventHubError(err))
			}
		}
	default:
	}
}

func partitionID(addr string) string {
	p := rawPath(addr)
	return p[strings.LastIndexByte(p, '/')+1:]
}

// eventMessage renders a stored telemetry message as the hub puts it on its
// Event Hub-compatible endpoint: the body as one data section, the device's
// properties as application properties, the message properties, and the
// hub's annotations (who sent it, when, and where it is in the partition).
func eventMessage(m *messaging.Message) *amqp.Message {
	ann := amqp.Annotations{
		amqp.Symbol("x-opt-sequence-number"): m.SequenceNumber,
		amqp.Symbol("x-opt-offset"):          strconv.FormatInt(m.SequenceNumber, 10),
		amqp.Symbol("x-opt-enqueued-time"):   m.EnqueuedTime,
		amqp.Symbol("iothub-enqueuedtime"):   m.EnqueuedTime,
		amqp.Symbol("iothub-message-source"): "Telemetry",
	}
	set := func(k, v string) {
		if v != "" {
			ann[amqp.Symbol(k)] = v
		}
	}
	for k, v := range m.System {
		set(k, v)
	}
	set("iothub-connection-device-id", m.DeviceID)
	set("iothub-connection-module-id", m.ModuleID)
	set("iothub-connection-auth-generation-id", m.GenerationID)
	set("iothub-connection-auth-method", m.AuthMethodProperty())
	if !m.CreationTime.IsZero() {
		ann[amqp.Symbol("iothub-creation-time-utc")] = m.CreationTime
	}
	msg := &amqp.Message{Annotations: ann, Data: [][]byte{m.Body}}
	props := &amqp.Properties{To: m.To, ContentType: amqp.Symbol(m.ContentType), ContentEncoding: amqp.Symbol(m.ContentEncoding),
		AbsoluteExpiryTime: m.ExpiryTime, CreationTime: m.CreationTime}
	if m.MessageID != "" {
		props.MessageID = m.MessageID
	}
	if m.CorrelationID != "" {
		props.CorrelationID = m.CorrelationID
	}
	if m.UserID != "" {
		props.UserID = []byte(m.UserID)
	}
	// A message with none of these (telemetry sent without system
	// properties) goes without a properties section, as the hub sends it:
	// consumers tell "absent" from "present and empty" (azure-eventhub's
	// content type).
	if props.MessageID != nil || props.CorrelationID != nil || props.UserID != nil || props.To != "" ||
		props.ContentType != "" || props.ContentEncoding != "" || !props.AbsoluteExpiryTime.IsZero() || !props.CreationTime.IsZero() {
		msg.Properties = props
	}
	if len(m.Properties) > 0 {
		msg.ApplicationProperties = make(map[string]any, len(m.Properties))
		for k, v := range m.Properties {
			msg.ApplicationProperties[k] = v
		}
	}
	return msg
}
