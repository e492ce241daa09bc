package controller

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// GuardWrites returns a wrapper for the API client's transport
// (rest.Config.Wrap) that refuses, before it leaves the process, every
// write to a base's virtual node that this replica does not own at that
// moment: the node (create, update, patch, delete, status), its Lease in
// kube-node-lease, and the status of module pods bound to it. The
// goroutines virtual-kubelet runs per base stop when the base is handed
// over; this closes the window in which a replica that was paused past its
// renew deadline resumes and writes before it noticed. Writes to anything
// else pass. A body of a create or pod status update (JSON
// or protobuf) that does not decode passes too.
func GuardWrites(env string, owns Ownership) func(http.RoundTripper) http.RoundTripper {
	return func(rt http.RoundTripper) http.RoundTripper {
		return &writeGuard{next: rt, env: protocol.NormalizeEnv(env), owns: owns}
	}
}

type writeGuard struct {
	next http.RoundTripper
	env  string
	owns Ownership
}

// RoundTrip implements http.RoundTripper.
func (g *writeGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	switch req.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		return g.next.RoundTrip(req)
	}
	nodeName, err := g.nodeOf(req)
	if err != nil {
		return nil, err
	}
	if nodeName == "" {
		return g.next.RoundTrip(req)
	}
	env, baseID, ok := protocol.BaseIDFromNodeName(nodeName)
	if !ok || env != g.env || g.owns.Owns(baseID) {
		return g.next.RoundTrip(req)
	}
	if req.Body != nil {
		_ = req.Body.Close()
	}
	return forbidden(req, fmt.Sprintf("module-controller: this replica does not own base %s (node %s) any more; write refused", baseID, nodeName)), nil
}

// nodeOf returns the virtual node a write is about, or "" if it is about no
// node. It may read (and restore) the request body.
func (g *writeGuard) nodeOf(req *http.Request) (string, error) {
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	switch {
	// /api/v1/nodes[/{name}[/status]]
	case len(parts) >= 3 && parts[0] == "api" && parts[1] == "v1" && parts[2] == "nodes":
		if len(parts) >= 4 {
			return parts[3], nil
		}
		return g.bodyName(req)
	// /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases[/{name}]
	case len(parts) >= 6 && parts[0] == "apis" && parts[1] == "coordination.k8s.io" && parts[3] == "namespaces" &&
		parts[4] == corev1.NamespaceNodeLease && parts[5] == "leases":
		if len(parts) >= 7 {
			return parts[6], nil
		}
		return g.bodyName(req)
	// /api/v1/namespaces/{ns}/pods/{name}/status
	case len(parts) == 7 && parts[0] == "api" && parts[1] == "v1" && parts[2] == "namespaces" && parts[4] == "pods" && parts[6] == "status":
		obj, err := g.readBody(req)
		if pod, ok := obj.(*corev1.Pod); ok {
			return pod.Spec.NodeName, err
		}
		return "", err
	}
	return "", nil
}

// bodyName returns the name of the object in the request body.
func (g *writeGuard) bodyName(req *http.Request) (string, error) {
	obj, err := g.readBody(req)
	if m, ok := obj.(metav1.Object); ok {
		return m.GetName(), err
	}
	return "", err
}

// readBody decodes the request body (JSON or protobuf, whichever client-go
// sent) and puts it back for the real request; a body it cannot decode (a
// patch) yields nil.
func (g *writeGuard) readBody(req *http.Request) (runtime.Object, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	b, err := io.ReadAll(req.Body)
	_ = req.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("reading the request body: %w", err)
	}
	req.Body = io.NopCloser(bytes.NewReader(b))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(b, nil, nil)
	if err != nil {
		return nil, nil //nolint:nilerr // not an object: nothing to guard
	}
	return obj, nil
}

// forbidden is the API server's answer to a refused request, so that the
// client reports it as a Forbidden error.
func forbidden(req *http.Request, msg string) *http.Response {
	status := metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Message: msg, Reason: metav1.StatusReasonForbidden, Code: http.StatusForbidden,
	}
	body, err := json.Marshal(status)
	if err != nil {
		body = []byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}`)
	}
	return &http.Response{
		StatusCode:    http.StatusForbidden,
		Status:        "403 Forbidden",
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": []string{"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}
