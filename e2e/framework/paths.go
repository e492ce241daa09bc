package framework

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// modulePath identifies the repository root's go.mod (e2e/controlplane has its own).
const modulePath = "github.com/moduleops/module-controller"

// BinDirEnv names the environment variable that overrides where the control
// plane binaries are taken from (the same variable hack/build-controlplane.sh reads).
const BinDirEnv = "CONTROLPLANE_BIN_DIR"

// ControlPlaneBinaries are the programs Start needs in the binary directory.
var ControlPlaneBinaries = []string{"etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager"}

// RepoRoot returns the repository root: the nearest directory at or above the
// working directory whose go.mod declares the project module.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isProjectRoot(dir) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod for module %s at or above the working directory", modulePath)
		}
		dir = parent
	}
}

func isProjectRoot(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer func() { _ = f.Close() }()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) == 2 && fields[0] == "module" {
			return fields[1] == modulePath
		}
	}
	return false
}

// DefaultBinDir returns $CONTROLPLANE_BIN_DIR if set, else
// <repo root>/.cache/controlplane/bin, where `make controlplane` builds.
func DefaultBinDir() (string, error) {
	// go test passes no flags to the test bed; the Makefile exports this variable.
	if d := os.Getenv(BinDirEnv); d != "" { //nolint:forbidigo // test-bed setting shared with hack/build-controlplane.sh, not a product setting
		return d, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".cache", "controlplane", "bin"), nil
}

// ErrBinariesMissing is returned when a control-plane binary is not built.
var ErrBinariesMissing = errors.New("control-plane binaries missing: run `make controlplane` (or set " + BinDirEnv + ")")

func checkBinaries(dir string, names ...string) error {
	var missing []string
	for _, n := range names {
		st, err := os.Stat(filepath.Join(dir, n))
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s not found in %s", ErrBinariesMissing, strings.Join(missing, ", "), dir)
	}
	return nil
}

// freePorts returns n distinct free TCP ports on 127.0.0.1. The listeners are
// held open together so the ports differ, then released for the child
// processes to bind.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
