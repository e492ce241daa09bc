package mqtt

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/virtual-kubelet/virtual-kubelet/log"

	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/tunnel"
)

// subscribeQoS is the QoS of every subscription, as in the reference and the Java base.
const subscribeQoS = 1

// disconnectQuiesce is how long Disconnect lets in-flight work finish, in milliseconds.
const disconnectQuiesce = 250

// ErrNotConnected is returned (wrapped) by the commands while the tunnel is not connected
// to the broker. Nothing was published; the caller should retry later.
var ErrNotConnected = errors.New("mqtt tunnel not connected")

// errRunTwice is returned by a second call of Run.
var errRunTwice = errors.New("mqtt tunnel: Run called more than once")

// Tunnel implements tunnel.Tunnel over MQTT with the Eclipse Paho client.
//
// It holds one MQTT session with a unique client ID and a clean session. On every
// (re)connect it subscribes with QoS 1 to the wildcard topics of all bases of its env, so
// a reconnect restores everything with no per-base state. Messages are decoded, checked
// and delivered in arrival order on Events; commands are published with QoS 1 and never
// retained.
type Tunnel struct {
	cfg     Config
	client  paho.Client
	metrics *metrics

	// log is the logger of paho's callbacks: log.L until Run sets it from its context,
	// before paho starts any goroutine.
	log     log.Logger
	started atomic.Bool

	ready     chan struct{}
	readyOnce sync.Once

	// connMu guards gen and subscribed. gen counts connects, so a subscribe that finishes
	// after a newer connect began does not mark the newer one subscribed.
	connMu     sync.Mutex
	gen        uint64
	subscribed bool

	events   chan tunnel.Event
	stopping chan struct{} // closed when Run stops; makes deliver give up
}

var _ tunnel.Tunnel = (*Tunnel)(nil)

// New validates cfg, applies defaults, reads the TLS files and registers the metrics. It
// does not connect: Run does.
func New(cfg Config) (*Tunnel, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid mqtt tunnel config: %w", err)
	}
	secure, err := parseBrokerURL(cfg.BrokerURL)
	if err != nil {
		return nil, err // unreachable: Validate checked it
	}
	t := &Tunnel{
		cfg:      cfg,
		log:      log.L,
		ready:    make(chan struct{}),
		events:   make(chan tunnel.Event, cfg.EventBuffer),
		stopping: make(chan struct{}),
	}
	opts := paho.NewClientOptions().
		AddBroker(cfg.BrokerURL).
		SetClientID(cfg.clientID()).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		// A clean session with a per-process client ID: nothing queued for a previous
		// incarnation is replayed, and subscriptions come from onConnect alone.
		SetCleanSession(true).
		SetResumeSubs(false).
		SetOrderMatters(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(cfg.MaxReconnectInterval).
		SetKeepAlive(cfg.KeepAlive).
		SetPingTimeout(cfg.ConnectTimeout).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetWriteTimeout(cfg.ConnectTimeout).
		SetOnConnectHandler(t.onConnect).
		SetConnectionLostHandler(t.onConnectionLost).
		SetConnectionNotificationHandler(t.onConnectionNotification)
	if secure {
		tc, err := tlsConfig(cfg.TLS, cfg.BrokerURL)
		if err != nil {
			return nil, err
		}
		opts.SetTLSConfig(tc)
	}
	t.client = paho.NewClient(opts)
	if t.metrics, err = newMetrics(cfg.Registerer, t.Connected); err != nil {
		return nil, err
	}
	return t, nil
}

// Env returns the normalized env the tunnel serves.
func (t *Tunnel) Env() string { return t.cfg.Env }

// ClientID returns the MQTT client ID, ClientIDPrefix@@@ClientID.
func (t *Tunnel) ClientID() string { return t.cfg.clientID() }

// Run connects to the broker, retrying until ctx is done, keeps the connection up (paho
// reconnects automatically, and every reconnect re-subscribes) and delivers events until
// ctx is done. Then it disconnects and returns nil. Run may be called once.
func (t *Tunnel) Run(ctx context.Context) error {
	if !t.started.CompareAndSwap(false, true) {
		return errRunTwice
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithFields(log.Fields{
		"broker": t.cfg.BrokerURL, "env": t.cfg.Env, "clientID": t.cfg.clientID(),
	}))
	t.log = log.G(ctx) // before Connect, which starts every goroutine that reads it
	defer t.stop()

	log.G(ctx).Info("connecting to mqtt broker")
	tok := t.client.Connect()
	select {
	case <-tok.Done():
		// With ConnectRetry paho only gives up when disconnected meanwhile, which only
		// stop does; an error here is therefore unexpected.
		if err := tok.Error(); err != nil {
			return fmt.Errorf("connect to mqtt broker: %w", err)
		}
	case <-ctx.Done():
		return nil
	}
	<-ctx.Done()
	return nil
}

