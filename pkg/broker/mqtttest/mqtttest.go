// Package mqtttest holds the MQTT client side of tests: connecting a paho
// client to a test broker and waiting for its tokens.
package mqtttest

import (
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Timeout bounds every wait for a token.
const Timeout = 10 * time.Second

// Wait waits for tok and returns its error, or an error if it did not
// complete within Timeout or the test ended first.
func Wait(tb testing.TB, tok paho.Token) error {
	tb.Helper()
	timer := time.NewTimer(Timeout)
	defer timer.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-tb.Context().Done():
		return tb.Context().Err()
	case <-timer.C:
		return errors.New("mqtt operation timed out")
	}
}

// Require waits for tok and fails the test unless it succeeded.
func Require(tb testing.TB, tok paho.Token) {
	tb.Helper()
	if err := Wait(tb, tok); err != nil {
		tb.Fatalf("mqtt: %v", err)
	}
}

// Options are the options of a test client of url: a random client ID with
// prefix, a clean session, no auto-reconnect and a 5 s connect timeout.
// Callers add credentials, TLS or handlers.
func Options(url, clientIDPrefix string) *paho.ClientOptions {
	return paho.NewClientOptions().AddBroker(url).
		SetClientID(clientIDPrefix + strings.ToLower(rand.Text()[:8])).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
}

// Connect connects a client with opts, disconnected when the test ends.
func Connect(tb testing.TB, opts *paho.ClientOptions) (paho.Client, error) {
	tb.Helper()
	c := paho.NewClient(opts)
	if err := Wait(tb, c.Connect()); err != nil {
		return nil, err
	}
	tb.Cleanup(func() { c.Disconnect(50) })
	return c, nil
}
