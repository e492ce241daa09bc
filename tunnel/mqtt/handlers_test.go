package mqtt

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"
	logruslogger "github.com/virtual-kubelet/virtual-kubelet/log/logrus"

	"github.com/moduleops/module-controller/pkg/broker/brokertest"
	"github.com/moduleops/module-controller/pkg/protocol"
	"github.com/moduleops/module-controller/tunnel"
)

func TestHeartbeatBecomesEvent(t *testing.T) {
	b := brokertest.Start(t, brokerConfig())
	tun := startTunnel(t, testConfig(b.Addr()))
	base := connectBase(t, "tcp://"+b.Addr(), tun.Env(), testBaseID, nil)

	published := testNow.Add(-time.Second)
	base.publish(protocol.SuffixHeartbeat, vector(t, "heartbeat.json", published))

	ev := nextEvent(t, tun)
	hb, ok := ev.(tunnel.BaseHeartbeat)
	require.True(t, ok, "got %T", ev)
	require.Equal(t, testBaseID, hb.Base())
	require.True(t, hb.Published().Equal(published), "published %s, want %s", hb.Published(), published)
	require.Equal(t, protocol.BaseStatus{
		BaseMetadata: protocol.BaseMetadata{
			Identity: testBaseID, Name: "base", Version: "1.0.0", ClusterName: "default",
		},
		LocalIP:       testBaseID,
		LocalHostName: "base-7c9d8f6b5-x2k4p",
		Port:          0,
		State:         "activated",
	}, hb.Status)
	require.True(t, hb.Status.Activated())
	require.Equal(t, 1.0, testutil.ToFloat64(tun.metrics.received.WithLabelValues(protocol.SuffixHeartbeat)))
}

func TestEachTopicBecomesItsEvent(t *testing.T) {
	b := brokertest.Start(t, brokerConfig())
	tun := startTunnel(t, testConfig(b.Addr()))
	base := connectBase(t, "tcp://"+b.Addr(), tun.Env(), testBaseID, nil)

	fresh := testNow.Add(-9 * time.Second) // inside the 10 s window
	old := testNow.Add(-time.Hour)         // replies to commands have no age limit
	cases := []struct {
		suffix  string
		payload []byte
		check   func(t *testing.T, ev tunnel.Event)
	}{
		{protocol.SuffixQueryBaseline, vector(t, "query-baseline.json", fresh), func(t *testing.T, ev tunnel.Event) {
			q := ev.(tunnel.BaselineQuery)
			require.Equal(t, protocol.BaseMetadata{Identity: testBaseID, Name: "base", Version: "1.0.0", ClusterName: "default"}, q.Metadata)
		}},
		{protocol.SuffixHealth, vector(t, "health-response.json", fresh), func(t *testing.T, ev tunnel.Event) {
			h := ev.(tunnel.BaseHealth)
			require.True(t, h.Health.Succeeded())
			require.Equal(t, protocol.BizActivated, h.Health.Data.HealthData.MasterBizInfo.State())
		}},
		{protocol.SuffixSimpleBiz, vector(t, "simple-biz.json", fresh), func(t *testing.T, ev tunnel.Event) {
			s := ev.(tunnel.BizStatus)
			require.Len(t, s.Bizs, 2)
			require.Equal(t, "biz1:0.0.1-SNAPSHOT", s.Bizs[0].Key())
			require.Equal(t, protocol.BizActivated, s.Bizs[1].BizState())
		}},
		{protocol.SuffixBizOperation, vector(t, "biz-operation-install-ok.json", old), func(t *testing.T, ev tunnel.Event) {
			op := ev.(tunnel.BizOperationResult)
			require.Equal(t, protocol.CommandInstallBiz, op.Operation.Command)
			require.Equal(t, "biz1:0.0.1-SNAPSHOT", op.Operation.Key())
			require.Equal(t, protocol.OutcomeSucceeded, op.Operation.Outcome())
		}},
		{protocol.SuffixBatchInstallResponse, vector(t, "batch-install-response.json", old), func(t *testing.T, ev tunnel.Event) {
			r := ev.(tunnel.BatchInstallResult)
			require.Equal(t, protocol.CommandBatchInstallBiz, r.Result.Command)
			require.Len(t, r.Result.Installed(), 2)
		}},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.suffix, "/", "_"), func(t *testing.T) {
			base.publish(tc.suffix, tc.payload)
			ev := nextEvent(t, tun)
			require.Equal(t, testBaseID, ev.Base())
			tc.check(t, ev)
			require.Equal(t, 1.0, testutil.ToFloat64(tun.metrics.received.WithLabelValues(tc.suffix)))
		})
	}
}

