package provider

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// vectorPath is a file of the protocol's payload vectors, shared with pkg/protocol.
func vectorPath(name string) string {
	return filepath.Join("..", "pkg", "protocol", "testdata", name)
}

// FuzzHeartbeatNode decodes arbitrary heartbeat payloads as the tunnel does; every heartbeat
// that passes Validation.Heartbeat must build a virtual node the API server accepts (name,
// label keys and values, annotation keys, taints, addresses) and a pod IP it accepts.
func FuzzHeartbeatNode(f *testing.F) {
	b, err := os.ReadFile(vectorPath("heartbeat.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b, "dev", false)
	f.Add(b, "default", true)
	f.Fuzz(func(t *testing.T, payload []byte, env string, loopback bool) {
		if protocol.ValidateEnv(env) != nil {
			return // the controller's configuration validates its env
		}
		env = protocol.NormalizeEnv(env)
		e, err := protocol.Decode[protocol.BaseStatus](payload)
		if err != nil {
			return
		}
		checkHeartbeatNode(t, Validation{Env: env, AllowLoopbackIP: loopback}, env, e.Data)
	})
}

// FuzzHeartbeatFields is FuzzHeartbeatNode on the heartbeat's fields directly, which lets
// the fuzzer reach the validation rules without rebuilding JSON.
func FuzzHeartbeatFields(f *testing.F) {
	s := vectorHeartbeat()
	md := s.BaseMetadata
	f.Add("dev", md.Identity, md.Name, md.Version, md.ClusterName, s.LocalHostName, s.LocalIP, s.Port, false)
	f.Add("default", "base-1.eu-west", "TO_BE_IMPLEMENTED", "", "", "MacBook.local", "2001:db8::1", 8888, true)
	f.Fuzz(func(t *testing.T, env, id, name, version, cluster, host, ip string, port int, loopback bool) {
		if protocol.ValidateEnv(env) != nil {
			return
		}
		env = protocol.NormalizeEnv(env)
		s := protocol.BaseStatus{
			BaseMetadata:  protocol.BaseMetadata{Identity: id, Name: name, Version: version, ClusterName: cluster},
			LocalIP:       ip,
			LocalHostName: host,
			Port:          port,
			State:         protocol.BaseStateActivated,
		}
		checkHeartbeatNode(t, Validation{Env: env, AllowLoopbackIP: loopback}, env, s)
	})
}

// checkHeartbeatNode fails t if s passes v but its node or pod IP would be rejected.
func checkHeartbeatNode(t *testing.T, v Validation, env string, s protocol.BaseStatus) {
	t.Helper()
	if err := v.Heartbeat(s); err != nil {
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Fatalf("Heartbeat returned %T, want *FieldError: %v", err, err)
		}
		return
	}
	if p := apiProblems(buildTestNode(env, s)); len(p) > 0 {
		t.Fatalf("accepted heartbeat %+v builds an invalid node: %v", s, p)
	}
	if p := podIPProblems(s.LocalIP); len(p) > 0 {
		t.Fatalf("accepted heartbeat %+v gives an invalid pod IP: %v", s, p)
	}
}
