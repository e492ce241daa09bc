// Package framework is the e2e test bed: it starts a real Kubernetes control
// plane (etcd, kube-apiserver, kube-scheduler, kube-controller-manager built by
// `make controlplane`) and real MQTT brokers (the embedded pkg/broker or
// Debian's mosquitto) on free loopback ports, and stops every process it
// started when the test ends, fails or times out.
//
// It is used only by the e2e tests (//go:build e2e) and by e2e/cmd/localcluster;
// nothing in the product imports it. Like the e2e tests it treats the controller
// as a black box and must not import provider or pkg/controller.
//
// In a test:
//
//	c := framework.StartCluster(t, framework.Options{})
//	c.Client.CoreV1().Nodes().Create(...)
//	b := framework.StartBroker(t, framework.Mosquitto, framework.WithAuth("u", "p"))
//
// Outside tests, Start and Cluster.Stop do the same without a testing.TB.
package framework
