package framework

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// ControllerOptions configures a module-controller process.
type ControllerOptions struct {
	// Kubeconfig the controller uses.
	Kubeconfig string
	// Env is the tunnel environment.
	Env string
	// BrokerURL is an external broker (tcp://host:port). Empty serves the
	// embedded broker on a free loopback port, read back from EmbeddedBroker.
	BrokerURL string
	// Args are extra flags.
	Args []string
	// EmbeddedBrokerAddress is where the embedded broker listens when
	// BrokerURL is empty (host:port). Empty or port 0: a free loopback port.
	EmbeddedBrokerAddress string
	// HTTPTunnel serves the HTTP tunnel on a free loopback port
	// (HTTPEndpoint), with --allow-loopback-base-ip for bases on this
	// machine. With BrokerURL empty it is the only transport
	// (--mqtt-tunnel=false: no broker at all).
	HTTPTunnel bool
	// Environ are environment variables (NAME=value) added to the
	// controller's; its flags, set from the fields above, override them.
	Environ []string
}

// Controller is a running module-controller binary.
type Controller struct {
	opts        ControllerOptions
	bin, dir    string
	proc        *process
	starts      int
	healthAddr  string
	metricsAddr string
	httpAddr    string // the HTTP tunnel's, when served
	// KubeletAddr is where the controller serves the virtual nodes' kubelet
	// API (127.0.0.1:port), the address and port its nodes advertise.
	KubeletAddr    string
	EmbeddedBroker string // tcp://127.0.0.1:port when the embedded broker is served
}

// ControllerBinary returns <repo>/bin/module-controller, built by `make build`.
func ControllerBinary() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, "bin", "module-controller")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("%s missing: run `make build` (make e2e does): %w", bin, err)
	}
	return bin, nil
}

// StartController starts module-controller for the test, waits until it is
// ready and stops it on cleanup, printing its log if the test failed.
func StartController(t testing.TB, opts ControllerOptions) *Controller {
	t.Helper()
	bin, err := ControllerBinary()
	if err != nil {
		t.Fatal(err)
	}
	ports, err := freePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	c := &Controller{opts: opts, bin: bin, dir: t.TempDir(), healthAddr: hostPort(ports[0]), metricsAddr: hostPort(ports[1]), KubeletAddr: hostPort(ports[3])}
	if opts.HTTPTunnel {
		c.httpAddr = hostPort(ports[4])
	}
	if !opts.HTTPTunnel || opts.BrokerURL != "" {
		c.setEmbeddedBroker(ports[2])
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("module-controller log (last 400 lines):\n%s", c.LogTail(400))
		}
		if c.proc != nil {
			_ = c.proc.stop(DefaultStopGrace)
		}
	})
	if err := c.start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return c
}

// HTTPEndpoint is the URL bases of the HTTP tunnel post their heartbeats to,
// or "" when the controller serves no HTTP tunnel.
func (c *Controller) HTTPEndpoint() string {
	if c.httpAddr == "" {
		return ""
	}
	return "http://" + c.httpAddr
}

// BrokerURL is the broker bases should connect to.
func (c *Controller) BrokerURL() string {
	if c.EmbeddedBroker != "" {
		return c.EmbeddedBroker
	}
	return c.opts.BrokerURL
}

func (c *Controller) start(ctx context.Context) error {
	args := []string{
		"--kubeconfig=" + c.opts.Kubeconfig,
		"--env=" + c.opts.Env,
		"--health-address=" + c.healthAddr,
		"--metrics-address=" + c.metricsAddr,
		"--log-level=debug",
		// The kubelet API on loopback, which the local API server dials.
		"--kubelet-address=127.0.0.1",
		"--kubelet-bind-address=127.0.0.1",
		"--kubelet-port=" + c.KubeletAddr[len("127.0.0.1:"):],
	}
	switch {
	case c.EmbeddedBroker != "":
		args = append(args, "--embedded-broker-address="+c.EmbeddedBroker[len("tcp://"):])
	case c.opts.BrokerURL != "":
		args = append(args, "--mqtt-broker="+c.opts.BrokerURL)
	default:
		args = append(args, "--mqtt-tunnel=false")
	}
	if c.httpAddr != "" {
		args = append(args, "--http-tunnel", "--http-tunnel-listen="+c.httpAddr, "--allow-loopback-base-ip")
	}
	args = append(args, c.opts.Args...)
	c.starts++
	p, err := startProcessEnv("module-controller", c.bin, args, c.opts.Environ, filepath.Join(c.dir, "module-controller-"+strconv.Itoa(c.starts)+".log"))
	if err != nil {
		return err
	}
	c.proc = p
	return c.waitReady(ctx, 60*time.Second)
}

// waitReady polls /readyz until it answers 200.
func (c *Controller) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if c.proc.exited() {
			return c.proc.exitError()
		}
		resp, err := hc.Get("http://" + c.healthAddr + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("module-controller not ready: %w; log:\n%s", ctx.Err(), c.LogTail(30))
		case <-tick.C:
		}
	}
}

// Restart stops the controller (SIGTERM) and starts it again with the same
// settings, waiting until it is ready.
func (c *Controller) Restart(ctx context.Context) error {
	if err := c.proc.stop(DefaultStopGrace); err != nil {
		return err
	}
	return c.start(ctx)
}

// Stop stops the controller.
func (c *Controller) Stop() error { return c.proc.stop(DefaultStopGrace) }

// Kill sends SIGKILL to the controller process by its PID, as a crashed or
// OOM-killed pod would end, and waits until it is reaped.
func (c *Controller) Kill() error {
	if err := syscall.Kill(c.proc.pid(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill module-controller (pid %d): %w", c.proc.pid(), err)
	}
	select {
	case <-c.proc.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("module-controller (pid %d) did not exit after SIGKILL", c.proc.pid())
	}
}

// Start starts a controller whose process has exited (killed, crashed or
// stopped) again with the same settings and ports, in a new log file, and
// waits until it is ready; ctx bounds the wait.
func (c *Controller) Start(ctx context.Context) error {
	if !c.proc.exited() {
		return fmt.Errorf("module-controller (pid %d) is still running", c.proc.pid())
	}
	return c.start(ctx)
}

// Starts is how many processes this controller has started, the first included.
func (c *Controller) Starts() int { return c.starts }

// Metrics returns the controller's Prometheus exposition text.
func (c *Controller) Metrics() (string, error) {
	resp, err := http.Get("http://" + c.metricsAddr + "/metrics")
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// LogTail returns the last lines of the current process's log.
func (c *Controller) LogTail(lines int) string {
	if c.proc == nil {
		return ""
	}
	return tailFile(c.proc.logPath, lines)
}

// Signal sends sig (SIGSTOP, SIGCONT, ...) to the controller process by its
// PID, as a paused or resumed pod would be.
func (c *Controller) Signal(sig syscall.Signal) error {
	if err := syscall.Kill(c.proc.pid(), sig); err != nil {
		return fmt.Errorf("signal %s to module-controller (pid %d): %w", sig, c.proc.pid(), err)
	}
	return nil
}

// LogSize returns the size in bytes of the current process's log; what the
// process writes later starts at this offset of Log.
func (c *Controller) LogSize() (int64, error) {
	fi, err := os.Stat(c.proc.logPath)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// Log returns the current process's log from byte offset on.
func (c *Controller) Log(offset int64) (string, error) {
	b, err := os.ReadFile(c.proc.logPath)
	if err != nil {
		return "", err
	}
	if offset > int64(len(b)) {
		offset = int64(len(b))
	}
	return string(b[offset:]), nil
}
