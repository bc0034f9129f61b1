package simdevices

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// apiVersion is what the simulated devices put in their MQTT user name.
const apiVersion = "2021-04-12"

// Bounds of one device's work, so a flood of method calls cannot pile up.
const (
	maxPendingMethods = 16
	publishTimeout    = 10 * time.Second
	disconnectQuiesce = 250 // ms
)

type device struct {
	cfg  Config
	spec *compiled
	id   string
	key  string

	sent, methodCalls, c2d atomic.Int64
	connected              atomic.Bool
	mu                     sync.Mutex
	lastErr                string

	// state of the telemetry fields; only the send loop touches it.
	values map[string]float64
	turn   int
	rng    *rand.Rand

	methodSlots chan struct{}
	twinRID     atomic.Int64
	ctx         context.Context // the device's life; delayed answers end with it
	delayed     sync.WaitGroup  // delayed method answers in flight
}

func newDevice(cfg Config, c *compiled, id, key string) *device {
	return &device{cfg: cfg, spec: c, id: id, key: key, values: map[string]float64{},
		rng:         rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		methodSlots: make(chan struct{}, maxPendingMethods)}
}

func (d *device) setErr(err error) {
	d.mu.Lock()
	if err == nil {
		d.lastErr = ""
	} else {
		d.lastErr = err.Error()
	}
	d.mu.Unlock()
}

func (d *device) status() DeviceStatus {
	d.mu.Lock()
	e := d.lastErr
	d.mu.Unlock()
	return DeviceStatus{DeviceID: d.id, Connected: d.connected.Load(), MessagesSent: d.sent.Load(),
		MethodCalls: d.methodCalls.Load(), C2DReceived: d.c2d.Load(), LastError: e}
}

