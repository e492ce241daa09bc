package basesim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/virtual-kubelet/virtual-kubelet/log"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// Errors returned by Base.
var (
	// ErrNotStarted is returned by operations that need a started base.
	ErrNotStarted = errors.New("base not started")
	// ErrStopped is returned by Start and Restart after Stop.
	ErrStopped = errors.New("base stopped")
	// ErrAlreadyStarted is returned by a second Start.
	ErrAlreadyStarted = errors.New("base already started")
	// ErrNotConnected is returned by a publish while the base has no connection: like the
	// Java client, the base does not buffer messages while offline.
	ErrNotConnected = errors.New("not connected to the broker")
	// ErrSilenced is returned by a publish while the base is silenced.
	ErrSilenced = errors.New("base silenced")
)

// Base is one simulated Java base. Its methods are safe for concurrent use.
type Base struct {
	cfg      Config
	clientID string
	logp     atomic.Pointer[loggerBox] // replaced by Start

	knobs    knobs
	silenced atomic.Bool
	recv     *received

	pubMu     sync.Mutex
	published map[string]int // suffix → successful publishes

	mu      sync.Mutex
	proc    *process // the running simulated JVM, nil before Start
	stopped bool
}

// New validates cfg, applies its defaults and returns a base that is not connected yet.
func New(cfg Config) (*Base, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid base config: %w", err)
	}
	cfg = cfg.withDefaults()
	b := &Base{
		cfg:       cfg,
		clientID:  cfg.ClientIDPrefix + "@@@" + cfg.Identity,
		recv:      newReceived(cfg.ReceivedLimit),
		published: map[string]int{},
	}
	b.knobs.init(cfg)
	b.logp.Store(&loggerBox{log.L.WithField("base", cfg.Identity)})
	return b, nil
}

// loggerBox lets a log.Logger of any concrete type sit in an atomic.Pointer.
type loggerBox struct{ l log.Logger }

// logger returns the base's logger: the one of Start's context, with field "base".
func (b *Base) logger() log.Logger { return b.logp.Load().l }

// Identity returns the base ID.
func (b *Base) Identity() string { return b.cfg.Identity }

// Env returns the normalized env the base publishes under.
func (b *Base) Env() string { return b.cfg.Env }

// Config returns the base's configuration with defaults applied.
func (b *Base) Config() Config { return b.cfg }

// Topic returns koupleless_<env>/<identity>/<suffix> for this base.
func (b *Base) Topic(suffix string) string {
	return protocol.Topic(b.cfg.Env, b.cfg.Identity, suffix)
}

// Start starts the simulated JVM: it connects to the broker, subscribes to the command
// topics, publishes queryBaseline and the first heartbeat, and returns once all of that
// is done, or with an error if the connection failed or ctx ended first. ctx bounds only
// the start and supplies the logger; the base runs until Stop. Like the Java base, the
// first connection is not retried; later losses are reconnected automatically.
func (b *Base) Start(ctx context.Context) error {
	b.mu.Lock()
	switch {
	case b.stopped:
		b.mu.Unlock()
		return ErrStopped
	case b.proc != nil:
		b.mu.Unlock()
		return ErrAlreadyStarted
	}
	b.logp.Store(&loggerBox{log.G(ctx).WithField("base", b.cfg.Identity)})
	p := b.newProcess()
	b.proc = p
	b.mu.Unlock()

	if err := p.start(ctx); err != nil {
		b.mu.Lock()
		if b.proc == p {
			b.proc = nil
		}
		b.mu.Unlock()
		p.kill()
		return err
	}
	b.logger().Info("simulated base started")
	return nil
}

// Run starts the base, keeps it running until ctx is cancelled and then stops it. It
// returns nil on cancellation.
func (b *Base) Run(ctx context.Context) error {
	if err := b.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	b.Stop()
	return nil
}

// Stop disconnects the base and drops everything in flight. It is idempotent; a stopped
// base cannot be started again.
func (b *Base) Stop() {
	b.mu.Lock()
	p := b.proc
	b.proc = nil
	already := b.stopped
	b.stopped = true
	b.mu.Unlock()
	if p != nil {
		p.kill()
	}
	if !already && p != nil {
		b.logger().Info("simulated base stopped")
	}
}

