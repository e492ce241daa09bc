// Package broker runs the MQTT broker that module-controller embeds by default,
// so a single binary is enough to connect Koupleless bases. It wraps
// github.com/mochi-mqtt/server/v2 with one TCP (optionally TLS) listener and
// either no authentication or a single username/password pair.
//
// The package knows nothing about the Koupleless protocol, Kubernetes or the
// rest of the project: it moves MQTT packets only. It logs through
// virtual-kubelet's log package, like the rest of the project.
//
// Usage:
//
//	b, err := broker.New(broker.Config{Address: "127.0.0.1:0"})
//	if err != nil { ... }
//	addr := b.Addr() // the bound address, known as soon as New returns
//	err = b.Run(ctx) // serves until ctx is cancelled
package broker
