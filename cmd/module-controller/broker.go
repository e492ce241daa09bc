package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"github.com/moduleops/module-controller/pkg/broker"
	"github.com/moduleops/module-controller/pkg/config"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// brokerACL returns the topic ACL, in Mosquitto's acl_file format, that the
// embedded broker enforces for env: the rules of deploy/mosquitto/acl
// (TestBrokerACLMatchesMosquittoACL keeps them equal). A base, whose MQTT user
// name is its identity, may publish only its own messages and read only its
// own commands; the controller's user reads and writes the whole env.
func brokerACL(env, controllerUser string) string {
	var b strings.Builder
	for _, filter := range protocol.BaseSubscriptions(env) {
		// koupleless_<env>/+/base/... with the identity level pinned to the user.
		b.WriteString("pattern write " + strings.Replace(filter, "/+/", "/%u/", 1) + "\n")
	}
	for _, filter := range protocol.CommandSubscriptions(env, "%u") {
		b.WriteString("pattern read " + filter + "\n")
	}
	b.WriteString("user " + controllerUser + "\n")
	b.WriteString("topic readwrite " + protocol.EnvPrefix(env) + "/#\n")
	return b.String()
}

// embeddedBrokerConfig maps the settings onto the embedded broker's. With
// credentials, the ACL of brokerACL applies; without (loopback only, which
// opts.Validate ensures), every client may use every topic. With TLS the
// listener is TLS only and the controller's own tunnel connects through a
// plain loopback listener of the same broker.
func embeddedBrokerConfig(opts config.Options) (broker.Config, error) {
	cfg := opts.Broker
	if cfg.Username != "" {
		acl, err := broker.ParseACL(brokerACL(opts.Controller.Env, cfg.Username))
		if err != nil {
			return cfg, err
		}
		cfg.ACL = acl
	}
	if opts.EmbeddedBrokerTLSCertPath != "" {
		cert, err := tls.LoadX509KeyPair(opts.EmbeddedBrokerTLSCertPath, opts.EmbeddedBrokerTLSKeyPath)
		if err != nil {
			return cfg, fmt.Errorf("embedded broker certificate: %w", err)
		}
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if opts.EmbeddedBrokerClientCAPath != "" {
			pem, err := os.ReadFile(opts.EmbeddedBrokerClientCAPath)
			if err != nil {
				return cfg, fmt.Errorf("embedded broker client CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return cfg, fmt.Errorf("embedded broker client CA %s: no PEM certificate found", opts.EmbeddedBrokerClientCAPath)
			}
			cfg.TLS.ClientCAs, cfg.TLS.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		cfg.LocalAddress = "127.0.0.1:0"
	}
	return cfg, nil
}
