package main

import (
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// watchHeartbeats subscribes to every heartbeat of the default env and returns a function
// counting the distinct bases seen. mods adjust the client options (TLS, credentials).
func watchHeartbeats(t *testing.T, url string, mods ...func(*paho.ClientOptions)) func() int {
	t.Helper()
	var mu sync.Mutex
	ids := map[string]bool{}
	opts := paho.NewClientOptions().AddBroker(url).SetClientID("watch-" + strings.ReplaceAll(t.Name(), "/", "-"))
	for _, mod := range mods {
		mod(opts)
	}
	c := paho.NewClient(opts)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	t.Cleanup(func() { c.Disconnect(0) })
	tok = c.Subscribe(protocol.Topic(protocol.DefaultEnv, "+", protocol.SuffixHeartbeat), 1, func(_ paho.Client, m paho.Message) {
		p, err := protocol.ParseTopic(m.Topic())
		if err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		ids[p.BaseID] = true
	})
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(ids)
	}
}
