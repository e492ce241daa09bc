package kubeletapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/moduleops/module-controller/pkg/api"
	"github.com/moduleops/module-controller/pkg/certtest"
)

const (
	baseIP    = "10.244.1.7"
	vnodeName = "vnode." + baseIP + ".default"
	token     = "good-token"
)

// world is a fake cluster with a module pod on a virtual node whose base
// runs as pod apps/base-7d9f on real node worker-1.
type world struct {
	client *fake.Clientset

	mu      sync.Mutex
	logOpts []*corev1.PodLogOptions // pods/log requests, in order
	logPods []string
	sars    []authorizationv1.SubjectAccessReviewSpec
	allow   bool
}

func newWorld(t *testing.T, objects ...runtime.Object) *world {
	t.Helper()
	modulePod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "mods", Name: "biz1-abc"},
		Spec:       corev1.PodSpec{NodeName: vnodeName, Containers: []corev1.Container{{Name: "biz1"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: baseIP},
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: vnodeName, Labels: map[string]string{api.LabelBaseHostName: "base-7d9f"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: baseIP},
			{Type: corev1.NodeHostName, Address: "10.0.0.9"},
		}},
	}
	decoy := &corev1.Pod{ // same IP, not Running: an old pod of a deleted node
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "base-old"},
		Spec:       corev1.PodSpec{NodeName: "worker-9", Containers: []corev1.Container{{Name: "base"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodFailed, PodIP: baseIP},
	}
	base := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "base-7d9f", UID: "base-uid"},
		Spec:       corev1.PodSpec{NodeName: "worker-1", Containers: []corev1.Container{{Name: "base"}, {Name: "sidecar"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: baseIP},
	}
	w := &world{allow: true}
	w.client = fake.NewClientset(append([]runtime.Object{modulePod, node, decoy, base}, objects...)...)
	w.client.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		if tr.Spec.Token == token {
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{
				Username: "system:serviceaccount:ops:reader", UID: "u1", Groups: []string{"system:serviceaccounts"},
			}}
		}
		return true, tr, nil
	})
	w.client.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sar := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview).DeepCopy()
		w.mu.Lock()
		defer w.mu.Unlock()
		w.sars = append(w.sars, sar.Spec)
		sar.Status.Allowed = w.allow
		return true, sar, nil
	})
	w.client.PrependReactor("get", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "log" {
			return false, nil, nil
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		g := a.(k8stesting.GenericAction)
		w.logOpts = append(w.logOpts, g.GetValue().(*corev1.PodLogOptions))
		w.logPods = append(w.logPods, a.GetNamespace())
		return true, &runtime.Unknown{Raw: []byte("base line 1\nbase line 2\n")}, nil
	})
	return w
}

func (w *world) server(t *testing.T, mod func(*Config)) *Server {
	t.Helper()
	cfg := Config{Client: w.client, Env: "default", ListenAddress: "127.0.0.1:0", Hosts: []string{"127.0.0.1"}}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.listener.Close() })
	return s
}

// get sends GET path with the bearer token (none if empty) to h.
func get(h http.Handler, path, bearer string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	if bearer != "" {
		r.Header.Set("Authorization", "Bearer "+bearer)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func TestContainerLogsStreamBasePodLogs(t *testing.T) {
	w := newWorld(t)
	s := w.server(t, nil)
	rec := get(s.Handler(), "/containerLogs/mods/biz1-abc/biz1?follow=true&tailLines=5&timestamps=true&limitBytes=100&sinceSeconds=30&previous=true", token)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, "base line 1\nbase line 2\n", rec.Body.String())
	require.Equal(t, []string{"apps"}, w.logPods)
	require.Equal(t, &corev1.PodLogOptions{
		Container: "base", Follow: true, Previous: true, Timestamps: true,
		TailLines: new(int64(5)), LimitBytes: new(int64(100)), SinceSeconds: new(int64(30)),
	}, w.logOpts[0], "every option is handed on; the base's first container by default")

	since := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	rec = get(s.Handler(), "/containerLogs/mods/biz1-abc/biz1?sinceTime="+since.Format(time.RFC3339), token)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.True(t, w.logOpts[1].SinceTime.Time.Equal(since))
	require.Nil(t, w.logOpts[1].TailLines)

	// Authorization is checked once, then cached.
	require.Len(t, w.sars, 1)
	require.Equal(t, authorizationv1.SubjectAccessReviewSpec{
		User: "system:serviceaccount:ops:reader", UID: "u1", Groups: []string{"system:serviceaccounts"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "get", Resource: "nodes", Subresource: "proxy"},
	}, w.sars[0])
}

func TestContainerLogsBaseContainerAndLookup(t *testing.T) {
	w := newWorld(t)
	s := w.server(t, func(c *Config) { c.BaseContainer = "sidecar" })
	rec := get(s.Handler(), "/containerLogs/mods/biz1-abc/biz1", token)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, "sidecar", w.logOpts[0].Container)

	s = w.server(t, func(c *Config) { c.BaseContainer = "nope" })
	rec = get(s.Handler(), "/containerLogs/mods/biz1-abc/biz1", token)
	require.Equal(t, http.StatusInternalServerError, rec.Code, "a 5xx, whose text the API server shows")
	require.Contains(t, rec.Body.String(), `has no container "nope"`)

	// A lookup function (the controller's pod cache) replaces the LIST.
	var asked []string
	s = w.server(t, func(c *Config) {
		c.BasePods = func(_ context.Context, ip string) ([]*corev1.Pod, error) {
			asked = append(asked, ip)
			return []*corev1.Pod{{
				ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "base-7d9f", UID: "base-uid"},
				Spec:       corev1.PodSpec{NodeName: "worker-1"},
				Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip},
			}}, nil
		}
	})
	rec = get(s.Handler(), "/containerLogs/mods/biz1-abc/biz1", token)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, []string{baseIP}, asked)
}