// run connects (retrying with back-off, as the SDKs do) and sends
// telemetry until ctx ends, then disconnects.
func (d *device) run(ctx context.Context) {
	d.ctx = ctx
	cfg := d.cfg
	host := cfg.Hostname
	opts := mqtt.NewClientOptions().
		AddBroker(cfg.BrokerURL).
		SetClientID(d.id).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetKeepAlive(60 * time.Second).
		SetPingTimeout(10 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetWriteTimeout(publishTimeout).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(3 * time.Second).
		SetMaxReconnectInterval(30 * time.Second).
		SetCredentialsProvider(func() (string, string) {
			tok, err := sasauth.Sign(host+"/devices/"+d.id, d.key, "", cfg.Now().Add(cfg.TokenTTL))
			if err != nil {
				d.setErr(err)
			}
			return host + "/" + d.id + "/?api-version=" + apiVersion, tok
		}).
		SetOnConnectHandler(d.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			d.connected.Store(false)
			d.setErr(err)
		}).
		SetReconnectingHandler(func(mqtt.Client, *mqtt.ClientOptions) { d.connected.Store(false) })
	if cfg.TLS != nil {
		opts.SetTLSConfig(cfg.TLS)
	}
	client := mqtt.NewClient(opts)
	client.Connect() // with ConnectRetry it keeps trying in the background
	defer func() {
		client.Disconnect(disconnectQuiesce)
		d.delayed.Wait()
		d.connected.Store(false)
	}()

	if d.spec.Telemetry == nil || len(d.spec.Telemetry.Fields) == 0 && len(d.spec.Telemetry.Properties) == 0 {
		<-ctx.Done()
		return
	}
	// Devices of one simulation start spread over an interval, not in step.
	first := time.NewTimer(time.Duration(d.rng.Int64N(int64(d.spec.interval))))
	defer first.Stop()
	select {
	case <-ctx.Done():
		return
	case <-first.C:
	}
	tick := time.NewTicker(d.spec.interval)
	defer tick.Stop()
	topic := "devices/" + d.id + "/messages/events/" + d.propertyBag()
	for {
		if client.IsConnectionOpen() {
			body := d.nextBody()
			t := client.Publish(topic, 1, false, body)
			select {
			case <-t.Done():
				if err := t.Error(); err != nil {
					d.setErr(err)
				} else {
					d.sent.Add(1)
				}
			case <-time.After(publishTimeout):
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (d *device) onConnect(c mqtt.Client) {
	d.connected.Store(true)
	d.setErr(nil)
	// Callbacks run on the client's router goroutine: they only publish at
	// QoS 0 or hand work to a bounded goroutine, never wait.
	c.Subscribe("$iothub/methods/POST/#", 0, d.onMethod)
	c.Subscribe("devices/"+d.id+"/messages/devicebound/#", 1, func(mqtt.Client, mqtt.Message) { d.c2d.Add(1) })
	if d.spec.EchoDesired {
		c.Subscribe("$iothub/twin/res/#", 0, d.onTwinResponse)
		c.Subscribe("$iothub/twin/PATCH/properties/desired/#", 0, func(c mqtt.Client, m mqtt.Message) {
			d.report(c, m.Payload())
		})
		// The whole desired document, once subscribed: report it back.
		c.Publish("$iothub/twin/GET/?$rid=get"+strconv.FormatInt(d.twinRID.Add(1), 10), 0, false, []byte{})
	}
}

// onMethod answers $iothub/methods/POST/{name}/?$rid={rid} with the
// handler's status and payload after its delay; methods without a handler
// get 501, as the Node SDK answers them.
func (d *device) onMethod(c mqtt.Client, m mqtt.Message) {
	rest := strings.TrimPrefix(m.Topic(), "$iothub/methods/POST/")
	name, query, _ := strings.Cut(rest, "/?")
	q, _ := url.ParseQuery(query)
	rid := q.Get("$rid")
	if rid == "" {
		return
	}
	d.methodCalls.Add(1)
	status, payload := 501, []byte(`{"message":"The simulated device has no handler for this method."}`)
	if h, ok := d.spec.methods[name]; ok {
		status, payload = h.Status, d.spec.payloads[name]
	}
	resTopic := "$iothub/methods/res/" + strconv.Itoa(status) + "/?$rid=" + url.QueryEscape(rid)
	delay := d.spec.delays[name]
	if delay == 0 {
		c.Publish(resTopic, 0, false, payload)
		return
	}
	select {
	case d.methodSlots <- struct{}{}:
	default:
		return // too many calls waiting: this one times out, as on a busy device
	}
	d.delayed.Add(1)
	go func() {
		defer d.delayed.Done()
		defer func() { <-d.methodSlots }()
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
			c.Publish(resTopic, 0, false, payload)
		case <-d.ctx.Done():
		}
	}()
}

// onTwinResponse reports the desired properties of the twin GET back.
func (d *device) onTwinResponse(c mqtt.Client, m mqtt.Message) {
	if !strings.HasPrefix(m.Topic(), "$iothub/twin/res/200/") || !strings.Contains(m.Topic(), "rid=get") {
		return
	}
	var twin struct {
		Desired json.RawMessage `json:"desired"`
	}
	if json.Unmarshal(m.Payload(), &twin) == nil && len(twin.Desired) > 0 {
		d.report(c, twin.Desired)
	}
}

// report sends desired properties (a patch or the whole section) back as
// reported ones, without the $version and $metadata the hub adds.
func (d *device) report(c mqtt.Client, desired []byte) {
	var props map[string]any
	if json.Unmarshal(desired, &props) != nil {
		return
	}
	for k := range props {
		if strings.HasPrefix(k, "$") {
			delete(props, k)
		}
	}
	if len(props) == 0 {
		return
	}
	b, err := json.Marshal(props)
	if err != nil {
		return
	}
	c.Publish("$iothub/twin/PATCH/properties/reported/?$rid=echo"+strconv.FormatInt(d.twinRID.Add(1), 10), 0, false, b)
}

// propertyBag encodes the application properties and the JSON content
// type, as the SDKs do.
func (d *device) propertyBag() string {
	var parts []string
	if d.spec.Telemetry != nil {
		keys := make([]string, 0, len(d.spec.Telemetry.Properties))
		for k := range d.spec.Telemetry.Properties {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			parts = append(parts, url.QueryEscape(k)+"="+url.QueryEscape(d.spec.Telemetry.Properties[k]))
		}
	}
	parts = append(parts, "%24.ct=application%2Fjson", "%24.ce=utf-8")
	return strings.Join(parts, "&")
}

// nextBody returns the next telemetry message's JSON body.
func (d *device) nextBody() []byte {
	body := map[string]any{}
	for name, f := range d.spec.Telemetry.Fields {
		if len(f.Values) > 0 {
			body[name] = f.Values[d.turn%len(f.Values)]
			continue
		}
		v, seen := d.values[name]
		switch {
		case !seen || f.Walk == 0:
			v = f.Min + d.rng.Float64()*(f.Max-f.Min)
		default:
			v = math.Max(f.Min, math.Min(f.Max, v+(d.rng.Float64()*2-1)*f.Walk))
		}
		d.values[name] = v
		decimals := 2
		if f.Decimals != nil {
			decimals = *f.Decimals
		}
		p := math.Pow(10, float64(decimals))
		body[name] = math.Round(v*p) / p
	}
	d.turn++
	b, _ := json.Marshal(body)
	return b
}