// Restart simulates a JVM restart: the connection drops without a goodbye, the base stays
// away for Config.RestartDowntime, every
// installed biz and command in flight is lost (static bizs come back), a new client with
// the same client id connects, and, being the first connect of the new process, the base
// publishes queryBaseline and restarts its heartbeats (also after StopHeartbeats). It
// returns when the new process has started, like Start.
func (b *Base) Restart(ctx context.Context) error {
	b.mu.Lock()
	old := b.proc
	switch {
	case b.stopped:
		b.mu.Unlock()
		return ErrStopped
	case old == nil:
		b.mu.Unlock()
		return ErrNotStarted
	}
	p := b.newProcess()
	b.proc = p
	b.mu.Unlock()

	// Kill the old client before the new one connects: two live clients with one client id
	// would keep taking the session from each other.
	old.kill()
	b.logger().Info("simulated base restarting")
	if d := b.cfg.RestartDowntime; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("restart: %w", ctx.Err())
		}
	}
	if err := p.start(ctx); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	return nil
}

// current returns the running process, or nil.
func (b *Base) current() *process {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.proc
}

// Connected reports whether the base currently has a connection to the broker.
func (b *Base) Connected() bool {
	p := b.current()
	if p != nil && p.http() {
		return p.connected.Load() && p.ctx.Err() == nil // serving its arklet HTTP server
	}
	return p != nil && p.client.IsConnectionOpen()
}

// Bizs returns the bizs registered on the base, by name then version; the master biz is
// not included.
func (b *Base) Bizs() []Biz {
	p := b.current()
	if p == nil {
		return []Biz{}
	}
	return p.reg.snapshot()
}

// Biz returns the registered biz name:version, if any.
func (b *Base) Biz(name, version string) (Biz, bool) {
	key := protocol.BizKey(name, version)
	for _, z := range b.Bizs() {
		if z.Key() == key {
			return z, true
		}
	}
	return Biz{}, false
}

// Received returns the latest commands the base received (at most Config.ReceivedLimit),
// oldest first, across restarts.
func (b *Base) Received() []Command {
	return b.recv.list()
}

// ReceivedCount returns how many commands named command (a protocol.Command… constant or
// CommandBaseline) the base received since it was created or ResetReceived: all of them
// if key is "", else those for the biz key "name:version" (for baselines: those that
// listed it). Counts are exact whatever Config.ReceivedLimit is.
func (b *Base) ReceivedCount(command, key string) int {
	return b.recv.count(command, key)
}

// ResetReceived clears Received and ReceivedCount.
func (b *Base) ResetReceived() {
	b.recv.reset()
}

// PublishedCount returns how many messages the base published successfully (PUBACK
// received) on koupleless_<env>/<identity>/<suffix>, e.g. protocol.SuffixHeartbeat.
func (b *Base) PublishedCount(suffix string) int {
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	return b.published[suffix]
}

func (b *Base) countPublished(suffix string) {
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	b.published[suffix]++
}

// SendRaw publishes payload unchanged on koupleless_<env>/<identity>/<suffix>, QoS 1, not
// retained, even while silenced: use it to inject garbage or spoofed messages. It waits
// for the PUBACK.
//
// Over the HTTP tunnel it posts payload to the controller's endpoint of suffix
// (base/heart: /heartbeat, base/queryBaseline: /queryBaseline) and waits for a 200.
func (b *Base) SendRaw(suffix string, payload []byte) error {
	if p := b.current(); p != nil && p.http() {
		return p.sendRawHTTP(suffix, payload)
	}
	return b.PublishRaw(b.Topic(suffix), payload)
}

// PublishRaw publishes payload unchanged on any topic (for instance another base's),
// QoS 1, not retained, even while silenced. It waits for the PUBACK.
func (b *Base) PublishRaw(topic string, payload []byte) error {
	p := b.current()
	if p == nil {
		return ErrNotStarted
	}
	return p.publishTopic(topic, payload)
}

// process is one life of the simulated JVM: its MQTT client, biz registry, heartbeat
// schedule and the commands in flight, all of which a restart throws away.
type process struct {
	b      *Base
	client paho.Client
	reg    *registry
	ctx    context.Context // cancelled when the process dies
	cancel context.CancelFunc
	born   time.Time

	connected atomic.Bool // the first connect was handled
	readyOnce sync.Once
	ready     chan struct{}
	readyErr  error

	hbMu      sync.Mutex
	hbTimer   *time.Timer
	hbStopped bool

	batchRunning atomic.Bool

	// The HTTP tunnel (Config.Tunnel TunnelHTTP): the arklet server, its real port and
	// the heartbeat client; client is nil then.
	srv        *http.Server
	port       int
	httpClient *http.Client
}

// http reports whether the process runs the HTTP tunnel.
func (p *process) http() bool { return p.b.cfg.Tunnel == TunnelHTTP }

