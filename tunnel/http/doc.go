// Package httptunnel implements tunnel.Tunnel over HTTP, the Koupleless arklet's HTTP
// tunnel (docs/http-tunnel.md), for bases that run without an MQTT broker.
//
// Direction base → controller: the Tunnel serves POST /heartbeat (a bare BaseStatus
// without timestamp, stamped with the receive time; answered 200 "SUCCESS", 400 for a
// body it cannot use, 405 for other methods, as the 2.2 controller does) and POST
// /queryBaseline (a BaseMetadata, answered with the JSON array of bizs the consumer hands
// to SendBaseline). Every request is authenticated when a token or client CA is
// configured, rate-bounded per client address, and read through http.MaxBytesReader
// before anything is allocated for it; what cannot be used is dropped with a debug log and
// a counter by reason, never a crash.
//
// Direction controller → base: commands are HTTP calls to
// http://<localIP>:<port>/<command> with the MQTT command bodies. Only the address the
// base's own last valid heartbeat announced is ever called, and only if it passes the
// address rules (no loopback unless allowed, no link-local, unspecified or multicast; by
// default it must also be the address the heartbeat came from): the controller is no SSRF
// proxy. The arklet answers synchronously (an install only once the module started), so
// every call runs in its own goroutine with its own timeout, at most a bounded number per
// base; its answer becomes the event the MQTT tunnel emits for the same reply.
//
// It imports tunnel, pkg/protocol, Prometheus and virtual-kubelet's log package only:
// never k8s.io, paho, provider or pkg/controller.
//
// Usage:
//
//	t, err := httptunnel.New(httptunnel.Config{ListenAddress: ":7777"})
//	if err != nil { … }
//	go t.Run(ctx)     // listens; returns nil when ctx is done
//	<-t.Ready()       // listening
//	for { select { case ev := <-t.Events(): …; case <-ctx.Done(): return } }
//	err = t.InstallBiz(ctx, baseID, biz) // returns once the call started; the result is an event
package httptunnel
