package protocol_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// heartbeat returns a heartbeat payload whose identity is the given JSON value.
func heartbeat(identity string) string {
	return `{"data":{"baseMetadata":{"clusterName":"default","identity":` + identity +
		`,"name":"base","version":"1.0.0"},"localHostName":"h","localIP":"10.0.0.1","port":0,` +
		`"state":"activated"},"publishTimestamp":1736935812345}`
}

func TestDecodeMalformed(t *testing.T) {
	valid := readVector(t, "heartbeat.json")
	padded := func(n int) []byte { // valid JSON of exactly n bytes
		return append(bytes.Clone(valid), bytes.Repeat([]byte(" "), n-len(valid))...)
	}
	tests := []struct {
		name    string
		suffix  string
		payload string
		want    error
	}{
		{"empty", protocol.SuffixHeartbeat, ``, protocol.ErrMalformed},
		{"bad json", protocol.SuffixHeartbeat, `{"data":`, protocol.ErrMalformed},
		{"trailing garbage", protocol.SuffixHeartbeat, string(valid) + `}`, protocol.ErrMalformed},
		{"not an object", protocol.SuffixHeartbeat, `[]`, protocol.ErrMalformed},
		{"json null", protocol.SuffixHeartbeat, `null`, protocol.ErrMalformed},
		{"missing data", protocol.SuffixHeartbeat, `{"publishTimestamp":1736935812345}`, protocol.ErrMalformed},
		{"null data", protocol.SuffixHeartbeat, `{"data":null,"publishTimestamp":1736935812345}`, protocol.ErrMalformed},
		{"missing publishTimestamp", protocol.SuffixHeartbeat,
			`{"data":{"baseMetadata":{"identity":"10.0.0.1"}}}`, protocol.ErrMalformed},
		{"zero publishTimestamp", protocol.SuffixHeartbeat,
			`{"data":{"baseMetadata":{"identity":"10.0.0.1"}},"publishTimestamp":0}`, protocol.ErrMalformed},
		{"negative publishTimestamp", protocol.SuffixHeartbeat,
			`{"data":{"baseMetadata":{"identity":"10.0.0.1"}},"publishTimestamp":-5}`, protocol.ErrMalformed},
		{"publishTimestamp as string", protocol.SuffixHeartbeat,
			`{"data":{"baseMetadata":{"identity":"10.0.0.1"}},"publishTimestamp":"1736935812345"}`, protocol.ErrMalformed},
		{"publishTimestamp fractional", protocol.SuffixHeartbeat,
			`{"data":{"baseMetadata":{"identity":"10.0.0.1"}},"publishTimestamp":1.5}`, protocol.ErrMalformed},
		{"identity wrong type", protocol.SuffixHeartbeat, heartbeat(`17`), protocol.ErrMalformed},
		{"port wrong type", protocol.SuffixHeartbeat,
			`{"data":{"baseMetadata":{"identity":"10.0.0.1"},"port":"0"},"publishTimestamp":1}`, protocol.ErrMalformed},
		{"data wrong type", protocol.SuffixHeartbeat, `{"data":"x","publishTimestamp":1}`, protocol.ErrMalformed},
		{"missing identity", protocol.SuffixHeartbeat,
			`{"data":{"baseMetadata":{"name":"base"},"state":"activated"},"publishTimestamp":1}`, protocol.ErrMissingField},
		{"missing baseMetadata", protocol.SuffixHeartbeat,
			`{"data":{"state":"activated"},"publishTimestamp":1}`, protocol.ErrMissingField},
		{"empty identity", protocol.SuffixHeartbeat, heartbeat(`""`), protocol.ErrMissingField},
		{"identity with slash", protocol.SuffixHeartbeat, heartbeat(`"10.0.0.1/base"`), protocol.ErrInvalidBaseID},
		{"identity with plus", protocol.SuffixHeartbeat, heartbeat(`"10.0.0.1+1"`), protocol.ErrInvalidBaseID},
		{"identity with hash", protocol.SuffixHeartbeat, heartbeat(`"#"`), protocol.ErrInvalidBaseID},
		{"identity upper case", protocol.SuffixHeartbeat, heartbeat(`"Base-A"`), protocol.ErrInvalidBaseID},
		{"baseline query identity with hash", protocol.SuffixQueryBaseline,
			`{"data":{"clusterName":"default","identity":"a#b"},"publishTimestamp":1}`, protocol.ErrInvalidBaseID},
		{"baseline query without identity", protocol.SuffixQueryBaseline,
			`{"data":{"clusterName":"default"},"publishTimestamp":1}`, protocol.ErrMissingField},
		{"oversized", protocol.SuffixHeartbeat, string(padded(protocol.MaxPayloadSize + 1)), protocol.ErrTooLarge},
		{"oversized garbage", protocol.SuffixSimpleBiz, strings.Repeat("x", protocol.MaxPayloadSize+1), protocol.ErrTooLarge},
		{"simpleBiz not a list", protocol.SuffixSimpleBiz, `{"data":{"name":"biz1"},"publishTimestamp":1}`, protocol.ErrMalformed},
		{"simpleBiz short array form", protocol.SuffixSimpleBiz, `{"data":[["biz1","1.0"]],"publishTimestamp":1}`, protocol.ErrMalformed},
		{"simpleBiz array form name not a string", protocol.SuffixSimpleBiz,
			`{"data":[[1,"1.0","3"]],"publishTimestamp":1}`, protocol.ErrMalformed},
		{"simpleBiz array form state an object", protocol.SuffixSimpleBiz,
			`{"data":[["biz1","1.0",{}]],"publishTimestamp":1}`, protocol.ErrMalformed},
		{"health without code", protocol.SuffixHealth, `{"data":{"data":{}},"publishTimestamp":1}`, protocol.ErrMissingField},
		{"health metaspace as string", protocol.SuffixHealth,
			`{"data":{"code":"SUCCESS","data":{"healthData":{"jvm":{"java max metaspace":"-1"}}}},"publishTimestamp":1}`,
			protocol.ErrMalformed},
		{"bizOperation without command", protocol.SuffixBizOperation,
			`{"data":{"response":{"code":"SUCCESS"}},"publishTimestamp":1}`, protocol.ErrMissingField},
		{"bizOperation unknown command", protocol.SuffixBizOperation,
			`{"data":{"command":"switchBiz","response":{"code":"SUCCESS"}},"publishTimestamp":1}`, protocol.ErrMalformed},
		{"bizOperation without response", protocol.SuffixBizOperation,
			`{"data":{"command":"installBiz"},"publishTimestamp":1}`, protocol.ErrMissingField},
		{"batch without response code", protocol.SuffixBatchInstallResponse,
			`{"data":{"command":"batchInstallBiz","response":{}},"publishTimestamp":1}`, protocol.ErrMissingField},
		{"batch entries wrong type", protocol.SuffixBatchInstallResponse,
			`{"data":{"command":"batchInstallBiz","response":{"code":"FAILED","data":{"bizUrlToResponse":[]}}},"publishTimestamp":1}`,
			protocol.ErrMalformed},
		{"legacy biz data not a list", protocol.SuffixLegacyBiz,
			`{"data":{"code":"SUCCESS","data":{}},"publishTimestamp":1}`, protocol.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := decodeFor(tt.suffix, []byte(tt.payload))
			require.ErrorIs(t, err, tt.want)
			require.Equal(t, protocol.Reason(tt.want), protocol.Reason(err))
		})
	}

	t.Run("exactly MaxPayloadSize", func(t *testing.T) {
		_, err := protocol.Decode[protocol.BaseStatus](padded(protocol.MaxPayloadSize))
		require.NoError(t, err)
	})
}

