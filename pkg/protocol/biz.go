package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// BizState is a SOFAArk biz state in its canonical upper-case form. The wire spells it upper
// case in state records, bizInfos and health, lower case in simpleBiz; use ParseBizState.
type BizState string

// Biz states (SOFAArk BizState; docs/protocol.md, "Biz states").
const (
	// BizUnresolved is a biz not registered yet; also used for "no state known".
	BizUnresolved BizState = "UNRESOLVED"
	// BizResolved is a registered biz that has not started.
	BizResolved BizState = "RESOLVED"
	// BizActivated is a started biz that serves.
	BizActivated BizState = "ACTIVATED"
	// BizDeactivated is a started biz that does not serve (e.g. a second version of an
	// active name) or one being uninstalled.
	BizDeactivated BizState = "DEACTIVATED"
	// BizBroken is a biz whose start failed.
	BizBroken BizState = "BROKEN"
	// BizStopped is an uninstalled biz; never reported by queryAllBiz.
	BizStopped BizState = "STOPPED"
)

// legacyBizStates maps the digits of the short-lived array form of simpleBiz
// (docs/protocol.md, "Legacy encodings").
var legacyBizStates = map[string]BizState{
	"1": BizUnresolved,
	"2": BizResolved,
	"3": BizActivated,
	"4": BizDeactivated,
	"5": BizBroken,
}

// ParseBizState returns s as a BizState: trimmed and upper-cased, with the legacy digits
// "1".."5" mapped to their states. Unknown words are returned upper-cased, "" stays "".
func ParseBizState(s string) BizState {
	s = strings.TrimSpace(s)
	if st, ok := legacyBizStates[s]; ok {
		return st
	}
	return BizState(strings.ToUpper(s))
}

// Install strategies for BizModel.InstallStrategy.
const (
	// StrategyInstallOnly installs next to other versions of the name (the base's default).
	StrategyInstallOnly = "installOnly"
	// StrategyUninstallThenInstall first uninstalls every version of the name.
	StrategyUninstallThenInstall = "uninstallThenInstall"
)

// BizKey returns the key "name:version" that identifies a biz on a base.
func BizKey(name, version string) string {
	return name + ":" + version
}

// BizModel is the body of CommandInstallBiz and CommandUninstallBiz and an element of the
// baseline. The base reads name and version for its per-biz lock and echoes them back, but
// registers the biz under the name and version of the jar's manifest.
type BizModel struct {
	// BizName is the biz name; the base requires both BizName and BizVersion, or neither.
	BizName string `json:"bizName,omitempty"`
	// BizVersion is the biz version.
	BizVersion string `json:"bizVersion,omitempty"`
	// BizURL is the jar location; required for installs, ignored by uninstalls.
	BizURL string `json:"bizUrl,omitempty"`
	// InstallStrategy is StrategyInstallOnly (if empty) or StrategyUninstallThenInstall.
	InstallStrategy string `json:"installStrategy,omitempty"`
}

// Key returns BizKey(BizName, BizVersion).
func (b BizModel) Key() string {
	return BizKey(b.BizName, b.BizVersion)
}

// StateRecord is one entry of a biz's state history.
type StateRecord struct {
	// ChangeTime is when the state was entered, in Unix milliseconds (0 if unknown).
	ChangeTime int64 `json:"changeTime"`
	// State is the state entered, upper case.
	State string `json:"state"`
	// Reason is the SOFAArk reason, e.g. "CREATED", "STARTED", "INSTALL_FAILED", "KILLING".
	Reason string `json:"reason"`
	// Message explains the change; often empty, a stack trace for INSTALL_FAILED.
	Message string `json:"message"`
}

// ChangedAt returns ChangeTime as a time in UTC, or the zero time if ChangeTime is not set.
func (r StateRecord) ChangedAt() time.Time {
	if r.ChangeTime <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(r.ChangeTime).UTC()
}

