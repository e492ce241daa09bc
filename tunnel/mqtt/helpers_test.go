package mqtt

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/broker/mqtttest"
	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/tunnel"
)

// waitTimeout bounds every wait of these tests; nothing should take more than a fraction.
const waitTimeout = 15 * time.Second

// testBaseID is the identity of the vectors in testdata.
const testBaseID = "10.244.0.17"

// testNow is the fixed clock of the tunnels under test.
var testNow = time.Date(2025, 1, 15, 10, 10, 30, 0, time.UTC)

// randomName returns a fresh lower-case name, usable as env or base ID part.
func randomName(prefix string) string {
	return prefix + strings.ToLower(rand.Text()[:10])
}

// testConfig returns a tunnel config for a broker address, with a random env, the fixed
// clock and a private registry.
func testConfig(addr string) Config {
	return Config{
		BrokerURL:            "tcp://" + addr,
		Env:                  randomName("e"),
		Now:                  func() time.Time { return testNow },
		ConnectTimeout:       5 * time.Second,
		MaxReconnectInterval: 500 * time.Millisecond,
		Registerer:           prometheus.NewRegistry(),
	}
}

// runTunnel creates a tunnel and runs it until the test ends; Run must then return nil.
func runTunnel(t *testing.T, cfg Config) *Tunnel {
	t.Helper()
	tun, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- tun.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(waitTimeout):
			t.Error("Run did not return after cancel")
		}
	})
	return tun
}

// startTunnel runs a tunnel and waits until it is ready.
func startTunnel(t *testing.T, cfg Config) *Tunnel {
	t.Helper()
	tun := runTunnel(t, cfg)
	waitClosed(t, tun.Ready(), "tunnel ready")
	return tun
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// nextEvent returns the next event of tun.
func nextEvent(t *testing.T, tun *Tunnel) tunnel.Event {
	t.Helper()
	select {
	case ev := <-tun.Events():
		return ev
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for an event")
		return nil
	}
}

// wait waits for a paho token.
func wait(t *testing.T, tok paho.Token) error {
	t.Helper()
	return mqtttest.Wait(t, tok)
}

// fakeBase is a paho client playing a Java base: it publishes envelopes on its base topics
// and records the commands it receives.
type fakeBase struct {
	t      *testing.T
	client paho.Client
	env    string
	id     string
	got    chan paho.Message
}

// connectBase connects a fake base to brokerURL.
func connectBase(t *testing.T, brokerURL, env, id string, tlsCfg *tls.Config) *fakeBase {
	t.Helper()
	c, err := mqtttest.Connect(t, mqtttest.Options(brokerURL, "koupleless@@@"+id+"-").SetTLSConfig(tlsCfg))
	require.NoError(t, err)
	return &fakeBase{t: t, client: c, env: env, id: id, got: make(chan paho.Message, 64)}
}

// subscribeCommands subscribes, as a base does, to its command topics.
func (b *fakeBase) subscribeCommands() {
	b.t.Helper()
	filters := map[string]byte{}
	for _, f := range protocol.CommandSubscriptions(b.env, b.id) {
		filters[f] = 1
	}
	require.NoError(b.t, wait(b.t, b.client.SubscribeMultiple(filters, func(_ paho.Client, m paho.Message) {
		b.got <- m
	})))
}

// publish publishes payload on the base's suffix topic at QoS 1, as a base does.
func (b *fakeBase) publish(suffix string, payload []byte) {
	b.t.Helper()
	b.publishTopic(protocol.Topic(b.env, b.id, suffix), payload)
}

func (b *fakeBase) publishTopic(topic string, payload []byte) {
	b.t.Helper()
	require.NoError(b.t, wait(b.t, b.client.Publish(topic, 1, false, payload)))
}

// next returns the next command the base received.
func (b *fakeBase) next() paho.Message {
	b.t.Helper()
	select {
	case m := <-b.got:
		return m
	case <-time.After(waitTimeout):
		b.t.Fatal("timed out waiting for a command")
		return nil
	}
}

// vectorDir holds the protocol's payload vectors (docs/protocol.md, "Test vectors"), as a
// real base sends them; they are
// pkg/protocol's golden files, shared rather than copied.
var vectorDir = filepath.Join("..", "..", "pkg", "protocol", "testdata")

// vector reads a payload vector and restamps its publishTimestamp to at, keeping data
// byte for byte.
func vector(t *testing.T, name string, at time.Time) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(vectorDir, name))
	require.NoError(t, err)
	return restamp(t, raw, at)
}

func restamp(t *testing.T, payload []byte, at time.Time) []byte {
	t.Helper()
	var env map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(payload, &env))
	env["publishTimestamp"] = json.RawMessage(strconv.FormatInt(at.UnixMilli(), 10))
	out, err := json.Marshal(env)
	require.NoError(t, err)
	return out
}

// heartbeat returns a heartbeat envelope of id published at.
func heartbeat(t *testing.T, id string, at time.Time) []byte {
	t.Helper()
	p, err := protocol.Encode(protocol.BaseStatus{
		BaseMetadata: protocol.BaseMetadata{Identity: id, Name: "base", Version: "1.0.0", ClusterName: "default"},
		LocalIP:      id,
		State:        protocol.BaseStateActivated,
	}, at)
	require.NoError(t, err)
	return p
}

// dropped reads the dropped counter of reason.
func dropped(tun *Tunnel, reason string) float64 {
	return testutil.ToFloat64(tun.metrics.dropped.WithLabelValues(reason))
}

// fakeMessage is a paho.Message for calling onMessage directly with topics the
// subscriptions would never deliver.
type fakeMessage struct {
	topic   string
	payload []byte
}

func (m fakeMessage) Duplicate() bool   { return false }
func (m fakeMessage) Qos() byte         { return 1 }
func (m fakeMessage) Retained() bool    { return false }
func (m fakeMessage) Topic() string     { return m.topic }
func (m fakeMessage) MessageID() uint16 { return 1 }
func (m fakeMessage) Payload() []byte   { return m.payload }
func (m fakeMessage) Ack()              {}

// vectorTopics maps each base→controller vector to the suffix it is published on.
var vectorTopics = map[string]string{
	"heartbeat.json":                           protocol.SuffixHeartbeat,
	"query-baseline.json":                      protocol.SuffixQueryBaseline,
	"health-response.json":                     protocol.SuffixHealth,
	"simple-biz.json":                          protocol.SuffixSimpleBiz,
	"simple-biz-two-versions.json":             protocol.SuffixSimpleBiz,
	"all-biz-legacy.json":                      protocol.SuffixLegacyBiz,
	"biz-operation-install-ok.json":            protocol.SuffixBizOperation,
	"biz-operation-install-other-version.json": protocol.SuffixBizOperation,
	"biz-operation-install-repeat.json":        protocol.SuffixBizOperation,
	"biz-operation-install-failed.json":        protocol.SuffixBizOperation,
	"biz-operation-install-conflict.json":      protocol.SuffixBizOperation,
	"biz-operation-uninstall-ok.json":          protocol.SuffixBizOperation,
	"biz-operation-uninstall-not-found.json":   protocol.SuffixBizOperation,
	"batch-install-response.json":              protocol.SuffixBatchInstallResponse,
	"batch-install-response-repeat.json":       protocol.SuffixBatchInstallResponse,
}
