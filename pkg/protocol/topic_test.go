package protocol_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/protocol"
)

var (
	allBaseSuffixes = []string{
		protocol.SuffixHeartbeat, protocol.SuffixQueryBaseline, protocol.SuffixHealth, protocol.SuffixSimpleBiz,
		protocol.SuffixLegacyBiz, protocol.SuffixBizOperation, protocol.SuffixBatchInstallResponse,
	}
	allCommandSuffixes = []string{
		protocol.CommandHealth, protocol.CommandQueryAllBiz, protocol.CommandInstallBiz, protocol.CommandUninstallBiz,
		protocol.SuffixBaseline,
	}
)

func TestNormalizeEnv(t *testing.T) {
	tests := []struct{ in, want string }{
		{"dev", "dev"},
		{"DEV", "dev"},
		{"Default", protocol.DefaultEnv},
		{"", protocol.FallbackEnv},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, protocol.NormalizeEnv(tt.in), "NormalizeEnv(%q)", tt.in)
		require.Equal(t, "koupleless_"+tt.want, protocol.EnvPrefix(tt.in))
	}
}

func TestValidateEnv(t *testing.T) {
	for _, env := range []string{"dev", "default", "DEV", "prod-1", "a", strings.Repeat("e", protocol.MaxEnvLength)} {
		require.NoError(t, protocol.ValidateEnv(env), env)
	}
	invalid := []string{
		"", "a.b", "a/b", "a+b", "a#b", "a_b", "-a", "a-", "é", strings.Repeat("e", protocol.MaxEnvLength+1),
	}
	for _, env := range invalid {
		err := protocol.ValidateEnv(env)
		require.ErrorIs(t, err, protocol.ErrInvalidEnv, "%q", env)
		require.Equal(t, "invalid_env", protocol.Reason(err))
	}
}

func TestTopic(t *testing.T) {
	require.Equal(t, "koupleless_dev/10.244.0.17/base/heart",
		protocol.Topic("dev", "10.244.0.17", protocol.SuffixHeartbeat))
	require.Equal(t, "koupleless_default/10.0.0.1/installBiz",
		protocol.Topic("DEFAULT", "10.0.0.1", protocol.CommandInstallBiz))
	require.Equal(t, "koupleless_dev/b/base/baseline", protocol.Topic("", "b", protocol.SuffixBaseline))
}

func TestParseTopicRoundTrip(t *testing.T) {
	for _, env := range []string{"dev", protocol.DefaultEnv, "prod-eu1"} {
		for _, id := range []string{"10.244.0.17", "192.168.1.1", "base-1", "unknown-x7k2p"} {
			for _, suffix := range append(append([]string{}, allBaseSuffixes...), allCommandSuffixes...) {
				topic := protocol.Topic(env, id, suffix)
				parts, err := protocol.ParseTopic(topic)
				require.NoError(t, err, topic)
				require.Equal(t, protocol.TopicParts{Env: env, BaseID: id, Suffix: suffix}, parts)
				require.Equal(t, topic, parts.String())
				require.Equal(t, strings.HasPrefix(suffix, "base/") && suffix != protocol.SuffixBaseline, parts.FromBase(), topic)
			}
		}
	}
}

func TestParseTopicErrors(t *testing.T) {
	tests := []struct {
		topic string
		want  error
	}{
		{"", protocol.ErrUnknownTopic},
		{"foo/10.0.0.1/base/heart", protocol.ErrUnknownTopic},
		{"koupleless/10.0.0.1/base/heart", protocol.ErrUnknownTopic},
		{"koupleless_/10.0.0.1/base/heart", protocol.ErrUnknownTopic},
		{"koupleless_dev", protocol.ErrUnknownTopic},
		{"koupleless_dev/10.0.0.1", protocol.ErrUnknownTopic},
		{"koupleless_dev/10.0.0.1/", protocol.ErrUnknownTopic},
		{"koupleless_dev/10.0.0.1/base", protocol.ErrUnknownTopic},
		{"koupleless_dev/10.0.0.1/base/unknown", protocol.ErrUnknownTopic},
		{"koupleless_dev/10.0.0.1/base/heart/extra", protocol.ErrUnknownTopic},
		{"koupleless_dev/10.0.0.1/batchInstallBiz", protocol.ErrUnknownTopic}, // a command name, not a topic
		{"koupleless_dev/10.0.0.1/switchBiz", protocol.ErrUnknownTopic},
		{"koupleless_dev/10.0.0.1/heart", protocol.ErrUnknownTopic},
		{"koupleless_dev//base/heart", protocol.ErrInvalidBaseID},
		{"koupleless_dev/+/base/heart", protocol.ErrInvalidBaseID},
		{"koupleless_dev/#/base/heart", protocol.ErrInvalidBaseID},
		{"koupleless_dev/Base/base/heart", protocol.ErrInvalidBaseID},
	}
	for _, tt := range tests {
		t.Run(tt.topic, func(t *testing.T) {
			_, err := protocol.ParseTopic(tt.topic)
			require.ErrorIs(t, err, tt.want)
		})
	}
}