func TestContainerLogsErrors(t *testing.T) {
	realPod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web"},
		Spec:       corev1.PodSpec{NodeName: "worker-1", Containers: []corev1.Container{{Name: "web"}}},
	}
	w := newWorld(t, realPod)
	s := w.server(t, nil)
	for _, tc := range []struct {
		path, want string
		code       int
	}{
		{"/containerLogs/mods/missing/biz1", "not found", http.StatusNotFound},
		{"/containerLogs/apps/web/web", "is not a module pod on a virtual node of env default", http.StatusNotFound},
		{"/containerLogs/mods/biz1-abc/other", `has no container "other"`, http.StatusNotFound},
		{"/containerLogs/mods/biz1-abc/biz1?tailLines=x", "tailLines", http.StatusBadRequest},
		{"/containerLogs/mods/biz1-abc/biz1?sinceSeconds=5&sinceTime=2026-12-07T10:00:00Z", "both", http.StatusBadRequest},
		{"/containerLogs/mods/biz1-abc/biz1?limitBytes=0", "limitBytes", http.StatusBadRequest},
	} {
		rec := get(s.Handler(), tc.path, token)
		require.Equal(t, tc.code, rec.Code, tc.path+": "+rec.Body.String())
		require.Contains(t, rec.Body.String(), tc.want, tc.path)
	}
	require.Empty(t, w.logOpts, "no log stream opened for a bad request")
}

func TestContainerLogsBaseNotInCluster(t *testing.T) {
	w := newWorld(t)
	require.NoError(t, w.client.CoreV1().Pods("apps").Delete(t.Context(), "base-7d9f", metav1.DeleteOptions{}))
	// A module pod with the base's IP on the virtual node is no base pod.
	s := w.server(t, nil)
	rec := get(s.Handler(), "/containerLogs/mods/biz1-abc/biz1", token)
	require.Equal(t, http.StatusInternalServerError, rec.Code, "a 5xx, whose text the API server shows")
	require.Contains(t, rec.Body.String(), "is not a pod in this cluster")
	require.Contains(t, rec.Body.String(), baseIP)
}

func TestUnsupportedCallsAnswerAtOnce(t *testing.T) {
	w := newWorld(t)
	s := w.server(t, nil)
	for _, path := range []string{"/exec/mods/biz1-abc/biz1?command=sh", "/attach/mods/biz1-abc/biz1", "/portForward/mods/biz1-abc"} {
		r := httptest.NewRequest(http.MethodPost, path, nil)
		r.Header.Set("Authorization", "Bearer "+token)
		r.Header.Set("Connection", "Upgrade")
		r.Header.Set("Upgrade", "SPDY/3.1")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, r)
		require.Equal(t, http.StatusBadRequest, rec.Code, path)
		require.Contains(t, rec.Body.String(), "not supported for module pods", path)
	}
	require.Equal(t, "create", w.sars[0].ResourceAttributes.Verb, "POST is authorized as create, like a kubelet does")
	rec := get(s.Handler(), "/stats/summary", token)
	require.Equal(t, http.StatusNotFound, rec.Code)
}