// TestBadMessagesAreDropped publishes each bad message followed, on the same connection,
// by a good heartbeat of another base. The broker forwards one connection's messages in
// order and paho delivers in order, so when the heartbeat's event arrives the bad message
// has been handled: it must have produced no event and exactly one drop.
func TestBadMessagesAreDropped(t *testing.T) {
	b := brokertest.Start(t, brokerConfig())
	tun := startTunnel(t, testConfig(b.Addr()))
	base := connectBase(t, "tcp://"+b.Addr(), tun.Env(), testBaseID, nil)
	const markerID = "10.0.0.1"
	markerTopic := protocol.Topic(tun.Env(), markerID, protocol.SuffixHeartbeat)

	fresh := testNow.Add(-time.Second)
	cases := []struct {
		name    string
		topic   string // default: the base's heartbeat topic
		payload []byte
		reason  string
	}{
		{name: "bad json", payload: []byte(`{"data":`), reason: "malformed"},
		{name: "not an object", payload: []byte(`[1,2,3]`), reason: "malformed"},
		{name: "empty", payload: []byte{}, reason: "malformed"},
		{name: "no data", payload: []byte(`{"publishTimestamp":1736935812345}`), reason: "malformed"},
		{name: "wrong types", reason: "malformed",
			payload: []byte(`{"data":{"baseMetadata":"x","port":"zero"},"publishTimestamp":1736935829000}`)},
		{name: "oversized", payload: oversized(t), reason: "too_large"},
		{name: "missing identity", reason: "missing_field",
			payload: restamp(t, []byte(`{"data":{"baseMetadata":{"name":"base"},"state":"activated"},"publishTimestamp":1}`), fresh)},
		{name: "invalid identity", payload: heartbeat(t, "10.0.0.17/x", fresh), reason: "invalid_base_id"},
		{name: "spoofed identity", payload: heartbeat(t, "10.0.0.99", fresh), reason: "base_id_mismatch"},
		{name: "spoofed baseline query", topic: protocol.Topic(tun.Env(), testBaseID, protocol.SuffixQueryBaseline),
			payload: restamp(t, []byte(`{"data":{"identity":"10.0.0.99"},"publishTimestamp":1}`), fresh), reason: "base_id_mismatch"},
		{name: "invalid topic identity", topic: protocol.Topic(tun.Env(), "Not_Valid", protocol.SuffixHeartbeat),
			payload: heartbeat(t, "Not_Valid", fresh), reason: "invalid_base_id"},
		{name: "stale at the limit", payload: heartbeat(t, testBaseID, testNow.Add(-DefaultMaxMessageAge)), reason: "stale"},
		{name: "stale", payload: heartbeat(t, testBaseID, testNow.Add(-time.Hour)), reason: "stale"},
		{name: "stale health", topic: protocol.Topic(tun.Env(), testBaseID, protocol.SuffixHealth),
			payload: vector(t, "health-response.json", testNow.Add(-11*time.Second)), reason: "stale"},
		{name: "stale inventory", topic: protocol.Topic(tun.Env(), testBaseID, protocol.SuffixSimpleBiz),
			payload: vector(t, "simple-biz.json", testNow.Add(-11*time.Second)), reason: "stale"},
		{name: "legacy inventory", topic: protocol.Topic(tun.Env(), testBaseID, protocol.SuffixLegacyBiz),
			payload: vector(t, "all-biz-legacy.json", fresh), reason: "legacy"},
		{name: "operation without command", topic: protocol.Topic(tun.Env(), testBaseID, protocol.SuffixBizOperation),
			payload: []byte(`{"data":{"response":{"code":"SUCCESS"}},"publishTimestamp":1}`), reason: "missing_field"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			topic := tc.topic
			if topic == "" {
				topic = protocol.Topic(tun.Env(), testBaseID, protocol.SuffixHeartbeat)
			}
			before := dropped(tun, tc.reason)
			base.publishTopic(topic, tc.payload)
			base.publishTopic(markerTopic, heartbeat(t, markerID, fresh))

			ev := nextEvent(t, tun)
			require.Equal(t, markerID, ev.Base(), "the bad message produced an event: %#v", ev)
			require.Equal(t, before+1, dropped(tun, tc.reason))
		})
	}
	require.True(t, tun.Connected(), "garbage must not break the connection")
}

func oversized(t *testing.T) []byte {
	t.Helper()
	pad := bytes.Repeat([]byte("x"), protocol.MaxPayloadSize)
	p := heartbeat(t, testBaseID, testNow)
	return append(p[:len(p)-1], append([]byte(`,"pad":"`), append(pad, '"', '}')...)...)
}

