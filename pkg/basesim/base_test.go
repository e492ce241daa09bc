package basesim

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// bizOp is the data of base/bizOperation as the tests read it.
type bizOp = protocol.BizOperation

func TestStartPublishesQueryBaselineThenHeartbeat(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	b := startBase(t, Config{Broker: url, Identity: "10.0.0.7", Name: "base", ClusterName: "c1"})

	require.Equal(t, "koupleless@@@10.0.0.7", b.clientID)
	q := decodeEnvelope[protocol.BaseMetadata](t, ctrl.await(b.Identity(), protocol.SuffixQueryBaseline, 0))
	require.Equal(t, protocol.BaseMetadata{Identity: "10.0.0.7", Name: "base", Version: "1.0.0", ClusterName: "c1"}, q.Data)
	requireSameShape(t, vector(t, "query-baseline.json"), ctrl.await(b.Identity(), protocol.SuffixQueryBaseline, 0))

	hb := ctrl.await(b.Identity(), protocol.SuffixHeartbeat, 0)
	requireSameShape(t, vector(t, "heartbeat.json"), hb)
	st := decodeEnvelope[protocol.BaseStatus](t, hb).Data
	require.True(t, st.Activated())
	require.Equal(t, "10.0.0.7", st.LocalIP)
	require.Equal(t, 0, st.Port)
	require.Equal(t, "activated", st.State)

	// queryBaseline is published before the first heartbeat, and only once.
	ctrl.mu.Lock()
	var order []string
	for _, m := range ctrl.msgs {
		order = append(order, m.topic[strings.LastIndexByte(m.topic, '/')+1:])
	}
	ctrl.mu.Unlock()
	require.Equal(t, []string{"queryBaseline", "heart"}, order[:2])
	require.Equal(t, 1, ctrl.count(b.Identity(), protocol.SuffixQueryBaseline))
}

func TestInstallReplyMatchesVector(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	b := startBase(t, Config{Broker: url, InstallDelay: 20 * time.Millisecond})

	ctrl.send(b.Identity(), protocol.CommandInstallBiz, vector(t, "install-biz.json"))
	require.Eventually(t, func() bool {
		z, ok := b.Biz("biz1", "0.0.1-SNAPSHOT")
		return ok && z.State == protocol.BizResolved
	}, waitFor, tick, "biz is RESOLVED while it installs")

	reply := ctrl.await(b.Identity(), protocol.SuffixBizOperation, 0)
	requireSameShape(t, vector(t, "biz-operation-install-ok.json"), reply)
	op := decodeEnvelope[bizOp](t, reply).Data
	require.Equal(t, protocol.OutcomeSucceeded, op.Outcome())
	require.Equal(t, protocol.BizActivated, op.InstalledState())
	require.Equal(t, "biz1:0.0.1-SNAPSHOT", op.Key())
	require.Regexp(t, `^Install Biz: biz1:0.0.1-SNAPSHOT success, cost: \d+ ms, started at: \d\d:\d\d:\d\d,\d\d\d$`, op.Response.Data.Message)
	info := op.Response.Data.BizInfos[0]
	require.Equal(t, "biz1:0.0.1-SNAPSHOT", info.Identity)
	require.Len(t, info.BizStateRecords, 2)
	require.Equal(t, protocol.StateRecord{ChangeTime: info.BizStateRecords[0].ChangeTime, State: "RESOLVED", Reason: "CREATED"}, info.BizStateRecords[0])
	require.Equal(t, "ACTIVATED", info.BizStateRecords[1].State)
	require.Equal(t, "STARTED", info.BizStateRecords[1].Reason)

	require.Equal(t, []string{"biz1:0.0.1-SNAPSHOT=ACTIVATED"}, states(b.Bizs()))
	require.Equal(t, 1, b.ReceivedCount(protocol.CommandInstallBiz, "biz1:0.0.1-SNAPSHOT"))
	require.Equal(t, 1, b.ReceivedCount(protocol.CommandInstallBiz, ""))
	require.Equal(t, 0, b.ReceivedCount(protocol.CommandUninstallBiz, ""))
	got := b.Received()
	require.Len(t, got, 1)
	require.Equal(t, protocol.CommandInstallBiz, got[0].Name)
	require.Equal(t, []protocol.BizModel{{
		BizName:    "biz1",
		BizVersion: "0.0.1-SNAPSHOT",
		BizURL:     "https://serverless-opensource.oss-cn-shanghai.aliyuncs.com/module-packages/stable/biz1-web-single-host-0.0.1-SNAPSHOT-ark-biz.jar",
	}}, got[0].Bizs)
}

