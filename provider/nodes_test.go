package provider

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// updateNodes rewrites testdata/nodes from the heartbeat corpus.
var updateNodes = flag.Bool("update-nodes", false, "rewrite testdata/nodes")

// nodesDir holds the virtual nodes built from the heartbeat corpus, which the e2e test
// TestCorpusNodesDryRun creates with server-side dry run: accepted/ must be accepted by the
// API server, rejected/ (from heartbeats Validation rejects) must be refused by it.
var nodesDir = filepath.Join("testdata", "nodes")

// nodeBreakingRejects are heartbeats Validation rejects whose node, built anyway, the API
// server refuses: they show the rules are needed, not just strict.
var nodeBreakingRejects = map[string]func(*protocol.BaseStatus){
	"port-negative": func(s *protocol.BaseStatus) { s.Port = -1 },
	"node-name-over-hostname-label": func(s *protocol.BaseStatus) {
		s.BaseMetadata.Identity = strings.Repeat("a", 64-len("vnode..default"))
	},
}

// corpusHeartbeat is one heartbeat of the corpus and the env it is served in.
type corpusHeartbeat struct {
	env    string
	status protocol.BaseStatus
}

// heartbeatCorpus returns the heartbeats of the committed fuzz corpora (those Validation
// accepts) and of acceptedChanges, by file name.
func heartbeatCorpus(t *testing.T) map[string]corpusHeartbeat {
	t.Helper()
	out := map[string]corpusHeartbeat{}
	for name, change := range acceptedChanges {
		s := vectorHeartbeat()
		change(&s)
		out["table-"+strings.ReplaceAll(name, " ", "-")] = corpusHeartbeat{"default", s}
	}
	for _, target := range []string{"FuzzHeartbeatNode", "FuzzHeartbeatFields"} {
		dir := filepath.Join("testdata", "fuzz", target)
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		for _, e := range entries {
			vals := readCorpusFile(t, filepath.Join(dir, e.Name()))
			var hb corpusHeartbeat
			var loopback bool
			switch target {
			case "FuzzHeartbeatNode":
				env, err := protocol.Decode[protocol.BaseStatus](vals[0].([]byte))
				if err != nil {
					continue
				}
				hb = corpusHeartbeat{vals[1].(string), env.Data}
				loopback = vals[2].(bool)
			case "FuzzHeartbeatFields":
				hb = corpusHeartbeat{vals[0].(string), protocol.BaseStatus{
					BaseMetadata: protocol.BaseMetadata{Identity: vals[1].(string), Name: vals[2].(string),
						Version: vals[3].(string), ClusterName: vals[4].(string)},
					LocalHostName: vals[5].(string), LocalIP: vals[6].(string), Port: vals[7].(int),
					State: protocol.BaseStateActivated,
				}}
				loopback = vals[8].(bool)
			}
			if protocol.ValidateEnv(hb.env) != nil {
				continue
			}
			hb.env = protocol.NormalizeEnv(hb.env)
			if (Validation{Env: hb.env, AllowLoopbackIP: loopback}).Heartbeat(hb.status) != nil {
				continue
			}
			out[strings.ToLower(target)+"-"+e.Name()] = hb
		}
	}
	return out
}

// readCorpusFile parses a "go test fuzz v1" file of []byte, string, bool and int values.
func readCorpusFile(t *testing.T, path string) []any {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.Equal(t, "go test fuzz v1", lines[0], path)
	var vals []any
	for _, l := range lines[1:] {
		typ, arg, ok := strings.Cut(strings.TrimSuffix(l, ")"), "(")
		require.True(t, ok, "%s: %q", path, l)
		switch typ {
		case "[]byte", "string":
			s, err := strconv.Unquote(arg)
			require.NoError(t, err, "%s: %q", path, l)
			if typ == "string" {
				vals = append(vals, s)
			} else {
				vals = append(vals, []byte(s))
			}
		case "bool":
			v, err := strconv.ParseBool(arg)
			require.NoError(t, err)
			vals = append(vals, v)
		case "int":
			v, err := strconv.Atoi(arg)
			require.NoError(t, err)
			vals = append(vals, v)
		default:
			t.Fatalf("%s: unsupported type %q", path, typ)
		}
	}
	return vals
}

// TestCorpusNodes keeps testdata/nodes equal to the nodes built from the heartbeat corpus
// (go test ./provider -run TestCorpusNodes -update-nodes rewrites it).
func TestCorpusNodes(t *testing.T) {
	want := map[string][]byte{}
	add := func(name, env string, s protocol.BaseStatus) {
		b, err := json.MarshalIndent(buildTestNode(env, s), "", "  ")
		require.NoError(t, err)
		want[name+".json"] = append(b, '\n')
	}
	for name, hb := range heartbeatCorpus(t) {
		add(filepath.Join("accepted", name), hb.env, hb.status)
	}
	for name, change := range nodeBreakingRejects {
		s := vectorHeartbeat()
		change(&s)
		require.Error(t, Validation{Env: "default"}.Heartbeat(s), name)
		require.NotEmpty(t, apiProblems(buildTestNode("default", s)), name)
		add(filepath.Join("rejected", name), "default", s)
	}
	if *updateNodes {
		require.NoError(t, os.RemoveAll(nodesDir))
		for name, b := range want {
			require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(nodesDir, name)), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(nodesDir, name), b, 0o644))
		}
	}
	var have []string
	for _, sub := range []string{"accepted", "rejected"} {
		entries, err := os.ReadDir(filepath.Join(nodesDir, sub))
		require.NoError(t, err, "run go test ./provider -run TestCorpusNodes -update-nodes")
		for _, e := range entries {
			name := filepath.Join(sub, e.Name())
			have = append(have, name)
			b, err := os.ReadFile(filepath.Join(nodesDir, name))
			require.NoError(t, err)
			require.True(t, bytes.Equal(want[name], b), "%s is stale: run go test ./provider -run TestCorpusNodes -update-nodes", name)
		}
	}
	wantNames := make([]string, 0, len(want))
	for n := range want {
		wantNames = append(wantNames, n)
	}
	slices.Sort(wantNames)
	slices.Sort(have)
	require.Equal(t, wantNames, have)
}
