package protocol

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func readHTTPVector(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "http", name))
	require.NoError(t, err)
	return b
}

func TestDecodeHTTP(t *testing.T) {
	s, err := DecodeHTTP[BaseStatus](readHTTPVector(t, "heartbeat.json"))
	require.NoError(t, err)
	require.Equal(t, 1238, s.Port)
	require.Equal(t, "10.244.0.17", s.BaseMetadata.Identity)

	for name, body := range map[string]string{
		"empty":         ``,
		"null":          `null`,
		"string":        `"x"`,
		"trailing":      `{"baseMetadata":{"identity":"a"}} {}`,
		"trailing junk": `{"baseMetadata":{"identity":"a"}}x`,
		"wrong type":    `{"baseMetadata":{"identity":1}}`,
		"syntax":        `{"baseMetadata":`,
	} {
		_, err := DecodeHTTP[BaseStatus]([]byte(body))
		require.ErrorIs(t, err, ErrMalformed, name)
	}
	_, err = DecodeHTTP[BaseStatus]([]byte(`{"baseMetadata":{"identity":""}}`))
	require.ErrorIs(t, err, ErrMissingField)
	_, err = DecodeHTTP[BaseStatus](make([]byte, MaxPayloadSize+1))
	require.ErrorIs(t, err, ErrTooLarge)
}

func TestHTTPResponses(t *testing.T) {
	r, err := DecodeHTTP[Response[ClientResponse]](readHTTPVector(t, "install-biz-response.json"))
	require.NoError(t, err)
	op := BizOperation{Command: CommandInstallBiz, BizName: "biz1", BizVersion: "0.0.1-SNAPSHOT", Response: r.Output()}
	require.NoError(t, op.Validate())
	require.Equal(t, OutcomeSucceeded, op.Outcome())

	r, err = DecodeHTTP[Response[ClientResponse]](readHTTPVector(t, "install-biz-response-failed.json"))
	require.NoError(t, err)
	op.Response = r.Output()
	require.Equal(t, OutcomeFailed, op.Outcome())

	h, err := DecodeHTTP[Response[Health]](readHTTPVector(t, "health-response.json"))
	require.NoError(t, err)
	require.Equal(t, BizActivated, h.Data.HealthData.MasterBizInfo.State())

	all, err := DecodeHTTP[Response[[]BizInfo]](readHTTPVector(t, "query-all-biz-response.json"))
	require.NoError(t, err)
	simple := SimpleBizInfos(all.Data)
	require.Len(t, simple, 2)
	require.Equal(t, SimpleBizInfo{Name: "biz1", Version: "0.0.1-SNAPSHOT", State: "activated",
		LatestStateRecord: &StateRecord{ChangeTime: 1736935807342, State: "ACTIVATED", Reason: "STARTED"}}, simple[0])

	_, err = DecodeHTTP[Response[Health]]([]byte(`{"message":"x"}`))
	require.ErrorIs(t, err, ErrMissingField)
}