// TestInstallAnotherVersion covers both modes of activate.new.module (docs/protocol.md,
// "A second version of an active biz").
func TestInstallAnotherVersion(t *testing.T) {
	tests := []struct {
		name       string
		activation Activation
		// wantNew is the state of the new version in the install reply.
		wantNew protocol.BizState
		// wantNewRecord and wantOldRecord are the last state records of both versions.
		wantNewRecord, wantOldRecord protocol.StateRecord
		wantStates                   []string
		wantSimple                   map[string]string
	}{
		{
			name:          "activate.new.module=true (simulator default)",
			activation:    ActivateNew,
			wantNew:       protocol.BizActivated,
			wantNewRecord: protocol.StateRecord{State: "ACTIVATED", Reason: "STARTED", Message: "switch from old biz: biz1:0.0.1"},
			wantOldRecord: protocol.StateRecord{State: "DEACTIVATED", Reason: "SWITCHED", Message: "switch to new biz biz1:0.0.2"},
			wantStates:    []string{"biz1:0.0.1=DEACTIVATED", "biz1:0.0.2=ACTIVATED"},
			wantSimple:    map[string]string{"biz1:0.0.1": "deactivated", "biz1:0.0.2": "activated"},
		},
		{
			name:          "SOFAArk default",
			activation:    KeepOld,
			wantNew:       protocol.BizDeactivated,
			wantNewRecord: protocol.StateRecord{State: "DEACTIVATED", Reason: "STARTED", Message: "start but is deactivated"},
			wantOldRecord: protocol.StateRecord{State: "ACTIVATED", Reason: "STARTED"},
			wantStates:    []string{"biz1:0.0.1=ACTIVATED", "biz1:0.0.2=DEACTIVATED"},
			wantSimple:    map[string]string{"biz1:0.0.1": "activated", "biz1:0.0.2": "deactivated"},
		},
		{
			name:          "multi-version activation",
			activation:    ActivateAll,
			wantNew:       protocol.BizActivated,
			wantNewRecord: protocol.StateRecord{State: "ACTIVATED", Reason: "STARTED"},
			wantOldRecord: protocol.StateRecord{State: "ACTIVATED", Reason: "STARTED"},
			wantStates:    []string{"biz1:0.0.1=ACTIVATED", "biz1:0.0.2=ACTIVATED"},
			wantSimple:    map[string]string{"biz1:0.0.1": "activated", "biz1:0.0.2": "activated"},
		},
	}
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startBase(t, Config{Broker: url, Activation: tt.activation})
			id := b.Identity()
			ctrl.sendJSON(id, protocol.CommandInstallBiz, bizModel("biz1", "0.0.1"))
			first := decodeEnvelope[bizOp](t, ctrl.await(id, protocol.SuffixBizOperation, 0)).Data
			require.Equal(t, protocol.BizActivated, first.InstalledState())

			ctrl.sendJSON(id, protocol.CommandInstallBiz, bizModel("biz1", "0.0.2"))
			raw := ctrl.await(id, protocol.SuffixBizOperation, 1)
			requireSameShape(t, vector(t, "biz-operation-install-other-version.json"), raw)
			second := decodeEnvelope[bizOp](t, raw).Data
			require.Equal(t, protocol.OutcomeSucceeded, second.Outcome(), "SUCCESS in every mode")
			require.Equal(t, tt.wantNew, second.InstalledState())
			last, _ := second.Response.Data.BizInfos[0].LatestStateRecord()
			last.ChangeTime = 0
			require.Equal(t, tt.wantNewRecord, last)

			require.Equal(t, tt.wantStates, states(b.Bizs()))
			old, _ := b.Biz("biz1", "0.0.1")
			oldLast := old.Records[len(old.Records)-1]
			oldLast.ChangeTime = 0
			require.Equal(t, tt.wantOldRecord, oldLast)

			ctrl.send(id, protocol.CommandQueryAllBiz, vector(t, "query-all-biz-request.json"))
			rawList := ctrl.await(id, protocol.SuffixSimpleBiz, 0)
			requireSameShape(t, vector(t, "simple-biz-two-versions.json"), rawList)
			got := map[string]string{}
			for _, s := range decodeEnvelope[[]protocol.SimpleBizInfo](t, rawList).Data {
				got[s.Key()] = s.State
				require.NotNil(t, s.LatestStateRecord)
			}
			require.Equal(t, tt.wantSimple, got)
		})
	}
}

