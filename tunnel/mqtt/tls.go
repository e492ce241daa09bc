package mqtt

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
)

// ClientTLS returns the client TLS configuration c describes for a broker at
// brokerURL, built as the tunnel builds its own. The simulated base
// (cmd/base-sim) uses it, so that both ends verify the broker the same way.
func (c TLSConfig) ClientTLS(brokerURL string) (*tls.Config, error) {
	return tlsConfig(c, brokerURL)
}

// tlsConfig builds the client TLS configuration for a TLS broker URL: the broker's
// certificate is verified against CAFile (or the system roots) and the URL's host name,
// and the client certificate is presented if configured. InsecureSkipVerify is never set:
// the reference controller skipped verification, which lets anyone on the path pose as the
// broker and send commands to every base.
func tlsConfig(c TLSConfig, brokerURL string) (*tls.Config, error) {
	u, err := url.Parse(brokerURL)
	if err != nil {
		return nil, fmt.Errorf("broker url: %w", err)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Set explicitly: paho hands the config to tls.Client on some paths, which
		// derives no server name by itself.
		ServerName: u.Hostname(),
	}
	var errs []error
	if c.CAFile != "" {
		pool, err := loadCAPool(c.CAFile)
		if err != nil {
			errs = append(errs, err)
		}
		cfg.RootCAs = pool
	}
	if c.ClientCertFile != "" || c.ClientKeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.ClientCertFile, c.ClientKeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("tls client certificate %s: %w", c.ClientCertFile, err))
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return cfg, nil
}

// loadCAPool reads a PEM bundle into a fresh pool (the system roots are not added: the
// file names exactly whom to trust).
func loadCAPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls ca file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls ca file %s: no PEM certificate found", file)
	}
	return pool, nil
}
