package provider

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// TestBizTransitions drives one biz through every transition of
// bizTransitions, from a provider brought to the row's starting phase, and
// checks the phase it ends in and the commands it sent on the way.
func TestBizTransitions(t *testing.T) {
	const key = "biz1:0.0.1"
	pod := func() *corev1.Pod { return modulePod("p", t0, bizContainer("biz1", "0.0.1")) }
	other := func() *corev1.Pod { return modulePod("p", t0, bizContainer("biz2", "0.0.1")) }
	install, uninstall := installCmd("biz1", "0.0.1"), uninstallCmd("biz1", "0.0.1")
	query := protocol.CommandQueryAllBiz

	// Setups: each leaves the biz in the phase its name says.
	absent := func(h *harness) { h.list(); h.requireSent() }
	unlistedAbsent := func(h *harness) { h.create(pod()); h.requireSent() }
	installing := func(h *harness) { h.list(); h.create(pod()); h.requireSent(install) }
	unsendable := func(h *harness) {
		h.tun.SetSendError(errors.New("not connected"))
		h.list()
		h.create(pod()) // decided, not sent yet
	}
	orphan := func(h *harness) {
		h.list(listed("biz1", "0.0.1", protocol.BizActivated, t0))
		h.requireSent()
	}
	installRetry := func(h *harness) {
		installing(h)
		h.reply(installFailed("biz1", "0.0.1"))
		h.requireSent()
	}
	clashed := func(h *harness) {
		installing(h)
		h.reply(conflict(protocol.CommandInstallBiz, "biz1", "0.0.1"))
		h.requireSent()
	}
	onBase := func(h *harness) {
		installing(h)
		h.reply(installOK("biz1", "0.0.1", protocol.BizActivated, t0, ""))
		h.requireSent()
	}
	uninstalling := func(h *harness) {
		onBase(h)
		h.delete(pod())
		h.requireSent(uninstall)
	}
	uninstallRetry := func(h *harness) {
		uninstalling(h)
		h.reply(uninstallReply("biz1", "0.0.1", protocol.CodeFailed))
		h.requireSent()
	}

	tests := []struct {
		name  string
		from  bizPhase
		setup func(*harness)
		on    bizEvent
		event func(*harness)
		to    bizPhase
		sent  []string
	}{
		{"a live pod asks for it", bizAbsent, absent, evInstallSent,
			func(h *harness) { h.create(pod()) }, bizInstalling, []string{install}},
		{"a deleted pod had it before the list was known", bizAbsent, unlistedAbsent, evUnwanted,
			func(h *harness) { h.delete(pod()) }, bizUninstalling, []string{uninstall}},
		{"the list shows it", bizAbsent, absent, evListed,
			func(h *harness) { h.list(listed("biz1", "0.0.1", protocol.BizActivated, t0)) }, bizOnBase, nil},
		{"the install succeeds", bizInstalling, installing, evInstallOK,
			func(h *harness) { h.reply(installOK("biz1", "0.0.1", protocol.BizActivated, t0, "")) }, bizOnBase, nil},
		{"the list shows the biz being installed", bizInstalling, installing, evListed,
			func(h *harness) { h.list(listed("biz1", "0.0.1", protocol.BizActivated, t0)) }, bizOnBase, nil},
		{"the base has it already", bizInstalling, installing, evInstallRepeat,
			func(h *harness) { h.reply(installRepeat("biz1", "0.0.1")) }, bizInstallRetry, []string{query}},
		{"the install fails", bizInstalling, installing, evInstallRefused,
			func(h *harness) { h.reply(installFailed("biz1", "0.0.1")) }, bizInstallRetry, nil},
		{"the install clashes", bizInstalling, installing, evInstallRefused,
			func(h *harness) { h.reply(conflict(protocol.CommandInstallBiz, "biz1", "0.0.1")) }, bizInstallRetry, nil},
		{"the install cannot be sent", bizInstalling, unsendable, evInstallRefused,
			func(h *harness) { h.flush() }, bizInstallRetry, nil},
		{"the install goes unanswered", bizInstalling, installing, evInstallUnanswered,
			func(h *harness) { h.resyncAt(h.clk.Now().Add(installWait)) }, bizInstallRetry, []string{query}},
		{"its pod is deleted after the install went unanswered", bizInstalling, installing, evUnwanted,
			func(h *harness) {
				h.clk.Step(installWait)
				h.delete(pod())
			}, bizUninstalling, []string{uninstall}},
		{"its pod no longer asks for it", bizInstalling, installing, evInstallAbandoned,
			func(h *harness) { h.update(other()) }, bizAbsent, []string{installCmd("biz2", "0.0.1")}},
		{"the retry is due", bizInstallRetry, installRetry, evInstallRetryDue,
			func(h *harness) { h.resyncAt(h.clk.Now().Add(retryBase)) }, bizInstalling, []string{install}},
		{"the list shows the biz being retried", bizInstallRetry, installRetry, evListed,
			func(h *harness) { h.list(listed("biz1", "0.0.1", protocol.BizActivated, t0)) }, bizOnBase, nil},
		{"its pod is deleted after the install clashed", bizInstallRetry, clashed, evUnwanted,
			func(h *harness) { h.delete(pod()) }, bizUninstalling, []string{uninstall}},
		{"its pod no longer asks for the failed biz", bizInstallRetry, installRetry, evInstallAbandoned,
			func(h *harness) { h.update(other()) }, bizAbsent, []string{installCmd("biz2", "0.0.1")}},
		{"a newer list lacks it", bizOnBase, orphan, evUnlisted,
			func(h *harness) { h.list() }, bizAbsent, nil},
		{"its pod is deleted", bizOnBase, onBase, evUnwanted,
			func(h *harness) { h.delete(pod()) }, bizUninstalling, []string{uninstall}},
		{"its pod's image changes", bizOnBase, onBase, evUnwanted,
			func(h *harness) {
				p := pod()
				p.Spec.Containers[0].Image = jarURL("biz1", "0.0.1") + "?v=2"
				h.update(p)
			}, bizUninstalling, []string{uninstall}},
		{"the uninstall succeeds", bizUninstalling, uninstalling, evUninstallOK,
			func(h *harness) { h.reply(uninstallReply("biz1", "0.0.1", protocol.CodeSuccess)) }, bizAbsent, nil},
		{"the base does not have it", bizUninstalling, uninstalling, evUninstallOK,
			func(h *harness) { h.reply(uninstallReply("biz1", "0.0.1", protocol.CodeNotFoundBiz)) }, bizAbsent, nil},
		{"the uninstall fails", bizUninstalling, uninstalling, evUninstallRefused,
			func(h *harness) { h.reply(uninstallReply("biz1", "0.0.1", protocol.CodeFailed)) }, bizUninstallRetry, nil},
		{"the uninstall clashes", bizUninstalling, uninstalling, evUninstallRefused,
			func(h *harness) { h.reply(conflict(protocol.CommandUninstallBiz, "biz1", "0.0.1")) }, bizUninstallRetry, nil},
		{"the uninstall goes unanswered", bizUninstalling, uninstalling, evUninstallUnanswered,
			func(h *harness) { h.resyncAt(h.clk.Now().Add(installWait)) }, bizUninstalling, []string{uninstall, query}},
		{"the uninstall retry is due", bizUninstallRetry, uninstallRetry, evUninstallRetryDue,
			func(h *harness) { h.resyncAt(h.clk.Now().Add(retryBase)) }, bizUninstalling, []string{uninstall}},
		{"the base restarts under a live pod", bizOnBase, onBase, evBaseline,
			func(h *harness) { require.Len(h.t, h.p.Baseline(), 1) }, bizInstalling, nil},
		{"the base restarts under a deleted pod", bizUninstalling, uninstalling, evBaseline,
			func(h *harness) { require.Empty(h.t, h.p.Baseline()) }, bizAbsent, nil},
	}
	covered := map[bizTransition]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := bizTransition{tt.from, tt.on, tt.to}
			require.Contains(t, bizTransitions, tr, "the transition is not documented")
			covered[tr] = true
			h := newHarness(t)
			tt.setup(h)
			require.Equal(t, tt.from.String(), h.p.phaseOf(key).String(), "after setup")
			tt.event(h)
			h.requireSent(tt.sent...)
			require.Equal(t, tt.to.String(), h.p.phaseOf(key).String(), "after %s", tt.on)
		})
	}
	for _, tr := range bizTransitions {
		require.True(t, covered[tr], "no test for %s --%s--> %s", tr.from, tr.on, tr.to)
	}
}

func TestCommandKindNames(t *testing.T) {
	for kind, want := range map[commandKind]string{
		cmdInstall:    protocol.CommandInstallBiz,
		cmdUninstall:  protocol.CommandUninstallBiz,
		cmdQueryAll:   protocol.CommandQueryAllBiz,
		cmdReleasePod: "releasePod",
		0:             "unknown",
	} {
		require.Equal(t, want, kind.String())
	}
}