func TestSetActivateNewModuleKnob(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	b := startBase(t, Config{Broker: url})
	b.SetActivateNewModule(false)
	id := b.Identity()
	ctrl.sendJSON(id, protocol.CommandInstallBiz, bizModel("biz1", "1"))
	ctrl.await(id, protocol.SuffixBizOperation, 0)
	ctrl.sendJSON(id, protocol.CommandInstallBiz, bizModel("biz1", "2"))
	op := decodeEnvelope[bizOp](t, ctrl.await(id, protocol.SuffixBizOperation, 1)).Data
	require.Equal(t, protocol.BizDeactivated, op.InstalledState())
	b.SetActivateNewModule(true)
	ctrl.sendJSON(id, protocol.CommandInstallBiz, bizModel("biz1", "3"))
	op = decodeEnvelope[bizOp](t, ctrl.await(id, protocol.SuffixBizOperation, 2)).Data
	require.Equal(t, protocol.BizActivated, op.InstalledState())
	require.Equal(t, []string{"biz1:1=DEACTIVATED", "biz1:2=DEACTIVATED", "biz1:3=ACTIVATED"}, states(b.Bizs()))
}

func TestInstallRepeatBiz(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	b := startBase(t, Config{Broker: url})
	id := b.Identity()
	ctrl.send(id, protocol.CommandInstallBiz, vector(t, "install-biz.json"))
	ctrl.await(id, protocol.SuffixBizOperation, 0)
	before := b.Bizs()

	ctrl.send(id, protocol.CommandInstallBiz, vector(t, "install-biz.json"))
	raw := ctrl.await(id, protocol.SuffixBizOperation, 1)
	requireSameShape(t, vector(t, "biz-operation-install-repeat.json"), raw)
	op := decodeEnvelope[bizOp](t, raw).Data
	require.Equal(t, protocol.OutcomeRepeat, op.Outcome())
	require.Equal(t, "install biz not success!", op.Response.Message)
	require.Equal(t, "Biz: biz1:0.0.1-SNAPSHOT has been installed or registered.", op.Response.Data.Message)
	require.Equal(t, before, b.Bizs(), "a repeat changes nothing")
	require.Equal(t, 2, b.ReceivedCount(protocol.CommandInstallBiz, "biz1:0.0.1-SNAPSHOT"))
}

func TestUninstall(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	b := startBase(t, Config{Broker: url, Activation: KeepOld})
	id := b.Identity()

	ctrl.send(id, protocol.CommandUninstallBiz, vector(t, "uninstall-biz.json"))
	raw := ctrl.await(id, protocol.SuffixBizOperation, 0)
	requireSameShape(t, vector(t, "biz-operation-uninstall-not-found.json"), raw)
	op := decodeEnvelope[bizOp](t, raw).Data
	require.Equal(t, protocol.OutcomeNotFound, op.Outcome())
	require.Equal(t, "uninstall biz not success!", op.Response.Message)
	require.Equal(t, "Uninstall biz: biz2:0.0.1-SNAPSHOT not found.", op.Response.Data.Message)

	ctrl.sendJSON(id, protocol.CommandInstallBiz, bizModel("biz2", "0.0.1-SNAPSHOT"))
	ctrl.await(id, protocol.SuffixBizOperation, 1)
	ctrl.sendJSON(id, protocol.CommandInstallBiz, bizModel("biz2", "0.0.2"))
	ctrl.await(id, protocol.SuffixBizOperation, 2)
	require.Len(t, b.Bizs(), 2)

	ctrl.send(id, protocol.CommandUninstallBiz, vector(t, "uninstall-biz.json"))
	raw = ctrl.await(id, protocol.SuffixBizOperation, 3)
	requireSameShape(t, vector(t, "biz-operation-uninstall-ok.json"), raw)
	op = decodeEnvelope[bizOp](t, raw).Data
	require.Equal(t, protocol.OutcomeSucceeded, op.Outcome())
	require.Equal(t, "Uninstall biz: biz2:0.0.1-SNAPSHOT success.", op.Response.Data.Message)
	// The other version is untouched and not re-activated (docs/protocol.md, "Uninstall").
	require.Equal(t, []string{"biz2:0.0.2=DEACTIVATED"}, states(b.Bizs()))

	// The master biz cannot be uninstalled.
	ctrl.sendJSON(id, protocol.CommandUninstallBiz, bizModel("base", "1.0.0"))
	op = decodeEnvelope[bizOp](t, ctrl.await(id, protocol.SuffixBizOperation, 4)).Data
	require.Equal(t, protocol.OutcomeFailed, op.Outcome())
	require.Equal(t, "Master biz must not be uninstalled.", op.Response.Data.Message)
}

