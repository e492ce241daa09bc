package protocol

import (
	"fmt"
	"slices"
	"strings"
)

// Result codes. Output.Code is CodeSuccess or CodeFailed over MQTT; ClientResponse.Code and
// BatchInstallResponse.Code may be any of them (docs/protocol.md, "Result codes").
const (
	// CodeSuccess means the command did what it was asked.
	CodeSuccess = "SUCCESS"
	// CodeFailed means it did not; the message says why.
	CodeFailed = "FAILED"
	// CodeRepeatBiz means an install found that exact name:version already registered.
	CodeRepeatBiz = "REPEAT_BIZ"
	// CodeNotFoundBiz means an uninstall found no such name:version.
	CodeNotFoundBiz = "NOT_FOUND_BIZ"
	// CodeIllegalStateBiz means the biz was in a state that forbids the operation.
	CodeIllegalStateBiz = "ILLEGAL_STATE_BIZ"
)

// conflictMarker is in Output.Message when the base refused a command because another one
// for the same name:version (or, for batches, any batch) was still running.
const conflictMarker = "conflict, exist unfinished command"

// Output is arklet's command result wrapper.
type Output[T any] struct {
	// Code is CodeSuccess or CodeFailed.
	Code string `json:"code"`
	// Message explains a failure (the exception message); usually absent on success.
	Message string `json:"message,omitempty"`
	// Data is the command's result; absent on lock conflicts and internal errors.
	Data T `json:"data,omitempty,omitzero"`
}

// Validate requires Code.
func (o Output[T]) Validate() error {
	if o.Code == "" {
		return fmt.Errorf("%w: code", ErrMissingField)
	}
	return nil
}

// Succeeded reports whether Code is CodeSuccess.
func (o Output[T]) Succeeded() bool {
	return o.Code == CodeSuccess
}

// conflict reports whether the base refused the command because of its per-biz lock.
func (o Output[T]) conflict(hasData bool) bool {
	return o.Code != CodeSuccess && !hasData && strings.Contains(o.Message, conflictMarker)
}

// OperationOutcome classifies the reply to an install, uninstall or baseline. Its values are
// short and stable, fit for metric labels.
type OperationOutcome string

// Operation outcomes.
const (
	// OutcomeSucceeded means the base did it. For installs still check
	// BizOperation.InstalledState: a second version of an active name is installed
	// DEACTIVATED, i.e. it runs but does not serve.
	OutcomeSucceeded OperationOutcome = "succeeded"
	// OutcomeRepeat means the exact name:version was already registered; nothing changed.
	// Not a failure of the running biz.
	OutcomeRepeat OperationOutcome = "repeat"
	// OutcomeNotFound means an uninstall found nothing to remove; the desired state holds,
	// so treat it as an idempotent success rather than a broken biz.
	OutcomeNotFound OperationOutcome = "not_found"
	// OutcomeConflict means another command for the same biz (or another batch) was still
	// running; nothing was done. Retry later.
	OutcomeConflict OperationOutcome = "conflict"
	// OutcomeFailed means any other failure; see ErrorMessage.
	OutcomeFailed OperationOutcome = "failed"
)

// ClientResponse is a SOFAArk operation result: Output.Data of installs and uninstalls, and
// one entry of a batch install.
type ClientResponse struct {
	// Code is one of the Code… constants.
	Code string `json:"code"`
	// Message is a human text; a Java stack trace when the operation threw.
	Message string `json:"message,omitempty"`
	// ElapsedSpace is the Metaspace growth in bytes (installs only).
	ElapsedSpace int64 `json:"elapsedSpace,omitempty"`
	// BizInfos holds the installed biz on a successful install, and is empty otherwise.
	BizInfos []BizInfo `json:"bizInfos,omitempty"`
}

// Outcome classifies Code alone (no conflict detection: that lives in Output).
func (c ClientResponse) Outcome() OperationOutcome {
	switch c.Code {
	case CodeSuccess:
		return OutcomeSucceeded
	case CodeRepeatBiz:
		return OutcomeRepeat
	case CodeNotFoundBiz:
		return OutcomeNotFound
	default:
		return OutcomeFailed
	}
}

// BizOperation is the data of SuffixBizOperation: the reply to one install or uninstall.
// Replies to different bizs may arrive in any order.
type BizOperation struct {
	// Command is CommandInstallBiz or CommandUninstallBiz.
	Command string `json:"command"`
	// BizName is echoed from the command (absent if the command had none).
	BizName string `json:"bizName,omitempty"`
	// BizVersion is echoed from the command (absent if the command had none).
	BizVersion string `json:"bizVersion,omitempty"`
	// Response is the result.
	Response Output[ClientResponse] `json:"response"`
}

// Validate requires Command to be CommandInstallBiz or CommandUninstallBiz, and
// Response.Code.
func (o BizOperation) Validate() error {
	switch o.Command {
	case CommandInstallBiz, CommandUninstallBiz:
	case "":
		return fmt.Errorf("%w: command", ErrMissingField)
	default:
		return fmt.Errorf("%w: command %q is not %s or %s", ErrMalformed, o.Command,
			CommandInstallBiz, CommandUninstallBiz)
	}
	if err := o.Response.Validate(); err != nil {
		return fmt.Errorf("response: %w", err)
	}
	return nil
}

