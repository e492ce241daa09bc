//go:build e2e

package e2e

import (
	"bytes"
	"crypto/tls"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/moduleops/module-controller/e2e/framework"
	"github.com/moduleops/module-controller/pkg/basesim"
	"github.com/moduleops/module-controller/pkg/certtest"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// TestEmbeddedBrokerRefusesToStartOpen runs the controller binary with the
// settings of deploy/base/deployment.yaml but without the credentials Secret
// (its keys are optional): it must not serve the broker on every interface
// to anonymous clients, and must say which Secret to create.
func TestEmbeddedBrokerRefusesToStartOpen(t *testing.T) {
	c := sharedCluster(t)
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	data, err := os.ReadFile(filepath.Join(root, "deploy", "base", "deployment.yaml"))
	require.NoError(t, err)
	var d appsv1.Deployment
	require.NoError(t, yaml.Unmarshal(data, &d))
	env := []string{"KUBECONFIG=" + c.Kubeconfig}
	var sawAddress, sawSecret bool
	for _, v := range d.Spec.Template.Spec.Containers[0].Env {
		switch {
		case v.Value != "":
			env = append(env, v.Name+"="+v.Value)
			sawAddress = sawAddress || v.Name == "EMBEDDED_BROKER_ADDRESS" && strings.HasPrefix(v.Value, ":")
		case v.ValueFrom != nil && v.ValueFrom.SecretKeyRef != nil:
			sawSecret = sawSecret || v.ValueFrom.SecretKeyRef.Name == "module-controller-mqtt"
		}
	}
	require.True(t, sawAddress, "the manifests serve the embedded broker on every interface")
	require.True(t, sawSecret, "the manifests read the credentials from Secret module-controller-mqtt")

	bin, err := framework.ControllerBinary()
	require.NoError(t, err)
	cmd := exec.CommandContext(t.Context(), bin)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "the controller must not start; stderr:\n%s", stderr.String())
	require.Equal(t, 2, exit.ExitCode())
	for _, want := range []string{"Secret module-controller-mqtt", "kubectl -n module-controller create secret generic module-controller-mqtt", "--embedded-broker-address=127.0.0.1:1883"} {
		require.Contains(t, stderr.String(), want)
	}
}

// writePasswordFile writes a password file with mosquitto_passwd, the tool
// whose format both brokers read, and returns its path.
func writePasswordFile(t *testing.T, users map[string]string) string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto_passwd")
	require.NoError(t, err, framework.ErrMosquittoMissing.Error())
	path := filepath.Join(t.TempDir(), "passwd")
	first := true
	for u, p := range users {
		args := []string{"-b", path, u, p}
		if first {
			args = append([]string{"-c"}, args...)
			first = false
		}
		out, err := exec.CommandContext(t.Context(), bin, args...).CombinedOutput()
		require.NoError(t, err, string(out))
	}
	return path
}

// dialMQTT connects a client without retries; it returns the connect error.
func dialMQTT(t *testing.T, url, clientID, username, password string, tlsCfg *tls.Config) (paho.Client, error) {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(clientID + "-" + framework.RandomName("", 4)).
		SetUsername(username).SetPassword(password).SetTLSConfig(tlsCfg).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(10 * time.Second)
	cl := paho.NewClient(opts)
	tok := cl.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { cl.Disconnect(100) })
	return cl, nil
}

