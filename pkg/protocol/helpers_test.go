package protocol_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// Values shared by the vectors in testdata (see testdata/README.md).
const (
	vecEnv    = "dev"
	vecBaseID = "10.244.0.17"
)

// readVector returns a file of testdata.
func readVector(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

// decodeAs decodes an envelope of T and returns its data as any.
func decodeAs[T any](payload []byte) (any, time.Time, error) {
	e, err := protocol.Decode[T](payload)
	if err != nil {
		return nil, time.Time{}, err
	}
	return e.Data, e.PublishedAt(), nil
}

// decodeFor decodes a base→controller payload by the suffix of its topic, the way a tunnel
// routes messages.
func decodeFor(suffix string, payload []byte) (any, time.Time, error) {
	switch suffix {
	case protocol.SuffixHeartbeat:
		return decodeAs[protocol.BaseStatus](payload)
	case protocol.SuffixQueryBaseline:
		return decodeAs[protocol.BaseMetadata](payload)
	case protocol.SuffixHealth:
		return decodeAs[protocol.HealthReply](payload)
	case protocol.SuffixSimpleBiz:
		return decodeAs[[]protocol.SimpleBizInfo](payload)
	case protocol.SuffixLegacyBiz:
		return decodeAs[protocol.LegacyBizReply](payload)
	case protocol.SuffixBizOperation:
		return decodeAs[protocol.BizOperation](payload)
	case protocol.SuffixBatchInstallResponse:
		return decodeAs[protocol.BatchInstallResult](payload)
	}
	return nil, time.Time{}, fmt.Errorf("%w: %s", protocol.ErrUnknownTopic, suffix)
}

// matchFilter reports whether an MQTT topic filter matches a topic ('+' one level, '#' the
// rest), so tests can check subscriptions against the topics actually used.
func matchFilter(filter, topic string) bool {
	f := strings.Split(filter, "/")
	l := strings.Split(topic, "/")
	for i, level := range f {
		if level == "#" {
			return true
		}
		if i >= len(l) || (level != "+" && level != l[i]) {
			return false
		}
	}
	return len(f) == len(l)
}
