package framework

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// FakeKubelet stands in for the kubelet of one real Node: an HTTPS server on
// a free loopback port, named in its Node's status, that serves
// GET /containerLogs/{namespace}/{pod}/{container} from lines the test
// appends (tailLines and follow honoured). It requires the API server's
// kubelet client certificate, as a kubelet with x509 authentication does.
// It serves nothing else.
type FakeKubelet struct {
	// Node is the name of its Node.
	Node string
	// Addr is host:port it listens on.
	Addr string

	srv  *http.Server
	done chan struct{}

	mu      sync.Mutex
	logs    map[string][]string // by namespace/pod/container
	changed chan struct{}       // closed and replaced when a line is appended
}

// StartFakeKubelet starts a fake kubelet and creates its Node (Ready, on
// 127.0.0.1) in c; both go away on cleanup.
func StartFakeKubelet(t testing.TB, c *Cluster) *FakeKubelet {
	t.Helper()
	ca, err := newCertAuthority("fake-kubelet-ca")
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.issue(certRequest{commonName: "fake-kubelet", hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(serving.certPEM, serving.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	clientCA, err := os.ReadFile(c.KubeletClientCAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(clientCA)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	k := &FakeKubelet{
		Node:    RandomName("host-", 6),
		Addr:    ln.Addr().String(),
		done:    make(chan struct{}),
		logs:    map[string][]string{},
		changed: make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", k.serveLogs)
	k.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = k.srv.Serve(ln) }()
	t.Cleanup(func() {
		close(k.done)
		_ = k.srv.Close()
	})

	ctx := t.Context()
	_, port, _ := net.SplitHostPort(k.Addr)
	portNum, _ := strconv.Atoi(port)
	node, err := c.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: k.Node, Labels: map[string]string{corev1.LabelHostname: k.Node},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Client.CoreV1().Nodes().Delete(context.WithoutCancel(t.Context()), k.Node, metav1.DeleteOptions{})
	})
	now := metav1.Now()
	status := corev1.NodeStatus{
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
			{Type: corev1.NodeHostName, Address: "127.0.0.1"},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(portNum)}},
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "FakeKubelet",
			LastHeartbeatTime: now, LastTransitionTime: now,
		}},
	}
	// The node controller of kube-controller-manager writes new nodes too
	// (taints): on a conflict, read the node again and retry.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node.Status = status
		_, err := c.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			if fresh, getErr := c.Client.CoreV1().Nodes().Get(ctx, k.Node, metav1.GetOptions{}); getErr == nil {
				node = fresh
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// AppendLog adds lines to the log of namespace/pod/container; followed
// streams receive them.
func (k *FakeKubelet) AppendLog(namespace, pod, container string, lines ...string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	key := namespace + "/" + pod + "/" + container
	k.logs[key] = append(k.logs[key], lines...)
	close(k.changed)
	k.changed = make(chan struct{})
}

// from returns the lines of key from index i on, and the channel closed at
// the next append.
func (k *FakeKubelet) from(key string, i int) ([]string, chan struct{}) {
	k.mu.Lock()
	defer k.mu.Unlock()
	lines := k.logs[key]
	if i > len(lines) {
		i = len(lines)
	}
	return append([]string(nil), lines[i:]...), k.changed
}

func (k *FakeKubelet) serveLogs(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("namespace") + "/" + r.PathValue("pod") + "/" + r.PathValue("container")
	q := r.URL.Query()
	follow := q.Get("follow") == "true"
	lines, changed := k.from(key, 0)
	k.mu.Lock()
	_, exists := k.logs[key]
	k.mu.Unlock()
	if !exists {
		http.Error(w, fmt.Sprintf("fake kubelet: no container %s", key), http.StatusNotFound)
		return
	}
	sent := len(lines)
	if t := q.Get("tailLines"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			http.Error(w, "fake kubelet: bad tailLines", http.StatusBadRequest)
			return
		}
		lines = lines[max(0, len(lines)-n):]
	}
	w.Header().Set("Content-Type", "text/plain")
	write := func(lines []string) error {
		if len(lines) == 0 {
			return nil
		}
		if _, err := w.Write([]byte(strings.Join(lines, "\n") + "\n")); err != nil {
			return err
		}
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		return nil
	}
	if err := write(lines); err != nil || !follow {
		return
	}
	for {
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		case <-k.done:
			return
		}
		var more []string
		more, changed = k.from(key, sent)
		sent += len(more)
		if err := write(more); err != nil {
			return
		}
	}
}
