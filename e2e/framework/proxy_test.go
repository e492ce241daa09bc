package framework

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// echoServer accepts connections and echoes what it reads.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, msg string, within time.Duration) error {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	require.NoError(t, c.SetReadDeadline(time.Now().Add(within)))
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	require.Equal(t, msg, string(buf))
	return nil
}

func TestProxyFreezeAndCut(t *testing.T) {
	p, err := StartProxy(echoServer(t))
	require.NoError(t, err)
	t.Cleanup(p.Close)

	c, err := net.Dial("tcp", p.Address())
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	require.NoError(t, roundTrip(t, c, "hello", 5*time.Second))

	// Frozen: the bytes are held, not lost, and arrive after the thaw.
	p.Freeze()
	err = roundTrip(t, c, "held", 300*time.Millisecond)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "nothing moves while frozen")
	p.Thaw()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 4)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, "held", string(buf))

	// Cut: the connection drops and new ones are refused until Restore.
	p.Cut()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Read(buf)
	require.Error(t, err)
	require.False(t, errors.Is(err, os.ErrDeadlineExceeded), "the cut closes the connection: %v", err)
	_, err = net.DialTimeout("tcp", p.Address(), time.Second)
	require.Error(t, err, "connects are refused while cut")

	require.NoError(t, p.Restore(t.Context()))
	c2, err := net.Dial("tcp", p.Address())
	require.NoError(t, err)
	defer func() { _ = c2.Close() }()
	require.NoError(t, roundTrip(t, c2, "again", 5*time.Second))

	// A cut while frozen frees the held connection too.
	p.Freeze()
	p.Cut()
	p.Thaw()
	require.NoError(t, p.Restore(t.Context()))
}
