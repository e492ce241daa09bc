package framework

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// Process is a child program started by LaunchProcess: in its own process
// group, output in a log file, killed by the kernel if the parent dies.
type Process struct {
	p *process
}

// LaunchProcess starts bin with args, appending its output to logPath.
// The caller stops it with Stop.
func LaunchProcess(name, bin string, args []string, logPath string) (*Process, error) {
	p, err := startProcess(name, bin, args, logPath)
	if err != nil {
		return nil, err
	}
	return &Process{p: p}, nil
}

// PID is the process ID (and process group ID).
func (p *Process) PID() int { return p.p.pid() }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool { return p.p.exited() }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.p.done }

// ExitError describes how the process ended, with the tail of its log.
func (p *Process) ExitError() error { return p.p.exitError() }

// LogPath is the file receiving the process's output.
func (p *Process) LogPath() string { return p.p.logPath }

// LogTail returns the last lines of the process's log.
func (p *Process) LogTail(lines int) string { return tailFile(p.p.logPath, lines) }

// Stop sends SIGTERM to the process group, SIGKILL after grace, and waits
// until the process is reaped. It returns how the process ended: nil for exit
// status 0. Only the first call signals.
func (p *Process) Stop(grace time.Duration) error {
	if err := p.p.stop(grace); err != nil {
		return err
	}
	return p.p.waitErr
}

// LaunchController starts the module-controller binary bin (default
// ControllerBinary()) outside a test, with its logs in dir, and waits until it
// is ready. The caller stops it with Stop or Shutdown.
func LaunchController(ctx context.Context, bin, dir string, opts ControllerOptions) (*Controller, error) {
	if bin == "" {
		var err error
		if bin, err = ControllerBinary(); err != nil {
			return nil, err
		}
	}
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	c := &Controller{opts: opts, bin: bin, dir: dir, healthAddr: hostPort(ports[0]), metricsAddr: hostPort(ports[1]), KubeletAddr: hostPort(ports[3])}
	c.setEmbeddedBroker(ports[2])
	if err := c.start(ctx); err != nil {
		if c.proc != nil {
			err = errors.Join(err, c.proc.stop(DefaultStopGrace))
		}
		return nil, err
	}
	return c, nil
}

// setEmbeddedBroker chooses the embedded broker's address: the one asked
// for, or freePort on loopback when none or port 0 was asked for.
func (c *Controller) setEmbeddedBroker(freePort int) {
	if c.opts.BrokerURL != "" {
		return
	}
	addr := c.opts.EmbeddedBrokerAddress
	if host, port, err := net.SplitHostPort(addr); err == nil && port != "0" {
		c.EmbeddedBroker = "tcp://" + net.JoinHostPort(host, port)
		return
	}
	c.EmbeddedBroker = "tcp://" + hostPort(freePort)
}

// PID is the current controller process's ID.
func (c *Controller) PID() int { return c.proc.pid() }

// LogPath is the current controller process's log file.
func (c *Controller) LogPath() string { return c.proc.logPath }

// HealthAddress is where the controller serves /healthz and /readyz.
func (c *Controller) HealthAddress() string { return c.healthAddr }

// Shutdown sends SIGTERM to the controller, waits up to grace for it to
// exit (then kills it) and returns how it ended: nil for exit status 0, an
// error if it failed, was killed or had exited before.
func (c *Controller) Shutdown(grace time.Duration) error {
	if c.proc.exited() {
		return fmt.Errorf("exited before shutdown: %w", c.proc.exitError())
	}
	if err := c.proc.stop(grace); err != nil {
		return err
	}
	if c.proc.waitErr != nil {
		return fmt.Errorf("%w; log:\n%s", c.proc.waitErr, c.LogTail(30))
	}
	return nil
}

// PortFree reports whether addr (host:port) can be listened on now, and if
// not, why: a clear message for users who passed a busy port.
func PortFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%s is already in use by another process (another broker?): %w", addr, err)
		}
		return err
	}
	return l.Close()
}

// Done is closed when the current controller process has exited.
func (c *Controller) Done() <-chan struct{} { return c.proc.done }

// ExitError describes how the current controller process ended, with the
// tail of its log.
func (c *Controller) ExitError() error { return c.proc.exitError() }
