package broker

import (
	"testing"

	"github.com/stretchr/testify/require"
)

const testACL = `
# anonymous clients
topic read public/#

pattern write koupleless_default/%u/base/heart
pattern read koupleless_default/%u/+
pattern read koupleless_default/%u/base/baseline
pattern readwrite clients/%c/#

user module-controller
topic readwrite koupleless_default/#
user reader
topic read koupleless_default/+/base/heart
`

func TestACLAllowed(t *testing.T) {
	acl, err := ParseACL(testACL)
	require.NoError(t, err)
	tests := []struct {
		name, user, client, topic string
		write, ok                 bool
	}{
		{"base publishes its heartbeat", "10.0.0.1", "koupleless@@@10.0.0.1", "koupleless_default/10.0.0.1/base/heart", true, true},
		{"base heartbeats as another base", "10.0.0.1", "c", "koupleless_default/10.0.0.2/base/heart", true, false},
		{"base commands itself", "10.0.0.1", "c", "koupleless_default/10.0.0.1/installBiz", true, false},
		{"base commands another base", "10.0.0.1", "c", "koupleless_default/10.0.0.2/installBiz", true, false},
		{"base reads its commands", "10.0.0.1", "c", "koupleless_default/10.0.0.1/installBiz", false, true},
		{"base subscribes to its commands", "10.0.0.1", "c", "koupleless_default/10.0.0.1/+", false, true},
		{"base subscribes to its baseline", "10.0.0.1", "c", "koupleless_default/10.0.0.1/base/baseline", false, true},
		{"base subscribes to another base", "10.0.0.1", "c", "koupleless_default/10.0.0.2/+", false, false},
		{"base subscribes to every base", "10.0.0.1", "c", "koupleless_default/+/installBiz", false, false},
		{"base subscribes to everything", "10.0.0.1", "c", "#", false, false},
		{"base subscribes under itself with #", "10.0.0.1", "c", "koupleless_default/10.0.0.1/#", false, false},
		{"base reads its own heartbeats", "10.0.0.1", "c", "koupleless_default/10.0.0.1/base/heart", false, false},
		{"base in another env", "10.0.0.1", "c", "koupleless_prod/10.0.0.1/base/heart", true, false},
		{"wildcard user name grants nothing", "+", "c", "koupleless_default/+/base/heart", true, false},
		{"user name with a slash grants nothing", "a/b", "c", "koupleless_default/a/b/base/heart", true, false},
		{"client id pattern", "x", "dev-1", "clients/dev-1/a/b", true, true},
		{"client id pattern, other id", "x", "dev-1", "clients/dev-2/a", true, false},
		{"controller subscribes to all heartbeats", "module-controller", "c", "koupleless_default/+/base/heart", false, true},
		{"controller subscribes to the env", "module-controller", "c", "koupleless_default/#", false, true},
		{"controller commands a base", "module-controller", "c", "koupleless_default/10.0.0.1/installBiz", true, true},
		{"controller outside its env", "module-controller", "c", "koupleless_prod/10.0.0.1/installBiz", true, false},
		{"controller $SYS", "module-controller", "c", "$SYS/broker/clients", false, false},
		{"read-only user cannot write", "reader", "c", "koupleless_default/1/base/heart", true, false},
		{"read-only user reads", "reader", "c", "koupleless_default/+/base/heart", false, true},
		{"read-only user: filter wider than the rule", "reader", "c", "koupleless_default/#", false, false},
		{"anonymous reads public", "", "c", "public/news", false, true},
		{"anonymous reads public root", "", "c", "public", false, true},
		{"anonymous writes public", "", "c", "public/news", true, false},
		{"anonymous gets no pattern", "", "c", "koupleless_default//base/heart", true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.ok, acl.Allowed(tc.user, tc.client, tc.topic, tc.write))
		})
	}
}

func TestParseACLErrors(t *testing.T) {
	for _, text := range []string{
		"topic deny a/b",
		"topic read a/#/b",
		"topic read a/b+",
		"user",
		"pattern",
		"topic read a b c",
		"bogus a",
	} {
		t.Run(text, func(t *testing.T) {
			_, err := ParseACL(text)
			require.Error(t, err)
		})
	}
}
