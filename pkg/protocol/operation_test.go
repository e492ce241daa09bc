package protocol_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/protocol"
)

func TestBizOperationOutcome(t *testing.T) {
	type output = protocol.Output[protocol.ClientResponse]
	tests := []struct {
		name    string
		resp    output
		want    protocol.OperationOutcome
		message string
	}{
		{"success", output{Code: "SUCCESS", Data: protocol.ClientResponse{Code: "SUCCESS", Message: "ok"}},
			protocol.OutcomeSucceeded, ""},
		{"repeat", output{Code: "FAILED", Message: "install biz not success!", Data: protocol.ClientResponse{Code: "REPEAT_BIZ"}},
			protocol.OutcomeRepeat, "install biz not success!"},
		{"not found", output{Code: "FAILED", Data: protocol.ClientResponse{Code: "NOT_FOUND_BIZ", Message: "not found."}},
			protocol.OutcomeNotFound, "not found."},
		{"illegal state", output{Code: "FAILED", Data: protocol.ClientResponse{Code: "ILLEGAL_STATE_BIZ", Message: "x"}},
			protocol.OutcomeFailed, "x"},
		{"master biz", output{Code: "FAILED", Message: "uninstall biz not success!",
			Data: protocol.ClientResponse{Code: "FAILED", Message: "Master biz must not be uninstalled."}},
			protocol.OutcomeFailed, "uninstall biz not success!: Master biz must not be uninstalled."},
		{"outer failed, inner success", output{Code: "FAILED", Data: protocol.ClientResponse{Code: "SUCCESS"}},
			protocol.OutcomeFailed, ""},
		{"failed without data", output{Code: "FAILED", Message: "internal error"}, protocol.OutcomeFailed, "internal error"},
		{"conflict", output{Code: "FAILED", Message: "FAILED:a:1 uninstallBiz conflict, exist unfinished command(installBiz) for this biz"},
			protocol.OutcomeConflict, "FAILED:a:1 uninstallBiz conflict, exist unfinished command(installBiz) for this biz"},
		{"conflict words with data are no conflict", output{Code: "FAILED",
			Message: "conflict, exist unfinished command", Data: protocol.ClientResponse{Code: "FAILED"}},
			protocol.OutcomeFailed, "conflict, exist unfinished command"},
		{"stack trace only", output{Code: "FAILED", Data: protocol.ClientResponse{Code: "FAILED",
			Message: "  java.lang.RuntimeException: x\r\n\tat a.b(C.java:1)\n"}},
			protocol.OutcomeFailed, "java.lang.RuntimeException: x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := protocol.BizOperation{Command: protocol.CommandInstallBiz, Response: tt.resp}
			require.Equal(t, tt.want, op.Outcome())
			require.Equal(t, tt.message, op.ErrorMessage())
		})
	}
}

func TestBizOperationValidate(t *testing.T) {
	ok := protocol.Output[protocol.ClientResponse]{Code: protocol.CodeSuccess}
	require.NoError(t, protocol.BizOperation{Command: protocol.CommandInstallBiz, Response: ok}.Validate())
	require.NoError(t, protocol.BizOperation{Command: protocol.CommandUninstallBiz, Response: ok}.Validate())
	require.ErrorIs(t, protocol.BizOperation{Response: ok}.Validate(), protocol.ErrMissingField)
	require.ErrorIs(t, protocol.BizOperation{Command: protocol.CommandBatchInstallBiz, Response: ok}.Validate(),
		protocol.ErrMalformed)
	require.ErrorIs(t, protocol.BizOperation{Command: protocol.CommandInstallBiz}.Validate(), protocol.ErrMissingField)
}

func TestBatchInstallInstalledOrder(t *testing.T) {
	// Map order must not leak into the result.
	r := protocol.BatchInstallResult{Response: protocol.Output[protocol.BatchInstallResponse]{
		Code: protocol.CodeSuccess,
		Data: protocol.BatchInstallResponse{BizURLToResponse: map[string]protocol.ClientResponse{
			"c": {Code: "SUCCESS", BizInfos: []protocol.BizInfo{{BizName: "c"}}},
			"a": {Code: "SUCCESS", BizInfos: []protocol.BizInfo{{BizName: "a"}}},
			"b": {Code: "REPEAT_BIZ"},
			"d": {Code: "SUCCESS", BizInfos: []protocol.BizInfo{{BizName: "d"}}},
		}},
	}}
	for range 10 {
		var names []string
		for _, b := range r.Installed() {
			names = append(names, b.BizName)
		}
		require.Equal(t, []string{"a", "c", "d"}, names)
	}
	require.Nil(t, protocol.BatchInstallResult{}.Installed())
	failed := protocol.BatchInstallResult{Response: protocol.Output[protocol.BatchInstallResponse]{Code: protocol.CodeFailed}}
	require.Equal(t, protocol.OutcomeFailed, failed.Outcome())
}

func TestHealthMetaspace(t *testing.T) {
	tests := []struct {
		name                   string
		jvm                    string
		capacity, allocatable  int64
		capacityOK, allocateOK bool
	}{
		{"both defined", `{"java max metaspace":1000,"java committed metaspace":300}`, 1000, 700, true, true},
		{"max undefined", `{"java max metaspace":-1,"java committed metaspace":300}`, 0, 0, false, false},
		{"committed absent", `{"java max metaspace":1000}`, 1000, 0, true, false},
		{"committed above max", `{"java max metaspace":1000,"java committed metaspace":1200}`, 1000, 0, true, true},
		{"nothing sent", `{}`, 0, 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var j protocol.JVMInfo
			require.NoError(t, json.Unmarshal([]byte(tt.jvm), &j))
			c, ok := j.MetaspaceCapacity()
			require.Equal(t, tt.capacityOK, ok)
			require.Equal(t, tt.capacity, c)
			a, ok := j.MetaspaceAllocatable()
			require.Equal(t, tt.allocateOK, ok)
			require.Equal(t, tt.allocatable, a)
		})
	}

	var j protocol.JVMInfo
	require.NoError(t, json.Unmarshal([]byte(`{"java used metaspace":5}`), &j))
	require.Equal(t, int64(5), j.JavaUsedMetaspace)
	require.Equal(t, protocol.MetaspaceUndefined, j.JavaCommittedMetaspace, "absent is undefined, not 0")
	require.Equal(t, protocol.MetaspaceUndefined, j.JavaMaxMetaspace)
}

func TestReason(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("boom"), "other"},
		{protocol.ErrTooLarge, "too_large"},
		{fmt.Errorf("decode: %w", protocol.ErrMalformed), "malformed"},
		{fmt.Errorf("x: %w", protocol.ErrInvalidBaseID), "invalid_base_id"},
		{fmt.Errorf("x: %w", protocol.ErrBaseIDMismatch), "base_id_mismatch"},
		{fmt.Errorf("x: %w", protocol.ErrMissingField), "missing_field"},
		{fmt.Errorf("x: %w", protocol.ErrUnknownTopic), "unknown_topic"},
		{fmt.Errorf("x: %w", protocol.ErrInvalidEnv), "invalid_env"},
		{errors.Join(errors.New("a"), protocol.ErrTooLarge), "too_large"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, protocol.Reason(tt.err), "%v", tt.err)
	}

	_, err := protocol.Decode[protocol.BaseStatus]([]byte(`{`))
	require.Equal(t, "malformed", protocol.Reason(err))
	var syntaxErr *json.SyntaxError
	require.ErrorAs(t, err, &syntaxErr, "the json error stays reachable")
}
