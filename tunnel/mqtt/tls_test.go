package mqtt

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/certtest"
)

// TestTLSConfigVerifiesServer checks the client TLS config directly against a TLS
// listener: the server certificate is verified against the CA file and the URL's host.
func TestTLSConfigVerifiesServer(t *testing.T) {
	ca := certtest.NewCA(t, "ca")
	_, _, serverPair := ca.Server("server")
	other := certtest.NewCA(t, "other")

	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{serverPair}, MinVersion: tls.VersionTLS12})
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				_ = c.Close()
			}()
		}
	}()
	_, port, err := net.SplitHostPort(l.Addr().String())
	require.NoError(t, err)

	dial := func(url string, c TLSConfig) error {
		cfg, err := tlsConfig(c, url)
		require.NoError(t, err)
		require.False(t, cfg.InsecureSkipVerify)
		conn, err := tls.Dial("tcp", l.Addr().String(), cfg)
		if err == nil {
			_ = conn.Close()
		}
		return err
	}
	require.NoError(t, dial("ssl://127.0.0.1:"+port, TLSConfig{CAFile: ca.CAFile}))
	require.NoError(t, dial("ssl://localhost:"+port, TLSConfig{CAFile: ca.CAFile}))
	require.ErrorContains(t, dial("ssl://127.0.0.1:"+port, TLSConfig{CAFile: other.CAFile}), "unknown authority")
	require.ErrorContains(t, dial("ssl://other.example:"+port, TLSConfig{CAFile: ca.CAFile}), "other.example")
}
