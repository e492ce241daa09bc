package framework

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultStopGrace is how long a process gets between SIGTERM and SIGKILL.
// etcd and kube-apiserver were seen running 4 s after SIGTERM; the test bed
// throws their state away, so it does not wait for a clean shutdown.
const DefaultStopGrace = 3 * time.Second

// process is a child started in its own process group with its output in a
// log file. Pdeathsig makes the kernel kill it if the test binary dies, so a
// killed `go test` leaves no orphans.
type process struct {
	name    string
	bin     string // kept, with args, so the same program can be started again
	args    []string
	env     []string // added to this process's environment
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited and been reaped
	waitErr error         // valid after done is closed

	stopOnce sync.Once
	stopErr  error
}

func startProcess(name, bin string, args []string, logPath string) (*process, error) {
	return startProcessEnv(name, bin, args, nil, logPath)
}

// startProcessEnv is startProcess with env added to the inherited
// environment (a later entry wins).
func startProcessEnv(name, bin string, args, env []string, logPath string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	if env != nil {
		cmd.Env = append(cmd.Environ(), env...)
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, bin: bin, args: args, env: env, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// errExitedCleanly stands for a nil wait error in exitError: the process
// exited with status 0 when it was meant to keep running.
var errExitedCleanly = errors.New("exit status 0")

// exitError describes how the process ended, with the tail of its log.
func (p *process) exitError() error {
	status := p.waitErr
	if status == nil {
		status = errExitedCleanly
	}
	return fmt.Errorf("%s exited (%w); last lines of %s:\n%s", p.name, status, p.logPath, tailFile(p.logPath, 30))
}

// lostPort reports whether the process exited because a port it was to
// listen on was taken (etcd, the Kubernetes components and mosquitto all log
// the kernel's message).
func (p *process) lostPort() bool {
	return p.exited() && strings.Contains(strings.ToLower(tailFile(p.logPath, 50)), "address already in use")
}

// stop sends SIGTERM to the process group, then SIGKILL after grace, and waits
// until the process is reaped. Only the first call signals: once the group is
// gone its id may be reused.
func (p *process) stop(grace time.Duration) error {
	p.stopOnce.Do(func() { p.stopErr = p.terminate(grace) })
	return p.stopErr
}

func (p *process) terminate(grace time.Duration) error {
	pgid := p.pid() // Setpgid: the group id is the child's pid
	if !p.exited() {
		signalGroup(pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
		}
	}
	// Kill whatever is left of the group, including any grandchildren.
	signalGroup(pgid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, pgid)
	}
}

func signalGroup(pgid int, sig syscall.Signal) {
	// ESRCH means the group is gone already, which is what we want.
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		_ = syscall.Kill(pgid, sig)
	}
}

// tailFile returns the last n lines of a file, or a note why it cannot.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer func() { _ = f.Close() }()
	const maxRead = 256 << 10
	if st, err := f.Stat(); err == nil && st.Size() > maxRead {
		if _, err := f.Seek(-maxRead, io.SeekEnd); err != nil {
			return fmt.Sprintf("(cannot read %s: %v)", path, err)
		}
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("  | ")
		b.Write(l)
		b.WriteByte('\n')
	}
	return b.String()
}
