//go:build e2e

package e2e

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/e2e/framework"
)

// TestControllerCLI runs the built binary as an operator would: --version,
// --help (to stdout, grouped, every flag with its env var), and invalid
// settings (exit status 2, every problem listed, nothing started).
func TestControllerCLI(t *testing.T) {
	bin, err := framework.ControllerBinary()
	require.NoError(t, err)
	run := func(env []string, args ...string) (stdout, stderr string, code int) {
		cmd := exec.CommandContext(t.Context(), bin, args...)
		cmd.Env = env
		var o, e strings.Builder
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return o.String(), e.String(), exit.ExitCode()
		}
		require.NoError(t, err)
		return o.String(), e.String(), 0
	}

	out, _, code := run(nil, "--version")
	require.Zero(t, code)
	require.Regexp(t, `^module-controller \S+ \(commit \S+\)\n$`, out)

	out, _, code = run(nil, "--help")
	require.Zero(t, code)
	for _, want := range []string{"MQTT broker and tunnel:", "Kubernetes API:", "Virtual nodes:", "Module pods:", "Serving and logging:",
		"--mqtt-broker string", "[$MQTT_BROKER]", "--log-format string", "[$LOG_FORMAT]", `(default "text")`} {
		require.Contains(t, out, want)
	}

	_, errOut, code := run([]string{"MQTT_PORT=abc", "LOG_FORMAT=xml"}, "--max-pods=0", "--remove-after=1s", "--kubeconfig=/nonexistent/kubeconfig")
	require.Equal(t, 2, code)
	for _, want := range []string{"$MQTT_PORT", "--log-format \"xml\"", "--max-pods", "--remove-after", "--kubeconfig"} {
		require.Contains(t, errOut, want)
	}

	_, errOut, code = run(nil, "--no-such-flag")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "unknown flag: --no-such-flag")
	require.Contains(t, errOut, "--help")
}

// TestControllerEndpoints: /readyz follows the broker connection (503 with
// the reason while the broker is down, 200 again once it is back), /healthz
// stays 200, /metrics serves the Go, process and controller metrics.
func TestControllerEndpoints(t *testing.T) {
	e := newEnv(t, "mosquitto")
	base := "http://" + e.controller.HealthAddress()
	get := func(path string) (int, string) {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}
	code, _ := get("/readyz")
	require.Equal(t, http.StatusOK, code)

	require.NoError(t, e.broker.Stop())
	var body string
	require.Eventually(t, func() bool {
		code, body = get("/readyz")
		return code == http.StatusServiceUnavailable
	}, waitLong, poll, "/readyz still %d after the broker stopped", code)
	require.Contains(t, body, "tunnel not connected")
	code, _ = get("/healthz")
	require.Equal(t, http.StatusOK, code, "liveness does not depend on the broker")

	require.NoError(t, e.broker.Restart(t.Context()))
	require.Eventually(t, func() bool {
		code, _ = get("/readyz")
		return code == http.StatusOK
	}, waitLong, poll, "/readyz not ready again after the broker came back")

	metrics, err := e.controller.Metrics()
	require.NoError(t, err)
	for _, want := range []string{"go_goroutines", "process_start_time_seconds", "module_controller_"} {
		require.Contains(t, metrics, want)
	}
	// Every metric of ours that the controller exports is in the operations
	// guide's table of metrics to watch.
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	doc, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	require.NoError(t, err)
	for _, name := range regexp.MustCompile(`(?m)^# TYPE (module_controller_\w+) `).FindAllStringSubmatch(metrics, -1) {
		require.Contains(t, string(doc), "`"+name[1], "docs/operations.md lists metric %s", name[1])
	}
}
