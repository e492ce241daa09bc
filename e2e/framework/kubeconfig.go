package framework

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// writeKubeconfig writes a self-contained kubeconfig (all credentials inline)
// for one user of the cluster at server.
func writeKubeconfig(path, server string, caPEM []byte, user string, auth *clientcmdapi.AuthInfo) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[user] = auth
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: user, Namespace: metav1.NamespaceDefault}
	cfg.CurrentContext = "local"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

func certKubeconfig(path, server string, caPEM []byte, user string, kp keyPair) error {
	return writeKubeconfig(path, server, caPEM, user, &clientcmdapi.AuthInfo{
		ClientCertificateData: kp.certPEM,
		ClientKeyData:         kp.keyPEM,
	})
}

// DefaultTokenExpiration is the lifetime of tokens minted by ServiceAccountKubeconfig.
const DefaultTokenExpiration = 2 * time.Hour

// ServiceAccountKubeconfig mints a token for the existing ServiceAccount
// namespace/name through the TokenRequest API and writes a kubeconfig that
// authenticates with it into the cluster directory. It returns the file's path
// and the matching rest.Config, so a test can run the controller with exactly
// the permissions its RBAC manifests grant. expiration <= 0 means
// DefaultTokenExpiration.
func (c *Cluster) ServiceAccountKubeconfig(ctx context.Context, namespace, name string, expiration time.Duration) (string, *rest.Config, error) {
	if expiration <= 0 {
		expiration = DefaultTokenExpiration
	}
	secs := int64(expiration / time.Second)
	tr, err := c.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}},
		metav1.CreateOptions{})
	if err != nil {
		return "", nil, fmt.Errorf("request token for serviceaccount %s/%s: %w", namespace, name, err)
	}
	path := filepath.Join(c.Dir, fmt.Sprintf("sa-%s-%s.kubeconfig", namespace, name))
	user := "system:serviceaccount:" + namespace + ":" + name
	if err := writeKubeconfig(path, c.Config.Host, c.caPEM, user, &clientcmdapi.AuthInfo{Token: tr.Status.Token}); err != nil {
		return "", nil, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return "", nil, fmt.Errorf("load %s: %w", path, err)
	}
	return path, cfg, nil
}