// TestEmbeddedBrokerPerBaseACL runs the controller's embedded broker as the
// manifests configure it — the controller's own user plus a password file
// of bases — and checks, end to end: anonymous clients and wrong passwords
// are refused; a base on its own credentials registers and runs a module;
// a base cannot heartbeat as another identity, command another base, or
// subscribe to another base's commands; a packet over the limit is refused.
func TestEmbeddedBrokerPerBaseACL(t *testing.T) {
	const (
		baseA   = "10.8.0.1"
		baseC   = "10.8.0.3"
		spoofed = "10.8.0.2"
	)
	secret := func() string { return framework.RandomName("pw", 16) }
	ctlPassword, passwordA, passwordC := secret(), secret(), secret()
	pwFile := writePasswordFile(t, map[string]string{baseA: passwordA, baseC: passwordC})
	const maxPacket = 64 << 10
	e := newEnv(t, "embedded", "--mqtt-username="+controllerMQTTUser, "--mqtt-password="+ctlPassword,
		"--embedded-broker-password-file="+pwFile, "--embedded-broker-max-packet-size=65536")
	url := e.controller.BrokerURL()

	_, err := dialMQTT(t, url, "anonymous", "", "", nil)
	require.Error(t, err, "an anonymous client is refused")
	_, err = dialMQTT(t, url, "guess", baseA, "wrong", nil)
	require.Error(t, err, "a wrong password is refused")
	_, err = dialMQTT(t, url, "guess", controllerMQTTUser, passwordA, nil)
	require.Error(t, err, "the controller's user with a base's password is refused")

	a := e.startBase(baseA, func(cfg *basesim.Config) { cfg.Username, cfg.Password = baseA, passwordA })
	e.waitNode(baseA, "Ready", isReady)
	e.createPod(e.modulePod("mod", baseA, "biz1:0.0.1"))
	e.waitPod("mod", "Running and Ready", running)
	require.Equal(t, "ACTIVATED", bizState(a, "biz1", "0.0.1"))

	// Base C may not subscribe to base A's commands (SUBACK failure).
	spy, err := dialMQTT(t, url, "koupleless@@@"+baseC, baseC, passwordC, nil)
	require.NoError(t, err)
	tok := spy.Subscribe(protocol.Topic(e.name, baseA, "+"), 1, func(paho.Client, paho.Message) {})
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	require.Equal(t, byte(0x80), tok.(*paho.SubscribeToken).Result()[protocol.Topic(e.name, baseA, "+")],
		"subscribing to another base's commands is refused")

	// A heartbeat as another identity, and a command to base A, from base C:
	// the broker disconnects an MQTT 3.1.1 client for a refused QoS 1 publish.
	for _, m := range []struct {
		what, topic string
		payload     []byte
	}{
		{"a heartbeat as another identity", protocol.Topic(e.name, spoofed, protocol.SuffixHeartbeat), heartbeatMessage(t, spoofed)},
		{"installBiz without the controller's credentials", protocol.Topic(e.name, baseA, protocol.CommandInstallBiz),
			mustEncodeCommand(t, protocol.BizModel{BizName: "evil", BizVersion: "6.6.6", BizURL: "https://modules.example.test/evil.jar"})},
	} {
		cl, err := dialMQTT(t, url, "koupleless@@@"+baseC, baseC, passwordC, nil)
		require.NoError(t, err)
		tok := cl.Publish(m.topic, 1, false, m.payload)
		require.True(t, tok.WaitTimeout(10*time.Second), m.what)
		require.Error(t, tok.Error(), "%s is refused", m.what)
		require.Eventually(t, func() bool { return !cl.IsConnectionOpen() }, waitLong, poll, "%s: client disconnected", m.what)
	}

	// Oversized: a heartbeat on base C's own topic over the packet limit.
	big, err := dialMQTT(t, url, "koupleless@@@"+baseC, baseC, passwordC, nil)
	require.NoError(t, err)
	_ = big.Publish(protocol.Topic(e.name, baseC, protocol.SuffixHeartbeat), 1, false, make([]byte, maxPacket+1)).WaitTimeout(10 * time.Second)
	require.Eventually(t, func() bool { return !big.IsConnectionOpen() }, waitLong, poll, "a packet over the limit disconnects the client")

	// Base C on its own topics is fine: a node, registered after the
	// refused messages were sent (one client's messages arrive in order, and
	// the refused ones would have come first).
	c := e.startBase(baseC, func(cfg *basesim.Config) { cfg.Username, cfg.Password = baseC, passwordC })
	e.waitNode(baseC, "Ready", isReady)
	_, err = e.client.CoreV1().Nodes().Get(t.Context(), e.nodeName(spoofed), metav1.GetOptions{})
	require.True(t, apierrors.IsNotFound(err), "no node for the spoofed identity: %v", err)
	require.Zero(t, a.ReceivedCount(protocol.CommandInstallBiz, "evil:6.6.6"))
	require.Empty(t, bizState(a, "evil", "6.6.6"))
	require.Empty(t, bizState(c, "biz1", "0.0.1"))
	e.waitNode(baseA, "Ready", isReady)
	log := e.controller.LogTail(5000)
	require.Contains(t, log, "mqtt access denied by the acl")
	require.Contains(t, log, "mqtt client refused: bad credentials")
}

