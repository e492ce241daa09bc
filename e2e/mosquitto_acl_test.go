//go:build e2e

package e2e

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
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/moduleops/module-controller/e2e/framework"
	"github.com/moduleops/module-controller/pkg/basesim"
	"github.com/moduleops/module-controller/pkg/broker"
	"github.com/moduleops/module-controller/pkg/protocol"
)

// controllerMQTTUser is the controller's user in deploy/mosquitto/acl.
const controllerMQTTUser = "module-controller"

// TestMosquittoOverlayACL runs the ACL file of deploy/mosquitto on Debian's
// Mosquitto with TLS and a user per client: a base with its own credentials
// registers and runs a module, while a base publishing as another identity,
// or sending commands to another base, is not delivered to anyone, and
// cannot subscribe to another base's commands.
func TestMosquittoOverlayACL(t *testing.T) {
	e := newBareEnv(t)
	c := e.cluster
	ctx := t.Context()

	// The shipped ACL, for this test's env instead of "default".
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	acl, err := os.ReadFile(filepath.Join(root, "deploy", "mosquitto", "acl"))
	require.NoError(t, err)
	require.Contains(t, string(acl), protocol.TopicPrefix+"default/")
	aclFile := filepath.Join(t.TempDir(), "acl")
	require.NoError(t, os.WriteFile(aclFile,
		[]byte(strings.ReplaceAll(string(acl), protocol.TopicPrefix+"default/", protocol.TopicPrefix+e.name+"/")), 0o600))

	const (
		baseA   = "10.7.0.1" // a well-behaved base
		baseC   = "10.7.0.3" // a base that tries to impersonate
		spoofed = "10.7.0.2" // an identity nobody owns
	)
	secret := func() string { return framework.RandomName("pw", 16) }
	ctlPassword, passwordA, passwordC := secret(), secret(), secret()
	broker := framework.StartBroker(t, framework.Mosquitto, framework.WithTLS(),
		framework.WithAuth(controllerMQTTUser, ctlPassword),
		framework.WithUser(baseA, passwordA), framework.WithUser(baseC, passwordC),
		framework.WithACLFile(aclFile))

	e.broker = broker
	e.controller = framework.StartController(t, framework.ControllerOptions{
		Kubeconfig: c.Kubeconfig, Env: e.name, BrokerURL: broker.URL,
		Args: append(append([]string{}, fastControllerArgs...),
			"--mqtt-username="+controllerMQTTUser, "--mqtt-password="+ctlPassword, "--mqtt-ca-path="+broker.CAFile),
	})

	// A base on its own credentials: registered, and it runs a module (it
	// reads its commands and publishes the replies).
	a := e.startBase(baseA, func(cfg *basesim.Config) {
		cfg.Username, cfg.Password, cfg.TLS = baseA, passwordA, broker.TLSConfig
	})
	e.waitNode(baseA, "Ready", isReady)
	e.createPod(e.modulePod("mod", baseA, "biz1:0.0.1"))
	e.waitPod("mod", "Running and Ready", running)
	require.Equal(t, "ACTIVATED", bizState(a, "biz1", "0.0.1"))

	// A witness with the controller's rights sees everything delivered in
	// the env.
	var (
		mu   sync.Mutex
		seen []string
	)
	witness := mqttClient(t, broker, "witness", controllerMQTTUser, ctlPassword)
	tok := witness.Subscribe(protocol.TopicPrefix+e.name+"/#", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, m.Topic())
	})
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())

	// Base C, on its own credentials, subscribes to base A's commands as
	// well as its own (Mosquitto 2.0 grants the subscription and filters
	// what it delivers). The witness commands A, then C: messages of one
	// client reach a subscriber in order, so once C got its own command, it
	// would have got A's too.
	var cSeen []string
	spoofer := mqttClient(t, broker, baseC, baseC, passwordC)
	for _, filter := range []string{protocol.Topic(e.name, baseA, "+"), protocol.Topic(e.name, baseC, "+")} {
		sub := spoofer.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
			mu.Lock()
			defer mu.Unlock()
			cSeen = append(cSeen, m.Topic())
		})
		require.True(t, sub.WaitTimeout(10*time.Second))
		require.NoError(t, sub.Error())
	}
	healthA, healthC := protocol.Topic(e.name, baseA, protocol.CommandHealth), protocol.Topic(e.name, baseC, protocol.CommandHealth)
	healthsA := a.ReceivedCount(protocol.CommandHealth, "")
	publish(t, witness, healthA, []byte("{}"))
	publish(t, witness, healthC, []byte("{}"))
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(cSeen, healthC)
	}, waitLong, poll, "base C reads its own commands")
	mu.Lock()
	require.NotContains(t, cSeen, healthA, "base C cannot read base A's commands")
	mu.Unlock()
	require.Eventually(t, func() bool { return a.ReceivedCount(protocol.CommandHealth, "") > healthsA }, waitLong, poll,
		"base A reads its commands")

	// ... to heartbeat as another identity and to command base A, then
	// heartbeats as itself. Messages of one client reach a subscriber in
	// order, so once its own heartbeat arrived, the others would have too.
	spoofTopic := protocol.Topic(e.name, spoofed, protocol.SuffixHeartbeat)
	commandTopic := protocol.Topic(e.name, baseA, protocol.CommandInstallBiz)
	ownTopic := protocol.Topic(e.name, baseC, protocol.SuffixHeartbeat)
	publish(t, spoofer, spoofTopic, heartbeatMessage(t, spoofed))
	cmd, err := protocol.EncodeCommand(protocol.BizModel{BizName: "evil", BizVersion: "6.6.6", BizURL: "https://modules.example.test/evil.jar"})
	require.NoError(t, err)
	publish(t, spoofer, commandTopic, cmd)
	publish(t, spoofer, ownTopic, heartbeatMessage(t, baseC))

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(seen, ownTopic)
	}, waitLong, poll, "base C's heartbeat under its own identity is delivered")
	mu.Lock()
	require.NotContains(t, seen, spoofTopic, "a heartbeat under another identity is not delivered")
	require.NotContains(t, seen, commandTopic, "a command from a base is not delivered")
	mu.Unlock()

	// The controller saw the same stream: base C got a node, the spoofed
	// identity none, and base A no command from C.
	e.waitNode(baseC, "Ready", isReady)
	_, err = c.Client.CoreV1().Nodes().Get(ctx, e.nodeName(spoofed), metav1.GetOptions{})
	require.True(t, apierrors.IsNotFound(err), "no node for the spoofed identity: %v", err)
	require.Zero(t, a.ReceivedCount(protocol.CommandInstallBiz, "evil:6.6.6"))
	require.Empty(t, bizState(a, "evil", "6.6.6"))
}