func (b *Base) newProcess() *process {
	ctx, cancel := context.WithCancel(context.Background())
	p := &process{
		b:      b,
		reg:    newRegistry(),
		ctx:    ctx,
		cancel: cancel,
		born:   time.Now(),
		ready:  make(chan struct{}),
	}
	now := b.cfg.Now()
	for _, m := range b.cfg.StaticBizs {
		if p.reg.register(m, now, true) {
			p.reg.start(m.Key(), ActivateAll, now)
		}
	}
	if p.http() {
		return p
	}
	opts := paho.NewClientOptions().
		AddBroker(b.cfg.Broker).
		SetClientID(b.clientID).
		SetUsername(b.cfg.Username).
		SetPassword(b.cfg.Password).
		SetCleanSession(true).
		SetAutoReconnect(true).
		SetConnectRetry(false).
		SetMaxReconnectInterval(b.cfg.MaxReconnectInterval).
		SetKeepAlive(b.cfg.KeepAlive).
		SetConnectTimeout(b.cfg.ConnectTimeout).
		SetWriteTimeout(b.cfg.PublishTimeout).
		// The Java base hands every message to a thread pool, so commands for different
		// bizs run concurrently; paho then runs each handler in its own goroutine.
		SetOrderMatters(false).
		SetResumeSubs(false).
		SetOnConnectHandler(p.onConnect).
		SetConnectionLostHandler(p.onConnectionLost)
	if b.cfg.TLS != nil {
		opts.SetTLSConfig(b.cfg.TLS.Clone())
	}
	p.client = paho.NewClient(opts)
	return p
}

// start connects and waits until the first connect was handled.
func (p *process) start(ctx context.Context) error {
	if p.http() {
		return p.startHTTP()
	}
	tok := p.client.Connect()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("connect to %s: %w", p.b.cfg.Broker, err)
		}
	case <-ctx.Done():
		return fmt.Errorf("connect to %s: %w", p.b.cfg.Broker, ctx.Err())
	}
	select {
	case <-p.ready:
		return p.readyErr
	case <-ctx.Done():
		return fmt.Errorf("first connect of base %s: %w", p.b.cfg.Identity, ctx.Err())
	}
}

// kill ends the process: no more heartbeats, replies or in-flight work, and the connection
// is closed.
func (p *process) kill() {
	p.cancel()
	p.stopHeartbeats()
	p.markReady(ErrStopped)
	if p.http() {
		p.killHTTP()
		return
	}
	// Disconnect waits up to the quiesce time for in-flight work; a dying JVM does not.
	p.client.Disconnect(0)
}

func (p *process) markReady(err error) {
	p.readyOnce.Do(func() {
		p.readyErr = err
		close(p.ready)
	})
}

// onConnect runs on every (re)connect, in its own goroutine: it renews the subscriptions
// (the session is clean), and on the first connect of the process publishes
// queryBaseline and starts the heartbeats, like MqttMessageHandler.onConnectCompleted.
func (p *process) onConnect(c paho.Client) {
	if p.ctx.Err() != nil {
		return
	}
	b := p.b
	filters := map[string]byte{}
	for _, f := range protocol.CommandSubscriptions(b.cfg.Env, b.cfg.Identity) {
		filters[f] = 1
	}
	err := p.wait(c.SubscribeMultiple(filters, p.onMessage))
	if err != nil {
		err = fmt.Errorf("subscribe to commands: %w", err)
		b.logger().WithError(err).Warn("subscription failed")
		if !p.connected.Load() {
			p.markReady(err)
		}
		return
	}
	if !p.connected.CompareAndSwap(false, true) {
		b.logger().Info("reconnected to broker")
		return
	}
	meta := b.metadata()
	if err := p.publishData(protocol.SuffixQueryBaseline, meta); err != nil && !errors.Is(err, ErrSilenced) {
		p.markReady(fmt.Errorf("publish queryBaseline: %w", err))
		return
	}
	p.beat(time.Now())
	p.markReady(nil)
}

func (p *process) onConnectionLost(_ paho.Client, err error) {
	if p.ctx.Err() != nil {
		return
	}
	p.b.logger().WithError(err).Warn("connection to broker lost")
}

// wait waits for a paho token, the publish timeout or the end of the process.
func (p *process) wait(tok paho.Token) error {
	t := time.NewTimer(p.b.cfg.PublishTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-t.C:
		return errors.New("timed out waiting for the broker")
	case <-p.ctx.Done():
		return ErrStopped
	}
}

// publishData wraps data in an envelope stamped with Config.Now and publishes it on suffix,
// unless the base is silenced.
func (p *process) publishData(suffix string, data any) error {
	if p.http() {
		return p.sendHTTP(suffix, data)
	}
	if p.b.silenced.Load() {
		return ErrSilenced
	}
	payload, err := protocol.Encode(data, p.b.cfg.Now())
	if err != nil {
		return fmt.Errorf("encode %s: %w", suffix, err)
	}
	if err := p.publishTopic(p.b.Topic(suffix), payload); err != nil {
		return err
	}
	p.b.countPublished(suffix)
	return nil
}