// Key returns BizKey(BizName, BizVersion) as echoed from the command.
func (o BizOperation) Key() string {
	return BizKey(o.BizName, o.BizVersion)
}

// Outcome classifies the reply: OutcomeSucceeded if Response.Code is CodeSuccess; else
// OutcomeConflict for a lock conflict (no data, reason only in Response.Message); else
// OutcomeRepeat or OutcomeNotFound from the inner code; else OutcomeFailed.
func (o BizOperation) Outcome() OperationOutcome {
	r := o.Response
	if r.Succeeded() {
		return OutcomeSucceeded
	}
	if r.conflict(r.Data.Code != "") {
		return OutcomeConflict
	}
	if out := r.Data.Outcome(); out != OutcomeSucceeded {
		return out
	}
	return OutcomeFailed
}

// ErrorMessage returns the best short human explanation of a reply that did not succeed:
// Response.Message and the first line of Response.Data.Message (a stack trace on
// exceptions), joined with ": " unless one contains the other. It is "" on success.
func (o BizOperation) ErrorMessage() string {
	if o.Outcome() == OutcomeSucceeded {
		return ""
	}
	return joinMessages(o.Response.Message, o.Response.Data.Message)
}

// InstalledState returns the state of the biz an install reply describes
// (Response.Data.BizInfos[0]), or "" if the reply carries none. A successful install can
// report BizDeactivated: it then runs but does not serve.
func (o BizOperation) InstalledState() BizState {
	if len(o.Response.Data.BizInfos) == 0 {
		return ""
	}
	return o.Response.Data.BizInfos[0].State()
}

// BatchInstallResponse is Output.Data of a batch install.
type BatchInstallResponse struct {
	// Code is CodeSuccess if every biz installed, else CodeFailed.
	Code string `json:"code"`
	// Message is "batch install success" / "batch install failed", or a stack trace if the
	// whole batch threw.
	Message string `json:"message,omitempty"`
	// ElapsedSpace is the Metaspace growth in bytes during the batch.
	ElapsedSpace int64 `json:"elapsedSpace,omitempty"`
	// BizURLToResponse maps each biz URL of the baseline to its result. Entries of bizs that
	// did not install (including CodeRepeatBiz) have no BizInfos.
	BizURLToResponse map[string]ClientResponse `json:"bizUrlToResponse,omitempty"`
}

// BatchInstallResult is the data of SuffixBatchInstallResponse: the reply to a baseline.
type BatchInstallResult struct {
	// Command is CommandBatchInstallBiz.
	Command string `json:"command"`
	// Response is the result.
	Response Output[BatchInstallResponse] `json:"response"`
}

// Validate requires Response.Code.
func (r BatchInstallResult) Validate() error {
	if err := r.Response.Validate(); err != nil {
		return fmt.Errorf("response: %w", err)
	}
	return nil
}

// Outcome classifies the reply: OutcomeSucceeded if Response.Code is CodeSuccess; else
// OutcomeConflict if another batch was running; else OutcomeRepeat if every entry either
// installed or was already registered (so everything in the baseline runs); else
// OutcomeFailed.
func (r BatchInstallResult) Outcome() OperationOutcome {
	resp := r.Response
	if resp.Succeeded() {
		return OutcomeSucceeded
	}
	if resp.conflict(resp.Data.Code != "") {
		return OutcomeConflict
	}
	if len(resp.Data.BizURLToResponse) == 0 {
		return OutcomeFailed
	}
	for _, c := range resp.Data.BizURLToResponse {
		if out := c.Outcome(); out != OutcomeSucceeded && out != OutcomeRepeat {
			return OutcomeFailed
		}
	}
	return OutcomeRepeat
}

// ErrorMessage returns a short explanation of a batch that did not succeed, like
// BizOperation.ErrorMessage; per-biz reasons are in the entries. It is "" on success.
func (r BatchInstallResult) ErrorMessage() string {
	if r.Outcome() == OutcomeSucceeded {
		return ""
	}
	return joinMessages(r.Response.Message, r.Response.Data.Message)
}

// Installed returns the bizs the batch installed (every entry's BizInfos), ordered by biz
// URL. Entries without BizInfos (repeats, failures) contribute nothing.
func (r BatchInstallResult) Installed() []BizInfo {
	m := r.Response.Data.BizURLToResponse
	urls := make([]string, 0, len(m))
	for u := range m {
		urls = append(urls, u)
	}
	slices.Sort(urls)
	var out []BizInfo
	for _, u := range urls {
		out = append(out, m[u].BizInfos...)
	}
	return out
}

// joinMessages combines an outer message with the first line of an inner one.
func joinMessages(outer, inner string) string {
	outer = strings.TrimSpace(outer)
	inner, _, _ = strings.Cut(inner, "\n")
	inner = strings.TrimSpace(inner)
	switch {
	case inner == "" || strings.Contains(outer, inner):
		return outer
	case outer == "" || strings.Contains(inner, outer):
		return inner
	default:
		return outer + ": " + inner
	}
}