func TestDecodeLenient(t *testing.T) {
	tests := []struct {
		name    string
		suffix  string
		payload string
		check   func(t *testing.T, data any)
	}{
		{
			name:    "unknown fields ignored",
			suffix:  protocol.SuffixQueryBaseline,
			payload: `{"data":{"identity":"10.0.0.1","future":{"x":[1]}},"extra":true,"publishTimestamp":1}`,
			check: func(t *testing.T, data any) {
				require.Equal(t, "10.0.0.1", data.(protocol.BaseMetadata).Identity)
			},
		},
		{
			name:    "non-activated heartbeat",
			suffix:  protocol.SuffixHeartbeat,
			payload: `{"data":{"baseMetadata":{"identity":"10.0.0.1"},"state":"DEACTIVATED"},"publishTimestamp":1}`,
			check: func(t *testing.T, data any) {
				require.False(t, data.(protocol.BaseStatus).Activated())
			},
		},
		{
			name:    "heartbeat state upper case",
			suffix:  protocol.SuffixHeartbeat,
			payload: `{"data":{"baseMetadata":{"identity":"unknown-ab1cd"},"state":"ACTIVATED"},"publishTimestamp":1}`,
			check: func(t *testing.T, data any) {
				require.True(t, data.(protocol.BaseStatus).Activated())
			},
		},
		{
			name:    "empty biz inventory",
			suffix:  protocol.SuffixSimpleBiz,
			payload: `{"data":[],"publishTimestamp":1}`,
			check: func(t *testing.T, data any) {
				require.Empty(t, data.([]protocol.SimpleBizInfo))
			},
		},
		{
			name:   "legacy simpleBiz array form and null record",
			suffix: protocol.SuffixSimpleBiz,
			payload: `{"data":[["biz1","0.0.1","3"],["biz2","0.0.1",4],` +
				`{"name":"biz3","version":"1","state":"resolved","latestStateRecord":null}],"publishTimestamp":1}`,
			check: func(t *testing.T, data any) {
				require.Equal(t, []protocol.SimpleBizInfo{
					{Name: "biz1", Version: "0.0.1", State: "3"},
					{Name: "biz2", Version: "0.0.1", State: "4"},
					{Name: "biz3", Version: "1", State: "resolved"},
				}, data)
				list := data.([]protocol.SimpleBizInfo)
				require.Equal(t, protocol.BizActivated, list[0].BizState())
				require.Equal(t, protocol.BizDeactivated, list[1].BizState())
				require.Equal(t, protocol.BizResolved, list[2].BizState())
				require.True(t, list[2].ChangedAt().IsZero())
			},
		},
		{
			name:    "reference mock's all-zero state record",
			suffix:  protocol.SuffixSimpleBiz,
			payload: `{"data":[{"name":"biz1","version":"1","state":"3","latestStateRecord":{"changeTime":0}}],"publishTimestamp":1}`,
			check: func(t *testing.T, data any) {
				b := data.([]protocol.SimpleBizInfo)[0]
				require.Equal(t, protocol.BizActivated, b.BizState())
				require.True(t, b.ChangedAt().IsZero(), "0 means unknown: use the publish time")
			},
		},
		{
			name:    "failed health reply without data",
			suffix:  protocol.SuffixHealth,
			payload: `{"data":{"code":"FAILED","message":"boom"},"publishTimestamp":1}`,
			check: func(t *testing.T, data any) {
				r := data.(protocol.HealthReply)
				require.False(t, r.Succeeded())
				require.Equal(t, "boom", r.Message)
				require.Zero(t, r.Data)
			},
		},
		{
			name:   "batch that threw as a whole",
			suffix: protocol.SuffixBatchInstallResponse,
			payload: `{"data":{"command":"batchInstallBiz","response":{"code":"FAILED","message":"bizUrl is blank",` +
				`"data":{"code":"FAILED","message":"java.lang.IllegalArgumentException: bizUrl is blank\n\tat x.y(Z.java:1)\n"}}},` +
				`"publishTimestamp":1}`,
			check: func(t *testing.T, data any) {
				r := data.(protocol.BatchInstallResult)
				require.Equal(t, protocol.OutcomeFailed, r.Outcome())
				require.Empty(t, r.Installed())
				require.Equal(t, "java.lang.IllegalArgumentException: bizUrl is blank", r.ErrorMessage())
			},
		},
		{
			name:   "batch lock conflict",
			suffix: protocol.SuffixBatchInstallResponse,
			payload: `{"data":{"command":"batchInstallBiz","response":{"code":"FAILED","message":"FAILED:null:null ` +
				`batchInstallBiz conflict, exist unfinished command(batchInstallBiz) for this biz"}},"publishTimestamp":1}`,
			check: func(t *testing.T, data any) {
				r := data.(protocol.BatchInstallResult)
				require.Equal(t, protocol.OutcomeConflict, r.Outcome())
				require.Empty(t, r.Installed())
			},
		},
		{
			name:   "batch with one failed and one installed entry",
			suffix: protocol.SuffixBatchInstallResponse,
			payload: `{"data":{"command":"batchInstallBiz","response":{"code":"FAILED","message":"install biz not success!",` +
				`"data":{"code":"FAILED","message":"batch install failed","bizUrlToResponse":{` +
				`"u2":{"code":"FAILED","message":"internal exception: boom"},` +
				`"u1":{"code":"SUCCESS","bizInfos":[{"bizName":"biz1","bizVersion":"1","bizState":"ACTIVATED"}]}}}}},` +
				`"publishTimestamp":1}`,
			check: func(t *testing.T, data any) {
				r := data.(protocol.BatchInstallResult)
				require.Equal(t, protocol.OutcomeFailed, r.Outcome())
				require.Equal(t, []protocol.BizInfo{{BizName: "biz1", BizVersion: "1", BizState: "ACTIVATED"}}, r.Installed())
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, _, err := decodeFor(tt.suffix, []byte(tt.payload))
			require.NoError(t, err)
			tt.check(t, data)
		})
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	at := time.Date(2025, 1, 15, 10, 10, 12, 345_678_901, time.UTC)
	status := protocol.BaseStatus{
		BaseMetadata: protocol.BaseMetadata{Identity: "10.0.0.1", Name: "base", Version: "1", ClusterName: "c"},
		State:        protocol.BaseStateActivated,
	}
	b, err := protocol.Encode(status, at)
	require.NoError(t, err)
	require.JSONEq(t, `{"data":{"baseMetadata":{"identity":"10.0.0.1","name":"base","version":"1","clusterName":"c"},`+
		`"localIP":"","localHostName":"","port":0,"state":"activated"},"publishTimestamp":1736935812345}`, string(b))

	e, err := protocol.Decode[protocol.BaseStatus](b)
	require.NoError(t, err)
	require.Equal(t, status, e.Data)
	require.Equal(t, at.Truncate(time.Millisecond), e.PublishedAt(), "millisecond precision")

	_, err = protocol.Encode(status, time.Time{})
	require.ErrorIs(t, err, protocol.ErrMalformed, "a zero time cannot be decoded again")

	_, err = protocol.Encode(strings.Repeat("x", protocol.MaxPayloadSize), at)
	require.ErrorIs(t, err, protocol.ErrTooLarge)

	_, err = protocol.Encode(func() {}, at)
	require.ErrorIs(t, err, protocol.ErrMalformed)
}

func TestEncodeOmitsAbsentData(t *testing.T) {
	// A lock-conflict reply has no response.data; a simulated base must not invent one.
	op := protocol.BizOperation{
		Command: protocol.CommandInstallBiz, BizName: "biz1", BizVersion: "1",
		Response: protocol.Output[protocol.ClientResponse]{Code: protocol.CodeFailed, Message: "FAILED:biz1:1 installBiz " +
			"conflict, exist unfinished command(installBiz) for this biz"},
	}
	b, err := protocol.Encode(op, time.UnixMilli(1))
	require.NoError(t, err)
	require.NotContains(t, string(b), `"data":{"code"`)
	e, err := protocol.Decode[protocol.BizOperation](b)
	require.NoError(t, err)
	require.Equal(t, protocol.OutcomeConflict, e.Data.Outcome())

	b, err = protocol.Encode(protocol.HealthReply{Code: protocol.CodeFailed, Message: "boom"}, time.UnixMilli(1))
	require.NoError(t, err)
	require.JSONEq(t, `{"data":{"code":"FAILED","message":"boom"},"publishTimestamp":1}`, string(b))
}

func TestEnvelopeExpired(t *testing.T) {
	e := protocol.Envelope[protocol.EmptyRequest]{PublishTimestamp: 1736935812345}
	published := time.UnixMilli(1736935812345)
	require.Equal(t, published.UTC(), e.PublishedAt())
	tests := []struct {
		name string
		now  time.Time
		want bool
	}{
		{"just published", published, false},
		{"from the future", published.Add(-time.Hour), false},
		{"one ms before max age", published.Add(protocol.DefaultMaxAge - time.Millisecond), false},
		{"exactly max age", published.Add(protocol.DefaultMaxAge), true},
		{"older", published.Add(time.Minute), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, e.Expired(tt.now, protocol.DefaultMaxAge))
		})
	}
}

