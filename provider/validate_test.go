package provider

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/moduleops/module-controller/pkg/api"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// vectorHeartbeat is the heartbeat of the shared test vectors.
func vectorHeartbeat() protocol.BaseStatus {
	return protocol.BaseStatus{
		BaseMetadata:  protocol.BaseMetadata{Identity: "10.244.0.17", Name: "base", Version: "1.0.0", ClusterName: "default"},
		LocalIP:       "10.244.0.17",
		LocalHostName: "base-7c9d8f6b5-x2k4p",
		State:         "activated",
	}
}

// acceptedChanges turn the vector heartbeat into other heartbeats Validation
// accepts (env "default"); nodes_test.go writes their nodes for the e2e dry run.
var acceptedChanges = map[string]func(*protocol.BaseStatus){
	"vector":         func(*protocol.BaseStatus) {},
	"stock metadata": func(s *protocol.BaseStatus) { s.BaseMetadata.Name = "TO_BE_IMPLEMENTED" },
	"empty labels": func(s *protocol.BaseStatus) {
		s.BaseMetadata.Name, s.BaseMetadata.Version, s.BaseMetadata.ClusterName = "", "", ""
	},
	"no ip":           func(s *protocol.BaseStatus) { s.LocalIP = "" },
	"no hostname":     func(s *protocol.BaseStatus) { s.LocalHostName = "" },
	"upper-case host": func(s *protocol.BaseStatus) { s.LocalHostName = "MacBook-Pro.local" },
	"long host": func(s *protocol.BaseStatus) {
		s.LocalHostName = strings.Repeat("a", 63) + "." + strings.Repeat("b", 63)
	},
	"ipv6":               func(s *protocol.BaseStatus) { s.LocalIP = "2001:db8::17" },
	"public ipv4":        func(s *protocol.BaseStatus) { s.LocalIP = "203.0.113.9" },
	"port 1":             func(s *protocol.BaseStatus) { s.Port = 1 },
	"port 65535":         func(s *protocol.BaseStatus) { s.Port = 65535 },
	"63-char label":      func(s *protocol.BaseStatus) { s.BaseMetadata.Version = strings.Repeat("v", 63) },
	"name identity":      func(s *protocol.BaseStatus) { s.BaseMetadata.Identity = "base-1.eu-west" },
	"state other case":   func(s *protocol.BaseStatus) { s.State = "ACTIVATED" },
	"longest identity":   func(s *protocol.BaseStatus) { s.BaseMetadata.Identity = strings.Repeat("a", 63-len("vnode..default")) },
	"identity with dots": func(s *protocol.BaseStatus) { s.BaseMetadata.Identity = "a.b.c" },
}

func TestValidationHeartbeatAccepts(t *testing.T) {
	for name, change := range acceptedChanges {
		t.Run(name, func(t *testing.T) {
			s := vectorHeartbeat()
			change(&s)
			require.NoError(t, Validation{Env: "default"}.Heartbeat(s))
			requireAPIValid(t, "default", s)
		})
	}
}