func TestBaseSubscriptions(t *testing.T) {
	filters := protocol.BaseSubscriptions("Default")
	require.Equal(t, []string{
		"koupleless_default/+/base/heart",
		"koupleless_default/+/base/queryBaseline",
		"koupleless_default/+/base/health",
		"koupleless_default/+/base/simpleBiz",
		"koupleless_default/+/base/biz",
		"koupleless_default/+/base/bizOperation",
		"koupleless_default/+/base/batchInstallBizResponse",
	}, filters)

	// Every base→controller topic matches exactly one filter; what the controller itself
	// publishes matches none, so it never receives its own commands.
	for _, s := range allBaseSuffixes {
		require.Equal(t, 1, countMatches(filters, protocol.Topic("default", "10.0.0.1", s)), s)
	}
	for _, s := range allCommandSuffixes {
		require.Zero(t, countMatches(filters, protocol.Topic("default", "10.0.0.1", s)), s)
	}
	require.Zero(t, countMatches(filters, protocol.Topic("dev", "10.0.0.1", protocol.SuffixHeartbeat)), "other env")
}

func TestCommandSubscriptions(t *testing.T) {
	filters := protocol.CommandSubscriptions("DEV", "10.0.0.1")
	require.Equal(t, []string{"koupleless_dev/10.0.0.1/+", "koupleless_dev/10.0.0.1/base/baseline"}, filters)

	// A base receives every command addressed to it and nothing a base publishes.
	for _, s := range allCommandSuffixes {
		require.Equal(t, 1, countMatches(filters, protocol.Topic("dev", "10.0.0.1", s)), s)
		require.Zero(t, countMatches(filters, protocol.Topic("dev", "10.0.0.2", s)), "other base: %s", s)
	}
	for _, s := range allBaseSuffixes {
		require.Zero(t, countMatches(filters, protocol.Topic("dev", "10.0.0.1", s)), s)
	}
}

func countMatches(filters []string, topic string) int {
	n := 0
	for _, f := range filters {
		if matchFilter(f, topic) {
			n++
		}
	}
	return n
}

func TestValidateBaseID(t *testing.T) {
	valid := []string{
		"10.244.0.17", "192.168.1.1", "0.0.0.0", "base-1", "unknown-ab1cd", "a", "a.b-c.d",
		strings.Repeat("a", protocol.MaxBaseIDLength),
	}
	for _, id := range valid {
		require.NoError(t, protocol.ValidateBaseID(id), id)
	}
	invalid := []string{
		"", "a/b", "10.0.0.1+", "#", "+", "Base", "a_b", "a..b", ".a", "a.", "-a", "a-", "a.-b", "a b", "ä",
		"fe80::1", strings.Repeat("a", protocol.MaxBaseIDLength+1),
	}
	for _, id := range invalid {
		err := protocol.ValidateBaseID(id)
		require.ErrorIs(t, err, protocol.ErrInvalidBaseID, "%q", id)
		require.Equal(t, "invalid_base_id", protocol.Reason(err))
	}
}

func TestNodeName(t *testing.T) {
	tests := []struct {
		env, id, want string
	}{
		{"dev", "10.244.0.17", "vnode.10.244.0.17.dev"},
		{"DEFAULT", "192.168.1.1", "vnode.192.168.1.1.default"},
		{"prod-1", "base-a", "vnode.base-a.prod-1"},
		{"dev", "a.b.c", "vnode.a.b.c.dev"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			name := protocol.NodeName(tt.env, tt.id)
			require.Equal(t, tt.want, name)
			env, id, ok := protocol.BaseIDFromNodeName(name)
			require.True(t, ok)
			require.Equal(t, protocol.NormalizeEnv(tt.env), env)
			require.Equal(t, tt.id, id)
		})
	}

	// The longest base ID with the longest env still gives a legal node name.
	longest := protocol.NodeName(strings.Repeat("e", protocol.MaxEnvLength), strings.Repeat("a", protocol.MaxBaseIDLength))
	require.Len(t, longest, protocol.MaxNodeNameLength)
}

func TestBaseIDFromNodeNameRejects(t *testing.T) {
	for _, name := range []string{
		"", "vnode", "vnode.", "vnode.dev", "vnode..dev", "vnode.10.0.0.1.", "node.10.0.0.1.dev",
		"vnodex.10.0.0.1.dev", "kind-control-plane",
	} {
		_, _, ok := protocol.BaseIDFromNodeName(name)
		require.False(t, ok, name)
	}
}