// publishTopic publishes payload at QoS 1 without retain and waits for the PUBACK. Like
// the Java client without offline buffering, it fails at once when not connected.
func (p *process) publishTopic(topic string, payload []byte) error {
	if p.ctx.Err() != nil {
		return ErrStopped
	}
	if p.http() {
		return fmt.Errorf("%w: publish on %s", ErrNotSupported, topic)
	}
	if !p.client.IsConnectionOpen() {
		return ErrNotConnected
	}
	if err := p.wait(p.client.Publish(topic, 1, false, payload)); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

// reply publishes a reply and logs a failure: the handler has nobody to return it to.
func (p *process) reply(suffix string, data any, command string) {
	err := p.publishData(suffix, data)
	switch {
	case err == nil:
		p.b.logger().WithField("command", command).Debug("reply published")
	case errors.Is(err, ErrSilenced), errors.Is(err, ErrStopped):
		p.b.logger().WithField("command", command).Debug("reply dropped")
	default:
		p.b.logger().WithField("command", command).WithError(err).Warn("reply not published")
	}
}

// metadata is the base's BaseMetadata.
func (b *Base) metadata() protocol.BaseMetadata {
	return protocol.BaseMetadata{
		Identity:    b.cfg.Identity,
		Name:        b.cfg.Name,
		Version:     b.cfg.Version,
		ClusterName: b.cfg.ClusterName,
	}
}

// beat publishes one heartbeat and schedules the next one at due+interval (a fixed rate,
// like scheduleAtFixedRate). The schedule is a runtime timer, so an idle base has no
// goroutine of its own; the runtime's timer heap is the shared scheduler.
func (p *process) beat(due time.Time) {
	p.hbMu.Lock()
	if p.hbStopped || p.ctx.Err() != nil {
		p.hbMu.Unlock()
		return
	}
	next := due.Add(p.b.cfg.HeartbeatInterval)
	now := time.Now()
	if next.Before(now) {
		next = now
	}
	p.hbTimer = time.AfterFunc(next.Sub(now), func() { p.beat(next) })
	p.hbMu.Unlock()

	b := p.b
	status := protocol.BaseStatus{
		BaseMetadata:  b.metadata(),
		LocalIP:       b.cfg.LocalIP,
		LocalHostName: b.cfg.LocalHostName,
		Port:          p.port, // 0 over MQTT, the arklet HTTP port over HTTP
		State:         protocol.BaseStateActivated,
	}
	err := p.publishData(protocol.SuffixHeartbeat, status)
	switch {
	case err == nil:
		b.logger().Debug("heartbeat published")
	case errors.Is(err, ErrSilenced), errors.Is(err, ErrStopped):
	case b.cfg.HeartbeatStopsOnError:
		p.stopHeartbeats()
		b.logger().WithError(err).Warn("heartbeat failed, heartbeat task dead until restart")
	default:
		b.logger().WithError(err).Warn("heartbeat failed")
	}
}

// stopHeartbeats ends the heartbeat schedule of this process for good.
func (p *process) stopHeartbeats() {
	p.hbMu.Lock()
	defer p.hbMu.Unlock()
	p.hbStopped = true
	if p.hbTimer != nil {
		p.hbTimer.Stop()
	}
}

// onMessage dispatches a command on the last topic level, as the Java base does.
func (p *process) onMessage(_ paho.Client, m paho.Message) {
	topic, payload := m.Topic(), m.Payload()
	name := topic[strings.LastIndexByte(topic, '/')+1:]
	cmd := decodeCommand(name, topic, payload, p.b.cfg.Now())
	p.b.recv.add(cmd)

	logger := p.b.logger().WithField("command", name).WithField("topic", topic)
	if p.ctx.Err() != nil {
		return
	}
	if cmd.Malformed {
		// The Java base fails to parse the body, logs the exception and answers nothing.
		logger.Debug("malformed command ignored")
		return
	}
	logger.Debug("command received")
	switch name {
	case protocol.CommandInstallBiz:
		p.handleInstall(cmd.Bizs[0])
	case protocol.CommandUninstallBiz:
		p.handleUninstall(cmd.Bizs[0])
	case CommandBaseline:
		p.handleBaseline(cmd.Bizs)
	case protocol.CommandHealth:
		p.reply(protocol.SuffixHealth, p.health(), name)
	case protocol.CommandQueryAllBiz:
		p.reply(protocol.SuffixSimpleBiz, p.reg.simpleBiz(), name)
	default:
		logger.Debug("unsupported command ignored")
	}
}

// sleep waits d, or returns false if the process died first.
func (p *process) sleep(d time.Duration) bool {
	if d <= 0 {
		return p.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.ctx.Done():
		return false
	}
}