func TestValidationHeartbeatRejects(t *testing.T) {
	for _, tc := range []struct {
		name, field, reason string
		change              func(*protocol.BaseStatus)
	}{
		{"empty identity", "baseMetadata.identity", FieldReasonIdentity, func(s *protocol.BaseStatus) { s.BaseMetadata.Identity = "" }},
		{"upper-case identity", "baseMetadata.identity", FieldReasonIdentity, func(s *protocol.BaseStatus) { s.BaseMetadata.Identity = "Base" }},
		{"identity with slash", "baseMetadata.identity", FieldReasonIdentity, func(s *protocol.BaseStatus) { s.BaseMetadata.Identity = "a/b" }},
		{"identity too long", "baseMetadata.identity", FieldReasonTooLong, func(s *protocol.BaseStatus) {
			s.BaseMetadata.Identity = strings.Repeat("a", protocol.MaxBaseIDLength+1)
		}},
		{"node name too long for hostname label", "baseMetadata.identity", FieldReasonTooLong, func(s *protocol.BaseStatus) {
			s.BaseMetadata.Identity = strings.Repeat("a", 64-len("vnode..default"))
		}},
		{"name with space", "baseMetadata.name", FieldReasonLabelValue, func(s *protocol.BaseStatus) { s.BaseMetadata.Name = "my base" }},
		{"name too long", "baseMetadata.name", FieldReasonTooLong, func(s *protocol.BaseStatus) { s.BaseMetadata.Name = strings.Repeat("n", 64) }},
		{"version leading dash", "baseMetadata.version", FieldReasonLabelValue, func(s *protocol.BaseStatus) { s.BaseMetadata.Version = "-1" }},
		{"cluster name slash", "baseMetadata.clusterName", FieldReasonLabelValue, func(s *protocol.BaseStatus) { s.BaseMetadata.ClusterName = "a/b" }},
		{"hostname underscore", "localHostName", FieldReasonHostname, func(s *protocol.BaseStatus) { s.LocalHostName = "my_host" }},
		{"hostname space", "localHostName", FieldReasonHostname, func(s *protocol.BaseStatus) { s.LocalHostName = "my host" }},
		{"hostname too long", "localHostName", FieldReasonTooLong, func(s *protocol.BaseStatus) { s.LocalHostName = strings.Repeat("h", 254) }},
		{"ip unparsable", "localIP", FieldReasonLocalIP, func(s *protocol.BaseStatus) { s.LocalIP = "not-an-ip" }},
		{"ip leading zero", "localIP", FieldReasonLocalIP, func(s *protocol.BaseStatus) { s.LocalIP = "10.244.0.017" }},
		{"ip not canonical", "localIP", FieldReasonLocalIP, func(s *protocol.BaseStatus) { s.LocalIP = "2001:DB8::1" }},
		{"ip v4-mapped", "localIP", FieldReasonLocalIP, func(s *protocol.BaseStatus) { s.LocalIP = "::ffff:10.0.0.1" }},
		{"ip with zone", "localIP", FieldReasonLocalIP, func(s *protocol.BaseStatus) { s.LocalIP = "fe80::1%eth0" }},
		{"ip unspecified v4", "localIP", FieldReasonLocalIP, func(s *protocol.BaseStatus) { s.LocalIP = "0.0.0.0" }},
		{"ip unspecified v6", "localIP", FieldReasonLocalIP, func(s *protocol.BaseStatus) { s.LocalIP = "::" }},
		{"ip multicast", "localIP", FieldReasonLocalIP, func(s *protocol.BaseStatus) { s.LocalIP = "224.0.0.1" }},
		{"ip loopback", "localIP", FieldReasonLocalIP, func(s *protocol.BaseStatus) { s.LocalIP = "127.0.0.1" }},
		{"ip loopback v6", "localIP", FieldReasonLocalIP, func(s *protocol.BaseStatus) { s.LocalIP = "::1" }},
		{"ip link-local", "localIP", FieldReasonLocalIP, func(s *protocol.BaseStatus) { s.LocalIP = "169.254.1.1" }},
		{"ip broadcast", "localIP", FieldReasonLocalIP, func(s *protocol.BaseStatus) { s.LocalIP = "255.255.255.255" }},
		{"ip cidr", "localIP", FieldReasonLocalIP, func(s *protocol.BaseStatus) { s.LocalIP = "10.0.0.1/8" }},
		{"ip too long", "localIP", FieldReasonTooLong, func(s *protocol.BaseStatus) { s.LocalIP = strings.Repeat("1", 40) }},
		{"port negative", "port", FieldReasonPortRange, func(s *protocol.BaseStatus) { s.Port = -1 }},
		{"port too big", "port", FieldReasonPortRange, func(s *protocol.BaseStatus) { s.Port = 65536 }},
		{"state too long", "state", FieldReasonTooLong, func(s *protocol.BaseStatus) { s.State = strings.Repeat("s", MaxStateLength+1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := vectorHeartbeat()
			tc.change(&s)
			err := Validation{Env: "default"}.Heartbeat(s)
			var fe *FieldError
			require.True(t, errors.As(err, &fe), "want *FieldError, got %v", err)
			require.Equal(t, tc.field, fe.Field)
			require.Equal(t, tc.reason, fe.Reason)
			require.Contains(t, FieldReasons, fe.Reason)
			require.NotEmpty(t, fe.Detail)
			require.Contains(t, err.Error(), tc.field)
		})
	}
}

// TestValidationHeartbeatWithoutEnv: without Env only the base-ID rules
// bound the identity.
func TestValidationHeartbeatWithoutEnv(t *testing.T) {
	s := vectorHeartbeat()
	s.BaseMetadata.Identity = strings.Repeat("a", protocol.MaxBaseIDLength)
	require.NoError(t, Validation{}.Heartbeat(s))
	require.Error(t, Validation{Env: "dev"}.Heartbeat(s))
}

func TestValidationHeartbeatLoopbackAllowed(t *testing.T) {
	for _, ip := range []string{"127.0.0.1", "127.1.2.3", "::1"} {
		s := vectorHeartbeat()
		s.LocalIP = ip
		require.NoError(t, Validation{AllowLoopbackIP: true}.Heartbeat(s), ip)
		requireAPIValid(t, "dev", s)
	}
	s := vectorHeartbeat()
	s.LocalIP = "0.0.0.0"
	require.Error(t, Validation{AllowLoopbackIP: true}.Heartbeat(s), "the flag admits loopback only")
}

// TestValidationPortWasNodeBreaking shows why the port rule exists: without it
// a negative port becomes an invalid label value on the node.
func TestValidationPortWasNodeBreaking(t *testing.T) {
	s := vectorHeartbeat()
	s.Port = -1
	require.NotEmpty(t, apiProblems(buildTestNode("default", s)))
	require.Error(t, Validation{}.Heartbeat(s))
}

func TestValidationBiz(t *testing.T) {
	ok := protocol.SimpleBizInfo{Name: "biz1", Version: "0.0.1-SNAPSHOT", State: "activated"}
	require.NoError(t, Validation{}.Biz(ok))
	for _, tc := range []struct {
		name, field, reason string
		change              func(*protocol.SimpleBizInfo)
	}{
		{"empty name", "name", FieldReasonText, func(b *protocol.SimpleBizInfo) { b.Name = "" }},
		{"empty version", "version", FieldReasonText, func(b *protocol.SimpleBizInfo) { b.Version = "" }},
		{"name with newline", "name", FieldReasonText, func(b *protocol.SimpleBizInfo) { b.Name = "biz\n1" }},
		{"version with space", "version", FieldReasonText, func(b *protocol.SimpleBizInfo) { b.Version = "1 0" }},
		{"name invalid utf-8", "name", FieldReasonText, func(b *protocol.SimpleBizInfo) { b.Name = "biz\uFFFD" }},
		{"name too long", "name", FieldReasonTooLong, func(b *protocol.SimpleBizInfo) { b.Name = strings.Repeat("b", MaxBizFieldLength+1) }},
		{"version too long", "version", FieldReasonTooLong, func(b *protocol.SimpleBizInfo) { b.Version = strings.Repeat("v", MaxBizFieldLength+1) }},
		{"state too long", "state", FieldReasonTooLong, func(b *protocol.SimpleBizInfo) { b.State = strings.Repeat("s", MaxStateLength+1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := ok
			tc.change(&b)
			var fe *FieldError
			require.True(t, errors.As(Validation{}.Biz(b), &fe))
			require.Equal(t, tc.field, fe.Field)
			require.Equal(t, tc.reason, fe.Reason)
		})
	}
}

// buildTestNode builds the node the provider would register for s.
func buildTestNode(env string, s protocol.BaseStatus) *corev1.Node {
	cfg := NodeConfig{Env: env, BaseID: s.BaseMetadata.Identity, ControllerVersion: "v0.0.0", MaxPods: 110, Arch: "amd64", EnvTaint: true}
	info := BaseInfo{Status: s}
	return buildNode(cfg, info, Readiness{Reachable: true, Reason: api.ReasonBaseReady}, nil, time.Unix(1736935812, 0))
}

// requireAPIValid fails t if the node or a pod status built from s is one the
// API server would reject.
func requireAPIValid(t testing.TB, env string, s protocol.BaseStatus) {
	t.Helper()
	require.Empty(t, apiProblems(buildTestNode(env, s)))
	require.Empty(t, podIPProblems(s.LocalIP))
}

// apiProblems returns what the API server's node validation (name, labels,
// annotations, taints, duplicate addresses) would object to in n.
func apiProblems(n *corev1.Node) []string {
	var p []string
	add := func(what string, errs []string) {
		for _, e := range errs {
			p = append(p, what+": "+e)
		}
	}
	add("name "+n.Name, validation.IsDNS1123Subdomain(n.Name))
	for k, v := range n.Labels {
		add("label key "+k, validation.IsQualifiedName(k))
		add("label "+k+" value "+v, validation.IsValidLabelValue(v))
	}
	for k := range n.Annotations {
		add("annotation key "+k, validation.IsQualifiedName(strings.ToLower(k)))
	}
	for _, taint := range n.Spec.Taints {
		add("taint key "+taint.Key, validation.IsQualifiedName(taint.Key))
		add("taint value "+taint.Value, validation.IsValidLabelValue(taint.Value))
	}
	seen := map[corev1.NodeAddress]bool{}
	for _, a := range n.Status.Addresses {
		if seen[a] {
			p = append(p, "duplicate address "+a.Address)
		}
		seen[a] = true
		if a.Type == corev1.NodeInternalIP {
			p = append(p, podIPProblems(a.Address)...)
		}
	}
	return p
}

// podIPProblems returns why ip cannot be a new pod's PodIP or HostIP.
func podIPProblems(ip string) []string {
	if ip == "" {
		return nil
	}
	var p []string
	for _, e := range validation.IsValidIP(nil, ip) {
		p = append(p, "ip "+ip+": "+e.Error())
	}
	return p
}