func TestEncodeCommand(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"health", protocol.EmptyRequest{}, `{}`},
		{"pointer to empty request", &protocol.EmptyRequest{}, `{}`},
		{"nil baseline", []protocol.BizModel(nil), `[]`},
		{"empty baseline", []protocol.BizModel{}, `[]`},
		{"install without version", protocol.BizModel{BizName: "biz1", BizURL: "file:/b.jar"},
			`{"bizName":"biz1","bizUrl":"file:/b.jar"}`},
		{"uninstall then install", protocol.BizModel{BizName: "a", BizVersion: "1", BizURL: "u",
			InstallStrategy: protocol.StrategyUninstallThenInstall},
			`{"bizName":"a","bizVersion":"1","bizUrl":"u","installStrategy":"uninstallThenInstall"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := protocol.EncodeCommand(tt.v)
			require.NoError(t, err)
			require.Equal(t, tt.want, string(got))
		})
	}

	_, err := protocol.EncodeCommand(nil)
	require.ErrorIs(t, err, protocol.ErrMalformed)
	_, err = protocol.EncodeCommand(make(chan int))
	require.ErrorIs(t, err, protocol.ErrMalformed)
	_, err = protocol.EncodeCommand(strings.Repeat("x", protocol.MaxPayloadSize))
	require.ErrorIs(t, err, protocol.ErrTooLarge)
}

func TestDecodeCommand(t *testing.T) {
	m, err := protocol.DecodeCommand[protocol.BizModel]([]byte(`{"bizName":"a","bizVersion":"1","bizUrl":"u","args":["x"],"async":false}`))
	require.NoError(t, err)
	require.Equal(t, protocol.BizModel{BizName: "a", BizVersion: "1", BizURL: "u"}, m)

	tests := []struct {
		name    string
		payload string
		want    error
	}{
		{"empty", ``, protocol.ErrMalformed},
		{"blank", " \n", protocol.ErrMalformed},
		{"null", `null`, protocol.ErrMalformed},
		{"bad json", `{"bizName":`, protocol.ErrMalformed},
		{"wrong type", `{"bizName":1}`, protocol.ErrMalformed},
		{"too large", `"` + strings.Repeat("x", protocol.MaxPayloadSize) + `"`, protocol.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := protocol.DecodeCommand[protocol.BizModel]([]byte(tt.payload))
			require.ErrorIs(t, err, tt.want)
		})
	}
}