func mustEncodeCommand(t *testing.T, m protocol.BizModel) []byte {
	t.Helper()
	b, err := protocol.EncodeCommand(m)
	require.NoError(t, err)
	return b
}

// TestEmbeddedBrokerTLS applies the settings of the deploy/embedded-tls
// overlay (the broker's certificate from Secret module-controller-mqtt-tls,
// mounted where the env points) to the controller binary: a base that
// trusts the CA registers over TLS, one that trusts another CA is refused,
// and the listener speaks no plain MQTT.
func TestEmbeddedBrokerTLS(t *testing.T) {
	rendered, err := kubectl(t, "", "kustomize", "deploy/embedded-tls/")
	require.NoError(t, err, rendered)
	var d appsv1.Deployment
	for _, doc := range strings.Split(rendered, "\n---\n") {
		if strings.Contains(doc, "\nkind: Deployment\n") {
			require.NoError(t, yaml.Unmarshal([]byte(doc), &d))
		}
	}
	spec := d.Spec.Template.Spec
	require.NotEmpty(t, spec.Containers)
	mountDir := ""
	for _, v := range spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "module-controller-mqtt-tls" {
			for _, m := range spec.Containers[0].VolumeMounts {
				if m.Name == v.Name {
					mountDir = m.MountPath
				}
			}
			require.Nil(t, v.Secret.Optional, "TLS is not silently off when the Secret is missing")
		}
	}
	require.NotEmpty(t, mountDir, "the overlay mounts Secret module-controller-mqtt-tls")
	require.Contains(t, rendered, "port: 8883")

	// The Secret's keys, written where the mount would put them.
	ca := certtest.NewCA(t, "mqtt-ca")
	certFile, keyFile, _ := ca.Server("module-controller-mqtt")
	dir := t.TempDir()
	for name, src := range map[string]string{"tls.crt": certFile, "tls.key": keyFile} {
		data, err := os.ReadFile(src)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
	}
	var args []string
	for _, v := range spec.Containers[0].Env {
		if strings.HasPrefix(v.Name, "EMBEDDED_BROKER_TLS_") {
			require.True(t, strings.HasPrefix(v.Value, mountDir+"/"), "%s points into the mount", v.Name)
			flag := "--" + strings.ReplaceAll(strings.ToLower(v.Name), "_", "-")
			args = append(args, flag+"="+filepath.Join(dir, strings.TrimPrefix(v.Value, mountDir+"/")))
		}
	}
	require.Len(t, args, 2, "the overlay sets the certificate and key paths")

	const baseA = "10.8.1.1"
	ctlPassword, passwordA := framework.RandomName("pw", 16), framework.RandomName("pw", 16)
	pwFile := writePasswordFile(t, map[string]string{baseA: passwordA})
	e := newEnv(t, "embedded", append(args, "--mqtt-username="+controllerMQTTUser, "--mqtt-password="+ctlPassword,
		"--embedded-broker-password-file="+pwFile)...)
	tlsURL := strings.Replace(e.controller.BrokerURL(), "tcp://", "ssl://", 1)

	_, err = dialMQTT(t, e.controller.BrokerURL(), "plain", controllerMQTTUser, ctlPassword, nil)
	require.Error(t, err, "no plain MQTT on the TLS listener")
	_, err = dialMQTT(t, tlsURL, "wrong-ca", baseA, passwordA,
		&tls.Config{RootCAs: certtest.NewCA(t, "other-ca").Pool(), MinVersion: tls.VersionTLS12})
	require.Error(t, err, "a client trusting another CA is refused")

	trusted := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	e.startBase(baseA, func(cfg *basesim.Config) {
		cfg.Broker, cfg.Username, cfg.Password, cfg.TLS = tlsURL, baseA, passwordA, trusted
	})
	e.waitNode(baseA, "Ready", isReady)
	e.createPod(e.modulePod("mod", baseA, "biz1:0.0.1"))
	e.waitPod("mod", "Running and Ready", running)
}