// stop makes waiting handlers give up and disconnects.
func (t *Tunnel) stop() {
	close(t.stopping) // first, so a handler waiting for room in Events lets paho shut down
	t.client.Disconnect(disconnectQuiesce)
	t.startGen()
	t.log.Info("disconnected from mqtt broker")
}

// Ready is closed once the tunnel has connected and subscribed for the first time.
func (t *Tunnel) Ready() <-chan struct{} { return t.ready }

// Connected reports whether the tunnel is connected and subscribed right now; use it for
// readiness probes.
func (t *Tunnel) Connected() bool {
	t.connMu.Lock()
	defer t.connMu.Unlock()
	return t.subscribed && t.client.IsConnectionOpen()
}

// Events returns the stream of decoded, checked messages from bases, in the order the
// broker delivered them. Its capacity is Config.EventBuffer. When it is full the MQTT
// client waits for the consumer, which also holds back the broker's acknowledgements of
// our commands and, after about a keep-alive, the connection: drain it promptly and do not
// wait for commands in the goroutine that drains it. It is never closed (consumers select
// on their own context); events still buffered when Run returns stay readable.
func (t *Tunnel) Events() <-chan tunnel.Event { return t.events }

// onConnect runs (in its own goroutine) after every successful connect. It subscribes to
// the wildcard topics of the env, retrying with back-off until it succeeds, the connection
// is lost (the next connect starts over) or the tunnel stops.
func (t *Tunnel) onConnect(c paho.Client) {
	gen := t.startGen()
	t.log.Info("connected to mqtt broker")
	filters := make(map[string]byte)
	for _, f := range protocol.BaseSubscriptions(t.cfg.Env) {
		filters[f] = subscribeQoS
	}
	backoff := time.Second
	for {
		err := t.subscribe(c, filters)
		if err == nil {
			if t.markSubscribed(gen) {
				t.readyOnce.Do(func() { close(t.ready) })
				t.log.WithField("topics", len(filters)).Info("subscribed to base topics")
			}
			return
		}
		if t.stopped() || !c.IsConnectionOpen() {
			return
		}
		t.log.WithError(err).WithField("retryIn", backoff).Warn("subscribe to base topics failed, retrying")
		timer := time.NewTimer(backoff)
		select {
		case <-timer.C:
		case <-t.stopping:
			timer.Stop()
			return
		}
		backoff = min(2*backoff, t.cfg.MaxReconnectInterval)
	}
}

// subscribe makes one subscribe round trip and checks that the broker granted every filter.
func (t *Tunnel) subscribe(c paho.Client, filters map[string]byte) error {
	tok := c.SubscribeMultiple(maps.Clone(filters), t.onMessage)
	timer := time.NewTimer(t.cfg.ConnectTimeout)
	defer timer.Stop()
	select {
	case <-tok.Done():
	case <-timer.C:
		return errors.New("no SUBACK within the connect timeout")
	case <-t.stopping:
		return errStopped
	}
	if err := tok.Error(); err != nil {
		return err
	}
	st, ok := tok.(*paho.SubscribeToken)
	if !ok {
		return nil
	}
	var errs []error
	for topic, code := range st.Result() {
		if code >= 0x80 {
			errs = append(errs, fmt.Errorf("broker refused %s (code %#x)", topic, code))
		}
	}
	return errors.Join(errs...)
}

// onConnectionLost runs after the connection dropped; paho is already reconnecting, and
// Connected reports false from now on because the connection is not open.
func (t *Tunnel) onConnectionLost(_ paho.Client, err error) {
	t.log.WithError(err).Warn("lost connection to mqtt broker, reconnecting")
}

// onConnectionNotification counts failed connection attempts and logs them.
func (t *Tunnel) onConnectionNotification(_ paho.Client, n paho.ConnectionNotification) {
	if f, ok := n.(paho.ConnectionNotificationFailed); ok {
		t.metrics.connectFailures.Inc()
		t.log.WithError(f.Reason).Warn("connecting to mqtt broker failed, retrying")
	}
}

// stopped reports whether Run is stopping.
func (t *Tunnel) stopped() bool {
	select {
	case <-t.stopping:
		return true
	default:
		return false
	}
}

// startGen starts a new connection generation, not subscribed yet, and returns it.
func (t *Tunnel) startGen() uint64 {
	t.connMu.Lock()
	defer t.connMu.Unlock()
	t.gen++
	t.subscribed = false
	return t.gen
}

// markSubscribed records that generation gen subscribed and reports whether gen is still
// the current one (a later connect may have started meanwhile).
func (t *Tunnel) markSubscribed(gen uint64) bool {
	t.connMu.Lock()
	defer t.connMu.Unlock()
	if gen != t.gen {
		return false
	}
	t.subscribed = true
	return true
}