// mqttClient connects a plain MQTT client over the broker's TLS.
func mqttClient(t *testing.T, b *framework.Broker, id, username, password string) paho.Client {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker(b.URL).SetClientID("koupleless@@@" + id + "-" + framework.RandomName("", 4)).
		SetUsername(username).SetPassword(password).SetTLSConfig(b.TLSConfig.Clone()).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second)
	cl := paho.NewClient(opts)
	tok := cl.Connect()
	require.True(t, tok.WaitTimeout(15*time.Second), "connect %s", username)
	require.NoError(t, tok.Error())
	t.Cleanup(func() { cl.Disconnect(100) })
	return cl
}

// publish sends one QoS 1 message and waits for the broker's acknowledgement.
func publish(t *testing.T, cl paho.Client, topic string, payload []byte) {
	t.Helper()
	tok := cl.Publish(topic, 1, false, payload)
	require.True(t, tok.WaitTimeout(10*time.Second), "publish %s", topic)
	require.NoError(t, tok.Error())
}

// heartbeatMessage is a base's heartbeat message for identity id.
func heartbeatMessage(t *testing.T, id string) []byte {
	t.Helper()
	b, err := protocol.Encode(protocol.BaseStatus{
		BaseMetadata: protocol.BaseMetadata{Identity: id, Name: "base", Version: "1.0.0", ClusterName: "default"},
		LocalIP:      id, LocalHostName: "host-" + id, State: protocol.BaseStateActivated,
	}, time.Now())
	require.NoError(t, err)
	return b
}

