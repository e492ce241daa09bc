//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/moduleops/module-controller/e2e/framework"
)

// TestCorpusNodesDryRun creates, with server-side dry run on the real API server, every
// virtual node the provider builds from the heartbeat corpus (provider/testdata/nodes, kept
// current by provider's TestCorpusNodes). Nodes of heartbeats the validator accepts must be
// accepted; nodes of the heartbeats it rejects for the node's sake must be refused as
// Invalid, which shows those rules are the API server's and not merely stricter.
func TestCorpusNodesDryRun(t *testing.T) {
	c := sharedCluster(t)
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	dir := filepath.Join(root, "provider", "testdata", "nodes")
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: metav1.FieldValidationStrict}

	for _, tc := range []struct {
		sub    string
		accept bool
	}{{"accepted", true}, {"rejected", false}} {
		files, err := filepath.Glob(filepath.Join(dir, tc.sub, "*.json"))
		require.NoError(t, err)
		require.NotEmpty(t, files, tc.sub)
		for _, f := range files {
			t.Run(tc.sub+"/"+filepath.Base(f), func(t *testing.T) {
				b, err := os.ReadFile(f)
				require.NoError(t, err)
				var n corev1.Node
				require.NoError(t, json.Unmarshal(b, &n))
				got, err := c.Client.CoreV1().Nodes().Create(t.Context(), &n, dryRun)
				if tc.accept {
					require.NoError(t, err, "the API server refused the node of an accepted heartbeat")
					require.Equal(t, n.Name, got.Name)
					require.Equal(t, n.Labels, got.Labels)
					require.Equal(t, n.Status.Addresses, got.Status.Addresses)
					return
				}
				require.True(t, apierrors.IsInvalid(err), "want Invalid, got %v", err)
			})
		}
	}
	// Dry run wrote nothing.
	nodes, err := c.Client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	for _, n := range nodes.Items {
		require.NotContains(t, n.Name, "10.244.0.17", "a dry-run node was persisted")
	}
}
