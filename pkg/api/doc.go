// Package api holds the names ModuleController reads and writes on
// Kubernetes objects: the labels, taints and annotations of virtual nodes
// and module pods, the container environment variable of a biz version, and
// the condition and Event reasons that kubectl describe shows. The values are
// the Koupleless reference controller's where it had them, so existing
// selectors and scripts keep working. It imports the standard library only:
// every layer, and e2e, may use it.
package api