// TestUndeliverableTopics feeds onMessage directly with topics the wildcard subscriptions
// never deliver, and a clock that panics.
func TestUndeliverableTopicsAndPanics(t *testing.T) {
	cfg := testConfig("127.0.0.1:1")
	tun, err := New(cfg)
	require.NoError(t, err)
	hb := heartbeat(t, testBaseID, testNow)

	cases := []struct {
		topic  string
		reason string
	}{
		{protocol.Topic("other", testBaseID, protocol.SuffixHeartbeat), "wrong_env"},
		{protocol.Topic(tun.Env(), testBaseID, protocol.CommandHealth), "unknown_topic"},
		{protocol.Topic(tun.Env(), testBaseID, "base/unknown"), "unknown_topic"},
		{"something/else", "unknown_topic"},
		{"", "unknown_topic"},
	}
	for _, tc := range cases {
		before := dropped(tun, tc.reason)
		tun.onMessage(nil, fakeMessage{topic: tc.topic, payload: hb})
		require.Equal(t, before+1, dropped(tun, tc.reason), tc.topic)
	}
	require.Equal(t, 4.0, testutil.ToFloat64(tun.metrics.received.WithLabelValues(unknownSuffix)))

	cfg.Now = func() time.Time { panic("clock exploded") }
	cfg.Registerer = nil
	tun, err = New(cfg)
	require.NoError(t, err)
	require.NotPanics(t, func() {
		tun.onMessage(nil, fakeMessage{topic: protocol.Topic(tun.Env(), testBaseID, protocol.SuffixHeartbeat), payload: hb})
	})
	require.Equal(t, 1.0, dropped(tun, reasonPanic))
	require.Empty(t, tun.events)
}

// TestDropIsLoggedWithFields checks the debug log of a dropped message.
func TestDropIsLoggedWithFields(t *testing.T) {
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	tun, err := New(testConfig("127.0.0.1:1"))
	require.NoError(t, err)
	tun.log = logruslogger.FromLogrus(logrus.NewEntry(logger))

	topic := protocol.Topic(tun.Env(), testBaseID, protocol.SuffixHeartbeat)
	tun.onMessage(nil, fakeMessage{topic: topic, payload: heartbeat(t, "10.0.0.99", testNow)})

	e := hook.LastEntry()
	require.NotNil(t, e)
	require.Equal(t, logrus.DebugLevel, e.Level)
	require.Equal(t, "dropped mqtt message", e.Message)
	require.Equal(t, topic, e.Data["topic"])
	require.Equal(t, testBaseID, e.Data["base"])
	require.Equal(t, "base_id_mismatch", e.Data["reason"])
	require.Error(t, e.Data[logrus.ErrorKey].(error))
}

// TestPerTopicSizeCaps drops a payload over its topic's cap before decoding, and keeps one
// at the cap.
func TestPerTopicSizeCaps(t *testing.T) {
	cfg := testConfig("127.0.0.1:1")
	hb := heartbeat(t, testBaseID, testNow)
	cfg.MaxMessageBytes = map[string]int{protocol.SuffixHeartbeat: len(hb)}
	tun, err := New(cfg)
	require.NoError(t, err)
	topic := protocol.Topic(tun.Env(), testBaseID, protocol.SuffixHeartbeat)

	tun.onMessage(nil, fakeMessage{topic: topic, payload: hb})
	require.Equal(t, testBaseID, (<-tun.Events()).Base())

	before := dropped(tun, "too_large")
	over := append(append([]byte{}, hb[:len(hb)-1]...), []byte(` }`)...) // still valid JSON
	tun.onMessage(nil, fakeMessage{topic: topic, payload: over})
	require.Equal(t, before+1, dropped(tun, "too_large"))
	require.Empty(t, tun.events)

	// The other topics keep their defaults.
	require.Equal(t, DefaultMaxStatusBytes, tun.cfg.MaxMessageBytes[protocol.SuffixSimpleBiz])
}

// TestDefaultSizeCapsFitTheVectors keeps at least tenfold headroom over every real payload.
func TestDefaultSizeCapsFitTheVectors(t *testing.T) {
	caps := DefaultMaxMessageBytes()
	for file, suffix := range vectorTopics {
		raw, err := os.ReadFile(filepath.Join(vectorDir, file))
		require.NoError(t, err)
		require.LessOrEqual(t, 10*len(raw), caps[suffix], "%s on %s", file, suffix)
	}
	require.ElementsMatch(t, baseSuffixes(), slices.Collect(maps.Keys(caps)))
	for _, n := range caps {
		require.LessOrEqual(t, n, protocol.MaxPayloadSize)
	}
}
