package main

import (
	"bytes"
	"errors"
	"testing"

	"github.com/go-logr/logr"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	"k8s.io/klog/v2"
)

func TestKlogGoesToLogrus(t *testing.T) {
	var buf bytes.Buffer
	l := logrus.New()
	l.SetOutput(&buf)
	l.SetFormatter(&logrus.JSONFormatter{})
	l.SetLevel(logrus.InfoLevel)
	klog.SetLogger(logr.New(klogSink{entry: logrus.NewEntry(l)}))
	t.Cleanup(klog.ClearLogger)

	klog.InfoS("watch started", "resource", "pods")
	klog.V(4).InfoS("verbose detail")
	klog.ErrorS(errors.New("boom"), "watch failed", "resource", "nodes")
	klog.Background().WithName("reflector").Info("named")
	klog.Flush()

	out := buf.String()
	require.Contains(t, out, `"msg":"watch started"`)
	require.Contains(t, out, `"resource":"pods"`)
	require.NotContains(t, out, "verbose detail", "klog V(4) is Debug, hidden at info")
	require.Contains(t, out, `"level":"error"`)
	require.Contains(t, out, `"error":"boom"`)
	require.Contains(t, out, `"logger":"reflector"`)
}
