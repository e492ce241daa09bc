// Package basesim simulates Koupleless Java bases (the arklet runtime with its
// MQTT tunnel) on the wire, for tests, end-to-end runs and benchmarks of the
// controller.
//
// With Config.Tunnel TunnelHTTP a Base speaks the arklet HTTP tunnel instead: it serves
// POST /<command> on its own HTTP server (answered synchronously, an install once the biz
// started), posts a bare heartbeat announcing that server's real port to
// Config.HTTPEndpoint every HeartbeatInterval, and never asks for a baseline.
//
// A Base connects to an MQTT broker the way a real base does (client id
// "<prefix>@@@<identity>", clean session, automatic reconnect, QoS 1
// subscriptions to koupleless_<env>/<identity>/+ and …/base/baseline made in
// the connect handler), publishes queryBaseline once and then a heartbeat
// every HeartbeatInterval, and answers installBiz, uninstallBiz, the baseline
// (batchInstallBiz), health and queryAllBiz with the payloads a real base
// sends: the shapes, codes and messages of docs/protocol.md ("Messages"),
// SOFAArk's rules for a second version of an active biz and the per-biz
// command lock that fails rather than waits (both in "Base behaviours a
// controller must know"). Knobs inject what real bases do when things go
// wrong: slow installs, failed installs, unreachable jars in a baseline, a
// silent base, a dead heartbeat task, a JVM restart and raw garbage.
//
// A Base costs one paho client and one runtime timer: there is no goroutine of
// its own while it is idle, so a thousand bases fit in one process; Fleet
// starts and stops many of them.
//
// The package imports pkg/protocol for topics and payload types, paho for
// MQTT and virtual-kubelet's log package for logging. It must not import the
// controller, the provider or the tunnel packages: it is the other side of the
// wire.
//
// Usage:
//
//	b, err := basesim.New(basesim.Config{Broker: "tcp://127.0.0.1:1883", Identity: "10.0.0.1"})
//	if err != nil { ... }
//	if err := b.Start(ctx); err != nil { ... } // connected, subscribed, queryBaseline and first heartbeat sent
//	defer b.Stop()
//	b.SetInstallDelay(2 * time.Second)
//	...
//	n := b.ReceivedCount(protocol.CommandInstallBiz, "biz1:0.0.1")
//	bizs := b.Bizs()
package basesim
