// Package kubeletapi serves the kubelet API of every virtual node of this
// replica, so that `kubectl logs` works on module pods.
//
// Each virtual node advertises this server as its kubelet (its Hostname
// address and status.daemonEndpoints.kubeletEndpoint.Port). The API server
// dials it for GET /containerLogs/{namespace}/{pod}/{container}; a module's
// logs are its base JVM's output, so the answer is the log stream of the
// base's own Pod, read through the API server (pods/log) like kubectl would.
// exec, attach and port-forward answer at once that module pods do not
// support them.
//
// Nothing is served to anonymous callers: with a client CA the caller must
// present a certificate it signed (the API server's
// --kubelet-client-certificate), otherwise a bearer token that a
// TokenReview accepts; either identity must then be allowed nodes/proxy by a
// SubjectAccessReview, as a real kubelet with webhook authorization does.
package kubeletapi