func TestUninstallDelayShowsKilling(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	b := startBase(t, Config{Broker: url})
	id := b.Identity()
	ctrl.sendJSON(id, protocol.CommandInstallBiz, bizModel("biz1", "1"))
	ctrl.await(id, protocol.SuffixBizOperation, 0)
	b.SetUninstallDelay(time.Hour)
	ctrl.sendJSON(id, protocol.CommandUninstallBiz, bizModel("biz1", "1"))
	require.Eventually(t, func() bool {
		z, ok := b.Biz("biz1", "1")
		return ok && z.State == protocol.BizDeactivated && z.Records[len(z.Records)-1].Reason == "KILLING"
	}, waitFor, tick)
	ctrl.send(id, protocol.CommandQueryAllBiz, []byte("{}"))
	list := decodeEnvelope[[]protocol.SimpleBizInfo](t, ctrl.await(id, protocol.SuffixSimpleBiz, 0)).Data
	require.Len(t, list, 1)
	require.Equal(t, "deactivated", list[0].State)
}

func TestInstallConflict(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	// The first install holds the per-biz lock for the rest of the test.
	b := startBase(t, Config{Broker: url, InstallDelay: time.Hour})
	id := b.Identity()
	ctrl.send(id, protocol.CommandInstallBiz, vector(t, "install-biz.json"))
	require.Eventually(t, func() bool { return len(b.Bizs()) == 1 }, waitFor, tick)

	ctrl.send(id, protocol.CommandInstallBiz, vector(t, "install-biz.json"))
	raw := ctrl.await(id, protocol.SuffixBizOperation, 0)
	require.JSONEq(t, string(dataOf(t, vector(t, "biz-operation-install-conflict.json"))), string(dataOf(t, raw)))
	op := decodeEnvelope[bizOp](t, raw).Data
	require.Equal(t, protocol.OutcomeConflict, op.Outcome())

	ctrl.send(id, protocol.CommandUninstallBiz, vector(t, "install-biz.json"))
	op = decodeEnvelope[bizOp](t, ctrl.await(id, protocol.SuffixBizOperation, 1)).Data
	require.Equal(t, protocol.OutcomeConflict, op.Outcome())
	require.Equal(t, "FAILED:biz1:0.0.1-SNAPSHOT uninstallBiz conflict, exist unfinished command(installBiz) for this biz", op.Response.Message)

	// Another biz is not blocked.
	b.SetInstallDelay(0)
	ctrl.sendJSON(id, protocol.CommandInstallBiz, bizModel("biz2", "1"))
	op = decodeEnvelope[bizOp](t, ctrl.await(id, protocol.SuffixBizOperation, 2)).Data
	require.Equal(t, protocol.OutcomeSucceeded, op.Outcome())
}

// dataOf returns the data member of an envelope, re-encoded.
func dataOf(t *testing.T, payload []byte) []byte {
	t.Helper()
	var e struct {
		Data json.RawMessage `json:"data"`
	}
	require.NoError(t, json.Unmarshal(payload, &e))
	return e.Data
}

