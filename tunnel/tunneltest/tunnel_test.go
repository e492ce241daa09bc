package tunneltest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/moduleops/module-controller/pkg/protocol"
)

func TestWaitForReturnsOnceEnoughCommandsMatch(t *testing.T) {
	tun := New()
	ctx := t.Context()
	done := make(chan []Command)
	go func() {
		got, err := tun.WaitFor(ctx, 2, Named("b", protocol.CommandQueryAllBiz))
		if err != nil {
			got = nil
		}
		done <- got
	}()
	require.NoError(t, tun.QueryAllBiz(ctx, "b"))
	require.NoError(t, tun.QueryHealth(ctx, "b"))
	require.NoError(t, tun.QueryAllBiz(ctx, "other"))
	select {
	case got := <-done:
		t.Fatalf("returned after one match: %+v", got)
	default:
	}
	require.NoError(t, tun.QueryAllBiz(ctx, "b"))
	require.Len(t, <-done, 2)
}

func TestWaitForEndsWithTheContext(t *testing.T) {
	tun := New()
	require.NoError(t, tun.QueryHealth(t.Context(), "b"))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	got, err := tun.WaitFor(ctx, 1, Named("b", protocol.CommandInstallBiz))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Empty(t, got)
}

func TestSentIsClosedByTheNextRecordedCommand(t *testing.T) {
	tun := New()
	sent := tun.Sent()
	tun.SetSendError(errors.New("down"))
	require.Error(t, tun.QueryAllBiz(t.Context(), "b"))
	select {
	case <-sent:
		t.Fatal("a failed command was announced")
	default:
	}
	tun.SetSendError(nil)
	require.NoError(t, tun.QueryAllBiz(t.Context(), "b"))
	<-sent
	require.NotEqual(t, sent, tun.Sent(), "a fresh channel waits for the next command")
}
