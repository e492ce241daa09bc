package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// writeKubeconfig writes a kubeconfig whose only cluster is server.
func writeKubeconfig(t *testing.T, path, server string) {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: server}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t"}
	cfg.Contexts["x"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	cfg.CurrentContext = "x"
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o700))
	require.NoError(t, clientcmd.WriteToFile(*cfg, path))
}

func TestKubeConfigSources(t *testing.T) {
	dir := t.TempDir()
	explicit := filepath.Join(dir, "explicit")
	writeKubeconfig(t, explicit, "https://explicit.example:6443")
	home := filepath.Join(dir, "home")
	writeKubeconfig(t, filepath.Join(home, ".kube", "config"), "https://home.example:6443")
	empty := filepath.Join(dir, "no-home")

	t.Run("flag or $KUBECONFIG wins over the home file", func(t *testing.T) {
		cfg, err := kubeConfig(explicit, home)
		require.NoError(t, err)
		require.Equal(t, "https://explicit.example:6443", cfg.Host)
	})
	t.Run("a list is merged, the first file wins", func(t *testing.T) {
		other := filepath.Join(dir, "other")
		writeKubeconfig(t, other, "https://other.example:6443")
		cfg, err := kubeConfig(other+string(filepath.ListSeparator)+explicit, home)
		require.NoError(t, err)
		require.Equal(t, "https://other.example:6443", cfg.Host)
	})
	t.Run("home file", func(t *testing.T) {
		cfg, err := kubeConfig("", home)
		require.NoError(t, err)
		require.Equal(t, "https://home.example:6443", cfg.Host)
	})
	t.Run("in-cluster last", func(t *testing.T) {
		// Outside a pod the in-cluster configuration is missing, and says so.
		_, err := kubeConfig("", empty)
		require.ErrorContains(t, err, "not in a cluster")
	})
}
