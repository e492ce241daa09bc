package basesim

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/broker"
	"github.com/moduleops/module-controller/pkg/broker/brokertest"
	"github.com/moduleops/module-controller/pkg/broker/mqtttest"
	"github.com/moduleops/module-controller/pkg/protocol"
)

const (
	waitFor = 10 * time.Second
	tick    = 5 * time.Millisecond
)

// startBroker runs an in-process broker on a free port for the test's lifetime and
// returns its tcp:// URL.
func startBroker(t *testing.T, cfg broker.Config) string {
	t.Helper()
	return brokertest.Start(t, cfg).URL()
}

// randomID returns a base identity unique to this test run.
func randomID(prefix string) string {
	return prefix + "-" + strings.ToLower(rand.Text()[:8])
}

// startBase creates and starts a base for the test's lifetime.
func startBase(t *testing.T, cfg Config) *Base {
	t.Helper()
	if cfg.Identity == "" {
		cfg.Identity = randomID("base")
	}
	b, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, b.Start(t.Context()))
	t.Cleanup(b.Stop)
	return b
}

// message is one MQTT message the fake controller received.
type message struct {
	topic   string
	payload []byte
}

// controller is a paho client playing the module-controller: it receives everything
// bases publish under one env and sends commands.
type controller struct {
	t      *testing.T
	env    string
	client paho.Client

	mu   sync.Mutex
	msgs []message
}

func newController(t *testing.T, brokerURL, env string) *controller {
	t.Helper()
	c := &controller{t: t, env: env}
	client, err := mqtttest.Connect(t, mqtttest.Options(brokerURL, "ctrl-").SetOrderMatters(true))
	require.NoError(t, err)
	c.client = client
	filter := protocol.EnvPrefix(env) + "/+/base/#"
	c.wait(c.client.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.msgs = append(c.msgs, message{topic: m.Topic(), payload: slices.Clone(m.Payload())})
	}))
	return c
}

func (c *controller) wait(tok paho.Token) {
	c.t.Helper()
	mqtttest.Require(c.t, tok)
}

// send publishes a command body to a base, QoS 1, not retained.
func (c *controller) send(baseID, suffix string, payload []byte) {
	c.t.Helper()
	c.wait(c.client.Publish(protocol.Topic(c.env, baseID, suffix), 1, false, payload))
}

// sendJSON marshals v and sends it.
func (c *controller) sendJSON(baseID, suffix string, v any) {
	c.t.Helper()
	b, err := protocol.EncodeCommand(v)
	require.NoError(c.t, err)
	c.send(baseID, suffix, b)
}

// on returns the messages received so far on a base's suffix.
func (c *controller) on(baseID, suffix string) []message {
	topic := protocol.Topic(c.env, baseID, suffix)
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []message
	for _, m := range c.msgs {
		if m.topic == topic {
			out = append(out, m)
		}
	}
	return out
}

// count returns how many messages arrived on a base's suffix.
func (c *controller) count(baseID, suffix string) int {
	return len(c.on(baseID, suffix))
}

// await waits until message number i (0-based) arrives on a base's suffix and returns it.
func (c *controller) await(baseID, suffix string, i int) []byte {
	c.t.Helper()
	require.Eventually(c.t, func() bool { return c.count(baseID, suffix) > i }, waitFor, tick,
		"no message %d on %s", i, suffix)
	return c.on(baseID, suffix)[i].payload
}

// distinctBases returns the base IDs that published on suffix.
func (c *controller) distinctBases(suffix string) map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := map[string]bool{}
	for _, m := range c.msgs {
		p, err := protocol.ParseTopic(m.topic)
		if err == nil && p.Suffix == suffix {
			ids[p.BaseID] = true
		}
	}
	return ids
}

// vector reads a test vector from testdata.
func vector(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

// decodeAny unmarshals JSON into generic values.
func decodeAny(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal(b, &v), string(b))
	return v
}

// requireSameShape asserts that got has the structure of the vector want: the same keys
// in every object and the same JSON kind for every value; array elements of got are
// compared with the first element of want.
func requireSameShape(t *testing.T, want, got []byte) {
	t.Helper()
	var diffs []string
	shapeDiff("$", decodeAny(t, want), decodeAny(t, got), &diffs)
	require.Empty(t, diffs, "got %s", got)
}

func shapeDiff(path string, want, got any, diffs *[]string) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			*diffs = append(*diffs, fmt.Sprintf("%s: want object, got %T", path, got))
			return
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				*diffs = append(*diffs, fmt.Sprintf("%s: missing key %q", path, k))
				continue
			}
			shapeDiff(path+"."+k, wv, gv, diffs)
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				*diffs = append(*diffs, fmt.Sprintf("%s: extra key %q", path, k))
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			*diffs = append(*diffs, fmt.Sprintf("%s: want array, got %T", path, got))
			return
		}
		if len(w) == 0 {
			return
		}
		for i, gv := range g {
			shapeDiff(fmt.Sprintf("%s[%d]", path, i), w[0], gv, diffs)
		}
	default:
		if fmt.Sprintf("%T", want) != fmt.Sprintf("%T", got) {
			*diffs = append(*diffs, fmt.Sprintf("%s: want %T, got %T", path, want, got))
		}
	}
}

// decodeEnvelope decodes a base→controller payload into T.
func decodeEnvelope[T any](t *testing.T, payload []byte) protocol.Envelope[T] {
	t.Helper()
	e, err := protocol.Decode[T](payload)
	require.NoError(t, err, string(payload))
	return e
}

// bizModel returns a BizModel for name:version with a plausible URL.
func bizModel(name, version string) protocol.BizModel {
	return protocol.BizModel{
		BizName:    name,
		BizVersion: version,
		BizURL:     "file:///opt/bizs/" + name + "-" + version + "-ark-biz.jar",
	}
}

// states returns "name:version=STATE" for each biz, for compact assertions.
func states(bizs []Biz) []string {
	out := make([]string, 0, len(bizs))
	for _, z := range bizs {
		out = append(out, z.Key()+"="+string(z.State))
	}
	return out
}