// TestMosquittoOverlayConfigStarts starts Debian's mosquitto on the shipped
// deploy/mosquitto/mosquitto.conf, its container paths pointed at a temp
// dir, and checks it runs with TLS, the password file and the ACL, and
// accepts a TLS connection from the controller's user.
func TestMosquittoOverlayConfigStarts(t *testing.T) {
	root, err := framework.RepoRoot()
	require.NoError(t, err)
	conf, err := os.ReadFile(filepath.Join(root, "deploy", "mosquitto", "mosquitto.conf"))
	require.NoError(t, err)
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = framework.MosquittoPath
	}
	passwdBin, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		passwdBin = filepath.Join(filepath.Dir(framework.MosquittoPath), "..", "bin", "mosquitto_passwd")
	}

	dir := t.TempDir()
	certPEM, keyPEM, pool := selfSignedServer(t)
	for name, data := range map[string][]byte{"tls/ca.crt": certPEM, "tls/tls.crt": certPEM, "tls/tls.key": keyPEM} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
	}
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "passwd"), 0o700))
	password := framework.RandomName("pw", 16)
	out, err := exec.CommandContext(t.Context(), passwdBin, "-c", "-b", filepath.Join(dir, "passwd", "passwd"), controllerMQTTUser, password).CombinedOutput()
	require.NoError(t, err, string(out))

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	require.NoError(t, l.Close())
	text := string(conf)
	require.Contains(t, text, "listener 8883\n")
	text = strings.ReplaceAll(text, "listener 8883\n", "listener "+port+" 127.0.0.1\n")
	acl, err := os.ReadFile(filepath.Join(root, "deploy", "mosquitto", "acl"))
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "config"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config", "acl"), acl, 0o600))
	text = strings.ReplaceAll(text, "/mosquitto/", dir+"/")
	require.NotContains(t, text, "/mosquitto/")
	// stdout suits a container; a file-backed stdout is block-buffered.
	text = strings.ReplaceAll(text, "log_dest stdout\n", "log_dest stderr\n")
	if os.Geteuid() == 0 {
		text += "user root\n" // as root mosquitto would switch to user mosquitto, who cannot read the temp dir
	}
	confFile := filepath.Join(dir, "mosquitto.conf")
	require.NoError(t, os.WriteFile(confFile, []byte(text), 0o600))

	logFile, err := os.Create(filepath.Join(dir, "mosquitto.log"))
	require.NoError(t, err)
	cmd := exec.Command(bin, "-c", confFile)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logFile.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(framework.DefaultStopGrace):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	readLog := func() string { b, _ := os.ReadFile(filepath.Join(dir, "mosquitto.log")); return string(b) }
	exited := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	require.Eventually(t, func() bool { return exited() || strings.Contains(readLog(), " running") }, waitLong, poll,
		"mosquitto starts")
	require.False(t, exited(), "mosquitto runs the shipped configuration; log:\n%s", readLog())

	b := &framework.Broker{Kind: framework.Mosquitto, URL: "ssl://127.0.0.1:" + port, TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	cl := mqttClient(t, b, "conf-check", controllerMQTTUser, password)
	publish(t, cl, protocol.Topic("default", "10.0.0.1", protocol.CommandHealth), []byte("{}"))
	require.NotContains(t, readLog(), "Error", "log:\n%s", readLog())

	// Closed by default: no anonymous client, and no packet over
	// max_packet_size (the embedded broker's default limit too).
	_, err = dialMQTT(t, b.URL, "anonymous", "", "", b.TLSConfig.Clone())
	require.Error(t, err, "the shipped configuration refuses anonymous clients")
	require.Contains(t, text, "max_packet_size "+strconv.Itoa(broker.DefaultMaxPacketSize)+"\n")
	big := mqttClient(t, b, "conf-check-big", controllerMQTTUser, password)
	_ = big.Publish(protocol.Topic("default", "10.0.0.1", protocol.CommandHealth), 1, false,
		make([]byte, broker.DefaultMaxPacketSize+1)).WaitTimeout(10 * time.Second)
	require.Eventually(t, func() bool { return !big.IsConnectionOpen() }, waitLong, poll,
		"mosquitto disconnects a client sending a packet over max_packet_size")
	require.True(t, cl.IsConnectionOpen(), "other clients stay connected")
}

// selfSignedServer returns a self-signed certificate for 127.0.0.1 that is its
// own CA, its key, and a pool trusting it.
func selfSignedServer(t *testing.T) (certPEM, keyPEM []byte, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mosquitto"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), pool
}
