// Package certtest issues throwaway X.509 certificates for tests: a CA per
// test, and server and client certificates it signs, written as PEM files
// into the test's temp dir. It is a test helper, like net/http/httptest:
// production code never imports it.
package certtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// CA is a certificate authority valid for an hour around the test.
type CA struct {
	t    testing.TB
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// PEM is the CA certificate, PEM-encoded.
	PEM []byte
	// CAFile is the path of PEM.
	CAFile string
}

// NewCA creates a CA called name and writes its certificate into a temp dir.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	ca := &CA{t: t, dir: t.TempDir(), cert: cert, key: key}
	ca.CAFile, ca.PEM = ca.write(name+"-ca.pem", "CERTIFICATE", der)
	return ca
}

// Pool returns a pool trusting the CA.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return pool
}

// Server issues a server certificate for 127.0.0.1 and localhost.
func (ca *CA) Server(name string) (certFile, keyFile string, pair tls.Certificate) {
	ca.t.Helper()
	return ca.issue(name, true)
}

// Client issues a client certificate with common name name.
func (ca *CA) Client(name string) (certFile, keyFile string, pair tls.Certificate) {
	ca.t.Helper()
	return ca.issue(name, false)
}

func (ca *CA) issue(name string, server bool) (certFile, keyFile string, pair tls.Certificate) {
	ca.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(ca.t, err)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	require.NoError(ca.t, err)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(ca.t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(ca.t, err)
	certFile, _ = ca.write(name+".pem", "CERTIFICATE", der)
	keyFile, _ = ca.write(name+"-key.pem", "EC PRIVATE KEY", keyDER)
	pair, err = tls.LoadX509KeyPair(certFile, keyFile)
	require.NoError(ca.t, err)
	return certFile, keyFile, pair
}

func (ca *CA) write(name, typ string, der []byte) (path string, pemBytes []byte) {
	ca.t.Helper()
	path = filepath.Join(ca.dir, name)
	pemBytes = pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	require.NoError(ca.t, os.WriteFile(path, pemBytes, 0o600))
	return path, pemBytes
}
