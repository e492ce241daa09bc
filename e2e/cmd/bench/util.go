package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"
)

// parallel runs f(0..n-1) with at most width at once and returns the first error.
func parallel(n, width int, f func(i int) error) error {
	sem := make(chan struct{}, max(1, width))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

func mustQty(s string) resource.Quantity { return resource.MustParse(s) }

func intOrPercent(s string) intstr.IntOrString { return intstr.Parse(s) }

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// startProfile, when addr is set, starts a CPU profile of the controller for
// seconds (saved as <dir>/<phase>.cpu.pprof) and returns a function that
// saves a heap profile as <dir>/<phase>.heap.pprof and waits for the CPU
// profile to end (the runtime takes one CPU profile at a time).
func (b *bench) startProfile(addr, phase string, seconds int) func() {
	if addr == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fetch(b, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds), filepath.Join(b.dir, phase+".cpu.pprof"))
	}()
	return func() {
		fetch(b, "http://"+addr+"/debug/pprof/heap", filepath.Join(b.dir, phase+".heap.pprof"))
		<-done
	}
}

func fetch(b *bench, url, path string) {
	resp, err := http.Get(url) //nolint:noctx // a short-lived local profile fetch
	if err != nil {
		b.step("profile %s: %v", url, err)
		return
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode == http.StatusOK {
		err = os.WriteFile(path, data, 0o644)
	} else if err == nil {
		err = fmt.Errorf("status %s", resp.Status)
	}
	if err != nil {
		b.step("profile %s: %v", url, err)
		return
	}
	b.step("profile saved: %s", path)
}

// watchObjects calls fn with every object of resource (in namespace, with
// labelSelector) as it is added or changed, and with deleted true as it goes,
// until ctx is done. An informer does the watching: it lists and watches
// again whenever the API server ends a watch, which a bare Watch would leave
// silent for the rest of the run. fn runs on one goroutine.
func watchObjects(ctx context.Context, client cache.Getter, resource, namespace, labelSelector string, obj runtime.Object, fn func(obj any, deleted bool)) {
	lw := cache.NewFilteredListWatchFromClient(client, resource, namespace, func(o *metav1.ListOptions) {
		o.LabelSelector = labelSelector
	})
	inf := cache.NewSharedInformer(lw, obj, 0)
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { fn(o, false) },
		UpdateFunc: func(_, o any) { fn(o, false) },
		DeleteFunc: func(o any) {
			if tomb, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = tomb.Obj
			}
			fn(o, true)
		},
	})
	go inf.RunWithContext(ctx)
}