func TestInstallFailure(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	b := startBase(t, Config{Broker: url, FailInstallOf: []string{"biz3"}})
	id := b.Identity()

	ctrl.sendJSON(id, protocol.CommandInstallBiz, bizModel("biz3", "0.0.1-SNAPSHOT"))
	raw := ctrl.await(id, protocol.SuffixBizOperation, 0)
	requireSameShape(t, vector(t, "biz-operation-install-failed.json"), raw)
	op := decodeEnvelope[bizOp](t, raw).Data
	require.Equal(t, protocol.OutcomeFailed, op.Outcome())
	require.Contains(t, op.Response.Message, "biz3:0.0.1-SNAPSHOT")
	require.True(t, strings.HasPrefix(op.Response.Data.Message, "com.alipay.sofa.koupleless.arklet.core.common.exception.ArkletRuntimeException: "))
	require.Contains(t, op.Response.Data.Message, "\n\tat ")
	require.Empty(t, b.Bizs(), "a failed biz is not left registered")

	// An unreachable jar fails like the vector: FileNotFoundException with the URL.
	unreachable := "https://example.invalid/biz4.jar"
	b.SetUnreachableURLs(unreachable)
	ctrl.sendJSON(id, protocol.CommandInstallBiz, protocol.BizModel{BizName: "biz4", BizVersion: "1", BizURL: unreachable})
	op = decodeEnvelope[bizOp](t, ctrl.await(id, protocol.SuffixBizOperation, 1)).Data
	require.Equal(t, "java.io.FileNotFoundException: "+unreachable, op.Response.Message)

	// A failure function sees the model and its error text is the reason.
	b.SetFailInstall(func(m protocol.BizModel) error {
		if m.BizName == "biz5" {
			return errors.New("main method threw")
		}
		return nil
	})
	ctrl.sendJSON(id, protocol.CommandInstallBiz, bizModel("biz5", "1"))
	op = decodeEnvelope[bizOp](t, ctrl.await(id, protocol.SuffixBizOperation, 2)).Data
	require.Contains(t, op.ErrorMessage(), "main method threw")

	// Validation failures are exceptions too.
	ctrl.sendJSON(id, protocol.CommandInstallBiz, protocol.BizModel{BizName: "biz6", BizURL: "file:///x.jar"})
	op = decodeEnvelope[bizOp](t, ctrl.await(id, protocol.SuffixBizOperation, 3)).Data
	require.Equal(t, "bizName and bizVersion should be both blank or both not blank.", op.Response.Message)
	ctrl.sendJSON(id, protocol.CommandInstallBiz, protocol.BizModel{BizName: "biz6", BizVersion: "1"})
	op = decodeEnvelope[bizOp](t, ctrl.await(id, protocol.SuffixBizOperation, 4)).Data
	require.Equal(t, "bizUrl should not be blank", op.Response.Message)

	// Clearing the knobs lets installs through.
	b.FailInstallOf()
	b.SetFailInstall(nil)
	ctrl.sendJSON(id, protocol.CommandInstallBiz, bizModel("biz3", "0.0.1-SNAPSHOT"))
	op = decodeEnvelope[bizOp](t, ctrl.await(id, protocol.SuffixBizOperation, 5)).Data
	require.Equal(t, protocol.OutcomeSucceeded, op.Outcome())
}

func TestFailureRate(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	b := startBase(t, Config{Broker: url, FailureRate: 1})
	ctrl.sendJSON(b.Identity(), protocol.CommandInstallBiz, bizModel("biz1", "1"))
	op := decodeEnvelope[bizOp](t, ctrl.await(b.Identity(), protocol.SuffixBizOperation, 0)).Data
	require.Equal(t, protocol.OutcomeFailed, op.Outcome())
	b.SetFailureRate(0)
	ctrl.sendJSON(b.Identity(), protocol.CommandInstallBiz, bizModel("biz1", "1"))
	op = decodeEnvelope[bizOp](t, ctrl.await(b.Identity(), protocol.SuffixBizOperation, 1)).Data
	require.Equal(t, protocol.OutcomeSucceeded, op.Outcome())
}

func TestUninstallThenInstall(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	b := startBase(t, Config{Broker: url, Activation: KeepOld})
	id := b.Identity()
	ctrl.sendJSON(id, protocol.CommandInstallBiz, bizModel("biz1", "1"))
	ctrl.sendJSON(id, protocol.CommandInstallBiz, bizModel("other", "1"))
	ctrl.await(id, protocol.SuffixBizOperation, 1)
	m := bizModel("biz1", "2")
	m.InstallStrategy = protocol.StrategyUninstallThenInstall
	ctrl.sendJSON(id, protocol.CommandInstallBiz, m)
	op := decodeEnvelope[bizOp](t, ctrl.await(id, protocol.SuffixBizOperation, 2)).Data
	require.Equal(t, protocol.BizActivated, op.InstalledState(), "case 0: nothing else of that name is left")
	require.Equal(t, []string{"biz1:2=ACTIVATED", "other:1=ACTIVATED"}, states(b.Bizs()))
}

