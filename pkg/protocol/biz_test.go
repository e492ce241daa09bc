package protocol_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/protocol"
)

func TestParseBizState(t *testing.T) {
	tests := []struct {
		in   string
		want protocol.BizState
	}{
		{"activated", protocol.BizActivated},
		{"ACTIVATED", protocol.BizActivated},
		{" Deactivated ", protocol.BizDeactivated},
		{"resolved", protocol.BizResolved},
		{"unresolved", protocol.BizUnresolved},
		{"broken", protocol.BizBroken},
		{"stopped", protocol.BizStopped},
		{"1", protocol.BizUnresolved},
		{"2", protocol.BizResolved},
		{"3", protocol.BizActivated},
		{"4", protocol.BizDeactivated},
		{"5", protocol.BizBroken},
		{"6", "6"},
		{"switching", "SWITCHING"},
		{"", ""},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, protocol.ParseBizState(tt.in), "ParseBizState(%q)", tt.in)
	}
}

func TestSimpleBizInfoJSON(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want protocol.SimpleBizInfo
	}{
		{"object", `{"name":"a","version":"1","state":"activated"}`,
			protocol.SimpleBizInfo{Name: "a", Version: "1", State: "activated"}},
		{"array with digit string", `["a","1","3"]`, protocol.SimpleBizInfo{Name: "a", Version: "1", State: "3"}},
		{"array with number", `[ "a", "1", 4 ]`, protocol.SimpleBizInfo{Name: "a", Version: "1", State: "4"}},
		{"array with word", `["a","1","activated"]`, protocol.SimpleBizInfo{Name: "a", Version: "1", State: "activated"}},
		{"null", `null`, protocol.SimpleBizInfo{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got protocol.SimpleBizInfo
			require.NoError(t, json.Unmarshal([]byte(tt.in), &got))
			require.Equal(t, tt.want, got)
		})
	}
	bad := []string{`[]`, `["a","1"]`, `["a","1","3","x"]`, `[1,"1","3"]`, `["a",{},"3"]`, `["a","1",[]]`, `"a"`, `{"name":1}`}
	for _, bad := range bad {
		var got protocol.SimpleBizInfo
		require.Error(t, json.Unmarshal([]byte(bad), &got), bad)
	}

	// Encoding writes the object form with an explicit null record, as the base does.
	b, err := json.Marshal(protocol.SimpleBizInfo{Name: "a", Version: "1", State: "resolved"})
	require.NoError(t, err)
	require.JSONEq(t, `{"name":"a","version":"1","state":"resolved","latestStateRecord":null}`, string(b))
}

func TestKeys(t *testing.T) {
	require.Equal(t, "biz1:1.0.0", protocol.BizKey("biz1", "1.0.0"))
	require.Equal(t, "biz1:1.0.0", protocol.BizModel{BizName: "biz1", BizVersion: "1.0.0"}.Key())
	require.Equal(t, "biz1:1.0.0", protocol.SimpleBizInfo{Name: "biz1", Version: "1.0.0"}.Key())
	require.Equal(t, "biz1:1.0.0", protocol.BizInfo{BizName: "biz1", BizVersion: "1.0.0"}.Key())
	require.Equal(t, "biz1:1.0.0", protocol.BizSummary{BizName: "biz1", BizVersion: "1.0.0"}.Key())
	require.Equal(t, "biz1:1.0.0", protocol.BizOperation{BizName: "biz1", BizVersion: "1.0.0"}.Key())
}

func TestStateRecordChangedAt(t *testing.T) {
	require.True(t, protocol.StateRecord{}.ChangedAt().IsZero())
	require.True(t, protocol.StateRecord{ChangeTime: -1}.ChangedAt().IsZero())
	require.Equal(t, time.Date(2025, 1, 15, 10, 10, 7, 342e6, time.UTC),
		protocol.StateRecord{ChangeTime: 1736935807342}.ChangedAt())

	_, ok := protocol.BizInfo{}.LatestStateRecord()
	require.False(t, ok)
}