func TestAuthRefusesAnonymousAndForbidden(t *testing.T) {
	w := newWorld(t)
	s := w.server(t, nil)
	for _, bearer := range []string{"", "wrong-token", strings.Repeat("x", maxTokenBytes+1)} {
		rec := get(s.Handler(), "/containerLogs/mods/biz1-abc/biz1", bearer)
		require.Equal(t, http.StatusUnauthorized, rec.Code)
	}
	r := httptest.NewRequest(http.MethodGet, "/containerLogs/mods/biz1-abc/biz1", nil)
	r.Header.Set("Authorization", "Basic dXNlcjpwYXNz")
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, r)
	require.Equal(t, http.StatusUnauthorized, rec.Code, "only bearer tokens")

	w.allow = false
	rec = get(s.Handler(), "/containerLogs/mods/biz1-abc/biz1", token)
	require.Equal(t, http.StatusForbidden, rec.Code)
	require.Contains(t, rec.Body.String(), "nodes/proxy")
	require.Empty(t, w.logOpts, "nothing is read for a refused caller")
}

func TestClientCertificateAuth(t *testing.T) {
	ca := certtest.NewCA(t, "kubelet-client-ca")
	_, _, apiserver := ca.Client("kube-apiserver-kubelet-client")
	other := certtest.NewCA(t, "other-ca")
	_, _, stranger := other.Client("stranger")
	w := newWorld(t)
	s := w.server(t, func(c *Config) { c.ClientCAFile = ca.CAFile })
	go func() { _ = s.Run(t.Context()) }()

	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, // self-signed serving certificate; the API server does not verify it either unless told to
			Certificates:       certs,
			MinVersion:         tls.VersionTLS12,
		}}}
	}
	url := "https://" + s.Addr() + "/containerLogs/mods/biz1-abc/biz1?tailLines=1"
	resp, err := client(apiserver).Get(url)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Equal(t, "base line 1\nbase line 2\n", string(body))
	require.Equal(t, "kube-apiserver-kubelet-client", w.sars[0].User, "the certificate's identity is authorized too")

	for name, c := range map[string]*http.Client{"no certificate": client(), "another CA's certificate": client(stranger)} {
		resp, err := c.Get(url)
		if err == nil {
			_ = resp.Body.Close()
		}
		require.Error(t, err, name+": the TLS handshake fails")
	}
	// A bearer token is no substitute for the certificate.
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = client().Do(req)
	if err == nil {
		_ = resp.Body.Close()
	}
	require.Error(t, err)
}

func TestSelfSignedCertificateNamesHosts(t *testing.T) {
	cert, err := selfSigned([]string{"10.0.0.9", "module-controller.module-controller.svc", ""}, time.Now())
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	require.NoError(t, err)
	require.Equal(t, "10.0.0.9", leaf.IPAddresses[0].String())
	require.Equal(t, []string{"module-controller.module-controller.svc"}, leaf.DNSNames)
	require.NoError(t, leaf.VerifyHostname("10.0.0.9"))
}

func TestServingCertificateFromFiles(t *testing.T) {
	ca := certtest.NewCA(t, "serving-ca")
	certFile, keyFile, _ := ca.Server("kubelet")
	w := newWorld(t)
	s := w.server(t, func(c *Config) { c.CertFile, c.KeyFile = certFile, keyFile })
	go func() { _ = s.Run(t.Context()) }()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}}
	resp, err := hc.Get("https://" + s.Addr() + "/containerLogs/mods/biz1-abc/biz1")
	require.NoError(t, err, "the certificate from the files verifies")
	_ = resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	_, err = New(Config{Client: w.client, Env: "default", ListenAddress: "127.0.0.1:0", CertFile: certFile})
	require.Error(t, err, "a certificate needs its key")
}

func TestStreamLimit(t *testing.T) {
	w := newWorld(t)
	s := w.server(t, func(c *Config) { c.MaxStreams = 1 })
	entered, release := make(chan struct{}), make(chan struct{})
	h := s.limitStreams(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		close(entered)
		<-release
	}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/containerLogs/a/b/c", nil))
	}()
	<-entered
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/containerLogs/a/b/c", nil))
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	close(release)
	<-done
	rec = httptest.NewRecorder()
	h2 := s.limitStreams(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	h2.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/containerLogs/a/b/c", nil))
	require.Equal(t, http.StatusOK, rec.Code, "the slot is free again")
}

func TestPodLogOptions(t *testing.T) {
	require.Equal(t, &corev1.PodLogOptions{Container: "c"}, podLogOptions("c", vkapi.ContainerLogOpts{}))
}