func TestBaseline(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	b := startBase(t, Config{Broker: url})
	id := b.Identity()

	ctrl.send(id, protocol.SuffixBaseline, vector(t, "baseline.json"))
	raw := ctrl.await(id, protocol.SuffixBatchInstallResponse, 0)
	requireSameShape(t, vector(t, "batch-install-response.json"), raw)
	res := decodeEnvelope[protocol.BatchInstallResult](t, raw).Data
	require.Equal(t, protocol.OutcomeSucceeded, res.Outcome())
	require.Equal(t, protocol.CommandBatchInstallBiz, res.Command)
	require.Equal(t, "batch install success", res.Response.Data.Message)
	require.Len(t, res.Installed(), 2)
	require.Equal(t, []string{"biz1:0.0.1-SNAPSHOT=ACTIVATED", "biz2:0.0.1-SNAPSHOT=ACTIVATED"}, states(b.Bizs()))
	require.Equal(t, 1, b.ReceivedCount(CommandBaseline, ""))
	require.Equal(t, 1, b.ReceivedCount(CommandBaseline, "biz2:0.0.1-SNAPSHOT"))
	require.Equal(t, 0, b.ReceivedCount(protocol.CommandInstallBiz, ""), "a baseline is not an installBiz")

	// Replayed: every entry REPEAT_BIZ without bizInfos, outer FAILED.
	ctrl.send(id, protocol.SuffixBaseline, vector(t, "baseline.json"))
	raw = ctrl.await(id, protocol.SuffixBatchInstallResponse, 1)
	requireSameShape(t, vector(t, "batch-install-response-repeat.json"), raw)
	res = decodeEnvelope[protocol.BatchInstallResult](t, raw).Data
	require.Equal(t, protocol.OutcomeRepeat, res.Outcome())
	require.Equal(t, "install biz not success!", res.Response.Message)

	// An empty baseline succeeds with an empty map.
	ctrl.send(id, protocol.SuffixBaseline, []byte("[]"))
	raw = ctrl.await(id, protocol.SuffixBatchInstallResponse, 2)
	require.JSONEq(t, `{"command":"batchInstallBiz","response":{"code":"SUCCESS","data":{"bizUrlToResponse":{},"code":"SUCCESS","elapsedSpace":524288,"message":"batch install success"}}}`, string(dataOf(t, raw)))
}

func TestBaselineWithFailedEntry(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	b := startBase(t, Config{Broker: url, FailInstallOf: []string{"biz2"}})
	id := b.Identity()
	ctrl.send(id, protocol.SuffixBaseline, vector(t, "baseline.json"))
	res := decodeEnvelope[protocol.BatchInstallResult](t, ctrl.await(id, protocol.SuffixBatchInstallResponse, 0)).Data
	require.Equal(t, protocol.OutcomeFailed, res.Outcome())
	require.Equal(t, "batch install failed", res.Response.Data.Message)
	var failed protocol.ClientResponse
	for u, r := range res.Response.Data.BizURLToResponse {
		if strings.Contains(u, "biz2") {
			failed = r
		}
	}
	require.Equal(t, protocol.CodeFailed, failed.Code)
	require.True(t, strings.HasPrefix(failed.Message, "internal exception: "), failed.Message)
	require.Empty(t, failed.BizInfos)
	require.Equal(t, []string{"biz1:0.0.1-SNAPSHOT=ACTIVATED"}, states(b.Bizs()))
}

