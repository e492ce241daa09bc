package mqtt

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/tunnel"
)

// fuzzEnv is the env of the vectors (their identity is testBaseID).
const fuzzEnv = "dev"

// FuzzOnMessage feeds arbitrary topics and payloads to the tunnel's message callback, where
// the topic is parsed, the payload capped and decoded. Every message must end as exactly one
// event or one drop, never a panic; an event must come from a valid base ID equal to the
// topic's, and the received_total label must be a known suffix.
func FuzzOnMessage(f *testing.F) {
	for file, suffix := range vectorTopics {
		b, err := os.ReadFile(filepath.Join(vectorDir, file))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(protocol.Topic(fuzzEnv, testBaseID, suffix), b)
	}
	f.Add(protocol.Topic(fuzzEnv, testBaseID, protocol.CommandInstallBiz), []byte(`{}`))

	cfg := testConfig("127.0.0.1:1")
	cfg.Env = fuzzEnv
	cfg.Registerer = nil
	cfg.EventBuffer = 1
	cfg.MaxMessageAge = 100 * 365 * 24 * time.Hour // let old vectors through to the handlers
	tun, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	labels := append(baseSuffixes(), unknownSuffix)
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		before := droppedTotal(tun)
		tun.onMessage(nil, fakeMessage{topic: topic, payload: payload})
		drops := droppedTotal(tun) - before
		var events []tunnel.Event
		for len(tun.events) > 0 {
			events = append(events, <-tun.events)
		}
		if n := len(events) + int(drops); n != 1 {
			t.Fatalf("%q: %d events and %v drops, want exactly one of them", topic, len(events), drops)
		}
		if p := testutil.ToFloat64(tun.metrics.dropped.WithLabelValues(reasonPanic)); p != 0 {
			t.Fatalf("%q: handling panicked", topic)
		}
		if got := testutil.CollectAndCount(tun.metrics.received); got != len(labels) {
			t.Fatalf("%q: received_total has %d series, want %d", topic, got, len(labels))
		}
		for _, ev := range events {
			parts, err := protocol.ParseTopic(topic)
			if err != nil {
				t.Fatalf("event from unparsable topic %q: %v", topic, err)
			}
			if ev.Base() != parts.BaseID || protocol.ValidateBaseID(ev.Base()) != nil {
				t.Fatalf("event of base %q from topic %q", ev.Base(), topic)
			}
			if len(payload) > tun.cfg.MaxMessageBytes[parts.Suffix] {
				t.Fatalf("event from a %d-byte payload over the cap of %s", len(payload), parts.Suffix)
			}
		}
	})
}

// droppedTotal sums messages_dropped_total over all reasons.
func droppedTotal(tun *Tunnel) float64 {
	var sum float64
	for _, r := range dropReasons {
		sum += testutil.ToFloat64(tun.metrics.dropped.WithLabelValues(r))
	}
	return sum
}