// SimpleBizInfo is one element of the data of SuffixSimpleBiz, the inventory a base sends in
// answer to CommandQueryAllBiz. Treat the list as a set: its order carries no meaning.
type SimpleBizInfo struct {
	// Name is the biz name.
	Name string `json:"name"`
	// Version is the biz version.
	Version string `json:"version"`
	// State is the state word, lower case (or a legacy digit); read it with BizState.
	State string `json:"state"`
	// LatestStateRecord is the last entry of the biz's state history, or nil.
	LatestStateRecord *StateRecord `json:"latestStateRecord"`
}

// UnmarshalJSON accepts the current object form and the legacy array form
// [name, version, state] sent by unreleased runtimes in late 2024 (state a digit string).
func (s *SimpleBizInfo) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '[' {
		type plain SimpleBizInfo // no methods, so no recursion
		return json.Unmarshal(b, (*plain)(s))
	}
	var fields []json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return err
	}
	if len(fields) != 3 {
		return fmt.Errorf("simpleBiz array form: %d elements, want 3", len(fields))
	}
	var v SimpleBizInfo
	if err := json.Unmarshal(fields[0], &v.Name); err != nil {
		return fmt.Errorf("simpleBiz array form: name: %w", err)
	}
	if err := json.Unmarshal(fields[1], &v.Version); err != nil {
		return fmt.Errorf("simpleBiz array form: version: %w", err)
	}
	var state json.Number // a digit, quoted or not
	if err := json.Unmarshal(fields[2], &state); err != nil {
		if err := json.Unmarshal(fields[2], &v.State); err != nil {
			return fmt.Errorf("simpleBiz array form: state: %w", err)
		}
	} else {
		v.State = state.String()
	}
	*s = v
	return nil
}

// BizState returns State parsed with ParseBizState.
func (s SimpleBizInfo) BizState() BizState {
	return ParseBizState(s.State)
}

// Key returns BizKey(Name, Version).
func (s SimpleBizInfo) Key() string {
	return BizKey(s.Name, s.Version)
}

// ChangedAt returns the change time of LatestStateRecord, or the zero time if there is none;
// callers then fall back to the envelope's publish time, as the reference does.
func (s SimpleBizInfo) ChangedAt() time.Time {
	if s.LatestStateRecord == nil {
		return time.Time{}
	}
	return s.LatestStateRecord.ChangedAt()
}

// BizInfo is a SOFAArk biz as a base describes it in install and batch-install replies
// (bizInfos) and in the legacy base/biz inventory. Only the fields a controller uses are
// kept; the base sends more (classPath, deny-import lists, …), which are ignored.
type BizInfo struct {
	// BizName is the registered name (from the jar manifest).
	BizName string `json:"bizName"`
	// BizVersion is the registered version (from the jar manifest).
	BizVersion string `json:"bizVersion"`
	// BizState is the state, upper case; read it with State.
	BizState string `json:"bizState"`
	// BizStateRecords is the state history, oldest first.
	BizStateRecords []StateRecord `json:"bizStateRecords,omitempty"`
	// BizURL is where the base unpacked the biz (a file: URL), not the URL installed from.
	BizURL string `json:"bizUrl,omitempty"`
	// Identity is "name:version".
	Identity string `json:"identity,omitempty"`
	// MainClass is the biz's main class.
	MainClass string `json:"mainClass,omitempty"`
	// WebContextPath is the biz's web context path.
	WebContextPath string `json:"webContextPath,omitempty"`
	// Priority orders a batch install: lower installs first (default 100).
	Priority int `json:"priority,omitempty"`
}

// State returns BizState parsed with ParseBizState.
func (b BizInfo) State() BizState {
	return ParseBizState(b.BizState)
}

// Key returns BizKey(BizName, BizVersion).
func (b BizInfo) Key() string {
	return BizKey(b.BizName, b.BizVersion)
}

// LatestStateRecord returns the last entry of BizStateRecords, or false if there is none.
func (b BizInfo) LatestStateRecord() (StateRecord, bool) {
	if len(b.BizStateRecords) == 0 {
		return StateRecord{}, false
	}
	return b.BizStateRecords[len(b.BizStateRecords)-1], true
}