func TestBaselineWithUnreachableURL(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	var models []protocol.BizModel
	require.NoError(t, json.Unmarshal(vector(t, "baseline.json"), &models))
	b := startBase(t, Config{Broker: url, UnreachableURLs: []string{models[1].BizURL}})
	id := b.Identity()

	ctrl.sendJSON(id, protocol.SuffixBaseline, models)
	raw := ctrl.await(id, protocol.SuffixBatchInstallResponse, 0)
	var got struct {
		Command  string `json:"command"`
		Response struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Data    struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"data"`
		} `json:"response"`
	}
	data := dataOf(t, raw)
	require.NoError(t, json.Unmarshal(data, &got))
	requireSameShape(t, []byte(`{"command":"","response":{"code":"","message":"","data":{"code":"","message":""}}}`), data)
	require.Equal(t, protocol.CommandBatchInstallBiz, got.Command)
	require.Equal(t, protocol.CodeFailed, got.Response.Code)
	require.Equal(t, "java.io.FileNotFoundException: "+models[1].BizURL, got.Response.Message)
	require.Equal(t, protocol.CodeFailed, got.Response.Data.Code)
	require.Contains(t, got.Response.Data.Message, "\n\tat ")
	require.Empty(t, b.Bizs(), "nothing of a failed batch is installed")
	res := decodeEnvelope[protocol.BatchInstallResult](t, raw).Data
	require.Equal(t, protocol.OutcomeFailed, res.Outcome())

	// One by one, the reachable one installs.
	ctrl.sendJSON(id, protocol.CommandInstallBiz, models[0])
	op := decodeEnvelope[bizOp](t, ctrl.await(id, protocol.SuffixBizOperation, 0)).Data
	require.Equal(t, protocol.OutcomeSucceeded, op.Outcome())
}

func TestBaselineConflict(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	b := startBase(t, Config{Broker: url, InstallDelay: time.Hour})
	id := b.Identity()
	ctrl.send(id, protocol.SuffixBaseline, vector(t, "baseline.json"))
	require.Eventually(t, func() bool { return len(b.Bizs()) == 2 }, waitFor, tick)
	ctrl.sendJSON(id, protocol.SuffixBaseline, []protocol.BizModel{bizModel("biz9", "1")})
	raw := ctrl.await(id, protocol.SuffixBatchInstallResponse, 0)
	require.JSONEq(t, `{"command":"batchInstallBiz","response":{"code":"FAILED","message":"FAILED:null:null batchInstallBiz conflict, exist unfinished command(batchInstallBiz) for this biz"}}`, string(dataOf(t, raw)))
	res := decodeEnvelope[protocol.BatchInstallResult](t, raw).Data
	require.Equal(t, protocol.OutcomeConflict, res.Outcome())
}

func TestHealth(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	b := startBase(t, Config{Broker: url, Name: "base", Version: "1.0.0"})
	id := b.Identity()
	ctrl.sendJSON(id, protocol.CommandInstallBiz, bizModel("biz1", "0.0.1-SNAPSHOT"))
	ctrl.sendJSON(id, protocol.CommandInstallBiz, bizModel("biz2", "0.0.1-SNAPSHOT"))
	ctrl.await(id, protocol.SuffixBizOperation, 1)

	ctrl.send(id, protocol.CommandHealth, vector(t, "health-request.json"))
	raw := ctrl.await(id, protocol.SuffixHealth, 0)
	requireSameShape(t, vector(t, "health-response.json"), raw)
	h := decodeEnvelope[protocol.HealthReply](t, raw).Data
	require.True(t, h.Succeeded())
	hd := h.Data.HealthData
	require.Equal(t, protocol.BizSummary{BizName: "base", BizState: "ACTIVATED", BizVersion: "1.0.0", WebContextPath: "/"}, hd.MasterBizInfo)
	var keys []string
	for _, s := range hd.BizListInfo {
		keys = append(keys, s.Key()+"="+s.BizState)
	}
	require.Equal(t, []string{"base:1.0.0=ACTIVATED", "biz1:0.0.1-SNAPSHOT=ACTIVATED", "biz2:0.0.1-SNAPSHOT=ACTIVATED"}, keys)
	capacity, ok := hd.JVM.MetaspaceCapacity()
	require.True(t, ok)
	require.Equal(t, DefaultMaxMetaspace, capacity)
	alloc, ok := hd.JVM.MetaspaceAllocatable()
	require.True(t, ok)
	require.Positive(t, alloc)
	require.Greater(t, hd.JVM.JavaUsedMetaspace, baseMetaspaceUsed)
}

func TestQueryAllBiz(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	b := startBase(t, Config{Broker: url, StaticBizs: []protocol.BizModel{bizModel("baked", "1")}})
	id := b.Identity()

	ctrl.send(id, protocol.CommandQueryAllBiz, []byte("{}"))
	raw := ctrl.await(id, protocol.SuffixSimpleBiz, 0)
	requireSameShape(t, vector(t, "simple-biz.json"), raw)
	list := decodeEnvelope[[]protocol.SimpleBizInfo](t, raw).Data
	require.Len(t, list, 1)
	require.Equal(t, "baked:1", list[0].Key())
	require.Equal(t, "activated", list[0].State)
	require.True(t, b.Bizs()[0].Static)

	ctrl.sendJSON(id, protocol.CommandUninstallBiz, bizModel("baked", "1"))
	ctrl.await(id, protocol.SuffixBizOperation, 0)
	ctrl.send(id, protocol.CommandQueryAllBiz, []byte("{}"))
	require.JSONEq(t, `[]`, string(dataOf(t, ctrl.await(id, protocol.SuffixSimpleBiz, 1))), "an empty inventory is [], not null")
}

func TestMalformedAndUnsupportedCommandsAreIgnored(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	b := startBase(t, Config{Broker: url})
	id := b.Identity()
	ctrl.send(id, protocol.CommandInstallBiz, nil)
	ctrl.send(id, protocol.CommandInstallBiz, []byte("not json"))
	ctrl.send(id, protocol.CommandUninstallBiz, []byte("[1,2]"))
	ctrl.send(id, protocol.CommandHealth, []byte("{"))
	ctrl.send(id, protocol.SuffixBaseline, []byte(`{"bizName":"x"}`))
	ctrl.send(id, "switchBiz", []byte(`{"bizName":"biz1","bizVersion":"1"}`))
	// A message after the garbage is still answered: the base is alive.
	ctrl.send(id, protocol.CommandQueryAllBiz, []byte("{}"))
	ctrl.await(id, protocol.SuffixSimpleBiz, 0)
	require.Eventually(t, func() bool { return len(b.Received()) == 7 }, waitFor, tick)

	malformed := 0
	for _, c := range b.Received() {
		if c.Malformed {
			malformed++
		}
	}
	require.Equal(t, 5, malformed)
	require.Equal(t, 1, b.ReceivedCount("switchBiz", ""))
	require.Never(t, func() bool {
		return ctrl.count(id, protocol.SuffixBizOperation)+ctrl.count(id, protocol.SuffixHealth)+
			ctrl.count(id, protocol.SuffixBatchInstallResponse) > 0
	}, 200*time.Millisecond, 10*time.Millisecond, "garbage gets no reply")
}

func TestSendRaw(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	b := startBase(t, Config{Broker: url})
	b.Silence(true) // raw sends bypass silence
	require.NoError(t, b.SendRaw(protocol.SuffixHeartbeat, []byte("garbage")))
	require.Eventually(t, func() bool {
		for _, m := range ctrl.on(b.Identity(), protocol.SuffixHeartbeat) {
			if string(m.payload) == "garbage" {
				return true
			}
		}
		return false
	}, waitFor, tick)

	spoof, err := protocol.Encode(protocol.BaseStatus{BaseMetadata: protocol.BaseMetadata{Identity: "someone-else"}, State: "activated"}, time.Now())
	require.NoError(t, err)
	require.NoError(t, b.PublishRaw(protocol.Topic(protocol.DefaultEnv, "victim", protocol.SuffixHeartbeat), spoof))
	require.Equal(t, spoof, ctrl.await("victim", protocol.SuffixHeartbeat, 0))
}

func TestSilence(t *testing.T) {
	url := startBroker(t, brokerConfig())
	ctrl := newController(t, url, protocol.DefaultEnv)
	b := startBase(t, Config{Broker: url, HeartbeatInterval: 20 * time.Millisecond})
	id := b.Identity()
	ctrl.await(id, protocol.SuffixHeartbeat, 2)

	b.Silence(true)
	require.True(t, b.Silenced())
	// Heartbeats whose publish had begun may still land; allow for two of them.
	hbs := ctrl.count(id, protocol.SuffixHeartbeat) + 2
	ctrl.sendJSON(id, protocol.CommandInstallBiz, bizModel("biz1", "1"))
	ctrl.send(id, protocol.CommandHealth, []byte("{}"))
	require.Eventually(t, func() bool { return len(b.Bizs()) == 1 && b.Bizs()[0].State == protocol.BizActivated }, waitFor, tick,
		"commands still run while silenced")
	require.Never(t, func() bool {
		return ctrl.count(id, protocol.SuffixHeartbeat) > hbs || ctrl.count(id, protocol.SuffixHealth) > 0 ||
			ctrl.count(id, protocol.SuffixBizOperation) > 0
	}, 300*time.Millisecond, 10*time.Millisecond)

	b.Silence(false)
	ctrl.await(id, protocol.SuffixHeartbeat, hbs)
	ctrl.send(id, protocol.CommandHealth, []byte("{}"))
	ctrl.await(id, protocol.SuffixHealth, 0)
}
