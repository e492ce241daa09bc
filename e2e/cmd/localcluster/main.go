// Command localcluster runs the e2e control plane (etcd, kube-apiserver,
// kube-scheduler, kube-controller-manager) for humans: it starts a fresh
// cluster, writes an admin kubeconfig, prints how to use it and keeps the
// cluster up until SIGINT or SIGTERM, then stops every process it started.
// `make cluster-up` / `make cluster-down` drive it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/moduleops/module-controller/e2e/framework"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		kubeconfigOut = flag.String("kubeconfig-out", "", "write the admin kubeconfig here (default: <dir>/admin.kubeconfig)")
		dir           = flag.String("dir", "", "working directory for data, certificates and logs (default: a temp dir removed on exit); an existing one is wiped first")
		binDir        = flag.String("bin-dir", "", "directory with the control-plane binaries (default: $"+framework.BinDirEnv+" or <repo>/.cache/controlplane/bin)")
		timeout       = flag.Duration("start-timeout", framework.DefaultStartTimeout, "how long to wait for the control plane to become ready")
	)
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *dir != "" {
		// A previous run's etcd data and certificates must not leak into this one.
		if err := os.RemoveAll(*dir); err != nil {
			return err
		}
	}
	began := time.Now()
	c, err := framework.Start(ctx, framework.Options{Dir: *dir, BinDir: *binDir, StartTimeout: *timeout})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("stopping control plane")
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "localcluster: stop:", err)
		}
	}()

	out := c.Kubeconfig
	if *kubeconfigOut != "" {
		if out, err = filepath.Abs(*kubeconfigOut); err != nil {
			return err
		}
		if err := copyFileAtomic(c.Kubeconfig, out); err != nil {
			return err
		}
		defer func() { _ = os.Remove(out) }()
	}
	fmt.Printf("control plane ready in %s\n", time.Since(began).Round(100*time.Millisecond))
	fmt.Printf("kubeconfig: %s\n", out)
	fmt.Printf("logs:       %s\n", c.Dir)
	pids := c.PIDs()
	for _, name := range framework.ControlPlaneBinaries {
		fmt.Printf("  %-24s pid %d\n", name, pids[name])
	}
	fmt.Println("press Ctrl-C (or send SIGTERM) to stop")
	<-ctx.Done()
	return nil
}

// copyFileAtomic writes dst through a rename, so a watcher never sees a partial file.
func copyFileAtomic(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return errors.Join(err, os.Remove(tmp))
	}
	return nil
}
