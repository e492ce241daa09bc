package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/broker"
	"github.com/moduleops/module-controller/pkg/config"
)

// rules returns the non-comment lines of an ACL, sorted.
func rules(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		l = strings.Join(strings.Fields(l), " ")
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// TestBrokerACLMatchesMosquittoACL: the embedded broker enforces exactly the
// rules deploy/mosquitto/acl gives Mosquitto, so both brokers mean the same.
func TestBrokerACLMatchesMosquittoACL(t *testing.T) {
	file, err := os.ReadFile(filepath.Join("..", "..", "deploy", "mosquitto", "acl"))
	require.NoError(t, err)
	require.Equal(t, rules(string(file)), rules(brokerACL("default", "module-controller")))
	_, err = broker.ParseACL(string(file))
	require.NoError(t, err, "the Mosquitto ACL parses with the embedded broker's parser")
}

func TestEmbeddedBrokerConfig(t *testing.T) {
	o := config.NewOptions()
	o.Controller.Env, o.Broker.Address, o.MQTT.Username, o.MQTT.Password, o.Broker.MaxPacketSize = "dev", ":1883", "ctl", "pw", 4096
	o.Complete()
	cfg, err := embeddedBrokerConfig(*o)
	require.NoError(t, err)
	require.NotNil(t, cfg.ACL)
	require.Equal(t, uint32(4096), cfg.MaxPacketSize)
	require.True(t, cfg.ACL.Allowed("10.0.0.1", "koupleless@@@10.0.0.1", "koupleless_dev/10.0.0.1/base/heart", true))
	require.False(t, cfg.ACL.Allowed("10.0.0.1", "koupleless@@@10.0.0.1", "koupleless_dev/10.0.0.2/base/heart", true))
	require.False(t, cfg.ACL.Allowed("10.0.0.1", "koupleless@@@10.0.0.1", "koupleless_dev/10.0.0.1/installBiz", true))
	require.True(t, cfg.ACL.Allowed("ctl", "koupleless@@@x", "koupleless_dev/10.0.0.1/installBiz", true))
	require.Empty(t, cfg.LocalAddress, "no TLS: the tunnel uses the main listener")

	// Loopback without credentials: no ACL, anyone may connect.
	o = config.NewOptions()
	o.Controller.Env, o.Broker.Address = "dev", "127.0.0.1:0"
	o.Complete()
	cfg, err = embeddedBrokerConfig(*o)
	require.NoError(t, err)
	require.Nil(t, cfg.ACL)
	_, err = broker.New(broker.Config{Address: ":0"})
	require.ErrorIs(t, err, broker.ErrAnonymousNotLoopback)
	require.Equal(t, uint32(broker.DefaultMaxPacketSize), config.NewOptions().Broker.MaxPacketSize, "the flag defaults to the broker's default")
}
