// Package broker runs the MQTT broker that module-controller embeds by default,
// so a single binary is enough to connect Koupleless bases. It wraps
// github.com/mochi-mqtt/server/v2 with one TCP (optionally TLS) listener.
//
// It is closed by default: without credentials it admits anonymous clients
// only on a loopback address (New refuses any other); with them it admits one
// configured user (the controller's) and the users of a password file in
// mosquitto_passwd format (the bases), re-read when it changes. An ACL in
// Mosquitto's acl_file format (ParseACL, with %u and %c patterns) limits what
// each client may publish and subscribe to. Every packet is bounded by
// Config.MaxPacketSize before it is read, and retained messages are never
// stored.
//
// The package knows nothing about the Koupleless protocol, Kubernetes or the
// rest of the project: it moves MQTT packets only; the caller supplies the
// ACL. It logs through virtual-kubelet's log package, like the rest of the
// project.
//
// Usage:
//
//	b, err := broker.New(broker.Config{Address: "127.0.0.1:0"})
//	if err != nil { ... }
//	addr := b.Addr() // the bound address, known as soon as New returns
//	err = b.Run(ctx) // serves until ctx is cancelled
package broker
