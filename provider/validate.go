package provider

import (
	"net/netip"
	"strconv"
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// Stable reasons of a FieldError, fit for a metric label such as
// module_controller_heartbeats_rejected_total{reason}. FieldReasons lists
// them all.
const (
	// FieldReasonIdentity: baseMetadata.identity cannot name a virtual node.
	FieldReasonIdentity = "identity"
	// FieldReasonLabelValue: a field that becomes a node label value is not a
	// valid label value.
	FieldReasonLabelValue = "label_value"
	// FieldReasonLocalIP: localIP is not a canonical unicast address a pod IP
	// may take.
	FieldReasonLocalIP = "local_ip"
	// FieldReasonHostname: localHostName is not a DNS host name.
	FieldReasonHostname = "hostname"
	// FieldReasonPortRange: port is neither 0 (MQTT) nor in 1–65535.
	FieldReasonPortRange = "port_range"
	// FieldReasonTooLong: a string is longer than its cap.
	FieldReasonTooLong = "too_long"
	// FieldReasonText: a biz name, version or state is empty or holds
	// control or space characters.
	FieldReasonText = "text"
)

// FieldReasons are all FieldError reasons, to pre-create metric labels.
var FieldReasons = []string{
	FieldReasonIdentity, FieldReasonLabelValue, FieldReasonLocalIP, FieldReasonHostname,
	FieldReasonPortRange, FieldReasonTooLong, FieldReasonText,
}

// Length caps of heartbeat and biz fields. Fields that become label values
// are capped by the label limit (63); the others are capped where the
// Kubernetes field they reach is, or generously where none is.
const (
	// MaxHostnameLength caps localHostName: a DNS name.
	MaxHostnameLength = validation.DNS1123SubdomainMaxLength
	// MaxIPLength caps localIP: the longest textual IPv6 address.
	MaxIPLength = len("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
	// MaxStateLength caps the state words of heartbeats and bizs.
	MaxStateLength = 32
	// MaxBizFieldLength caps a biz name or version (they reach Events and pod
	// status messages as name:version).
	MaxBizFieldLength = 256
)

// FieldError says which field of a base's message would make an object the
// API server rejects, and why. Validation returns it as *FieldError.
type FieldError struct {
	// Field is the JSON path of the field, e.g. "baseMetadata.name".
	Field string
	// Reason is one of FieldReasons: short, stable, a metric label.
	Reason string
	// Detail explains the problem for a log line or an Event; it may quote
	// (a prefix of) the value.
	Detail string
}

// Error returns "invalid <field> (<reason>): <detail>".
func (e *FieldError) Error() string {
	return "invalid " + e.Field + " (" + e.Reason + "): " + e.Detail
}

// Validation checks what a base reports before it becomes Kubernetes
// objects: the rules are those the API server applies to the fields the
// provider copies into the virtual node (name, labels, addresses) and into
// pod status (pod and host IPs), plus length caps. The zero value is the
// production setting.
type Validation struct {
	// Env is the tunnel env the node name is built with. When set, an
	// identity whose node name ("vnode.<identity>.<env>") does not fit the
	// node's kubernetes.io/hostname label (63 characters) is rejected; when
	// empty that check is skipped, and only the base-ID rules apply.
	Env string
	// AllowLoopbackIP accepts a loopback localIP (127.0.0.0/8, ::1), for
	// bases on the controller's own machine in development and tests.
	AllowLoopbackIP bool
}

// Heartbeat returns a *FieldError for the first field of s that the virtual
// node or a pod status built from it cannot hold, or nil.
//
// Checked: baseMetadata.identity (a base ID, the middle of the node name,
// which is also the kubernetes.io/hostname label: see Env);
// baseMetadata.name, .version and .clusterName (label values; empty means no
// label); localHostName (a DNS name, a node address and label; may be
// empty); localIP (the node's InternalIP and every pod's IP: a canonical
// unicast address, not unspecified, multicast, link-local or broadcast, not
// loopback unless AllowLoopbackIP; may be empty, then pods get no IP); port
// (0, what MQTT bases send, or 1–65535, the tunnel-port label); state
// (length only: it is read, never copied).
func (v Validation) Heartbeat(s protocol.BaseStatus) error {
	md := s.BaseMetadata
	if err := identity("baseMetadata.identity", md.Identity); err != nil {
		return err
	}
	if v.Env != "" {
		// The node name is also the value of the kubernetes.io/hostname label.
		name := protocol.NodeName(v.Env, md.Identity)
		if len(name) > validation.LabelValueMaxLength {
			return &FieldError{Field: "baseMetadata.identity", Reason: FieldReasonTooLong,
				Detail: "node name " + strconv.Quote(name) + " is longer than the " +
					strconv.Itoa(validation.LabelValueMaxLength) + " characters of the kubernetes.io/hostname label"}
		}
	}
	for _, f := range []struct{ field, value string }{
		{"baseMetadata.name", md.Name},
		{"baseMetadata.version", md.Version},
		{"baseMetadata.clusterName", md.ClusterName},
	} {
		if err := labelValue(f.field, f.value); err != nil {
			return err
		}
	}
	if err := hostname("localHostName", s.LocalHostName); err != nil {
		return err
	}
	if err := v.localIP("localIP", s.LocalIP); err != nil {
		return err
	}
	if s.Port != 0 && (s.Port < 1 || s.Port > 65535) {
		return &FieldError{Field: "port", Reason: FieldReasonPortRange,
			Detail: strconv.Itoa(s.Port) + " is not 0 or in 1-65535"}
	}
	return tooLong("state", s.State, MaxStateLength)
}

// Biz returns a *FieldError if an entry of a base's biz list cannot be
// shown in Events and pod status: name and version must be non-empty text
// without spaces or control characters, at most MaxBizFieldLength; the state
// word at most MaxStateLength. The caller drops such an entry.
func (v Validation) Biz(b protocol.SimpleBizInfo) error {
	for _, f := range []struct{ field, value string }{
		{"name", b.Name},
		{"version", b.Version},
	} {
		if err := tooLong(f.field, f.value, MaxBizFieldLength); err != nil {
			return err
		}
		if f.value == "" {
			return &FieldError{Field: f.field, Reason: FieldReasonText, Detail: "empty"}
		}
		if i := strings.IndexFunc(f.value, func(r rune) bool {
			return unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar
		}); i >= 0 {
			return &FieldError{Field: f.field, Reason: FieldReasonText,
				Detail: "space, control or invalid character at byte " + strconv.Itoa(i)}
		}
	}
	return tooLong("state", b.State, MaxStateLength)
}

// identity checks a base ID.
func identity(f, id string) error {
	if err := tooLong(f, id, protocol.MaxBaseIDLength); err != nil {
		return err
	}
	if err := protocol.ValidateBaseID(id); err != nil {
		return &FieldError{Field: f, Reason: FieldReasonIdentity, Detail: err.Error()}
	}
	return nil
}

// labelValue checks a value that becomes a node label; empty sets none.
func labelValue(f, value string) error {
	if err := tooLong(f, value, validation.LabelValueMaxLength); err != nil {
		return err
	}
	if errs := validation.IsValidLabelValue(value); len(errs) > 0 {
		return &FieldError{Field: f, Reason: FieldReasonLabelValue, Detail: strings.Join(errs, "; ")}
	}
	return nil
}

// hostname checks a host name, ignoring case (Java reports it as the OS
// does); empty is allowed.
func hostname(f, host string) error {
	if host == "" {
		return nil
	}
	if err := tooLong(f, host, MaxHostnameLength); err != nil {
		return err
	}
	if errs := validation.IsDNS1123Subdomain(strings.ToLower(host)); len(errs) > 0 {
		return &FieldError{Field: f, Reason: FieldReasonHostname, Detail: strings.Join(errs, "; ")}
	}
	return nil
}

// localIP checks the address that becomes the node's InternalIP and the
// pods' IPs; empty is allowed.
func (v Validation) localIP(f, ip string) error {
	if ip == "" {
		return nil
	}
	if err := tooLong(f, ip, MaxIPLength); err != nil {
		return err
	}
	bad := func(detail string) error {
		return &FieldError{Field: f, Reason: FieldReasonLocalIP, Detail: strconv.Quote(ip) + " " + detail}
	}
	// The API server's own check of new pod and host IPs (strict, canonical).
	if errs := validation.IsValidIP(field.NewPath(f), ip); len(errs) > 0 {
		return bad(errs.ToAggregate().Error())
	}
	addr, err := netip.ParseAddr(ip)
	switch {
	case err != nil:
		return bad("is not an IP address")
	case addr.Zone() != "":
		return bad("has a zone")
	case addr.IsUnspecified():
		return bad("is unspecified")
	case addr.IsMulticast():
		return bad("is multicast")
	case addr.IsLoopback():
		if v.AllowLoopbackIP {
			return nil
		}
		return bad("is loopback (allowed only in development)")
	case addr.IsLinkLocalUnicast():
		return bad("is link-local")
	case !addr.IsGlobalUnicast():
		return bad("is not unicast")
	}
	return nil
}

// tooLong returns a FieldReasonTooLong error if value exceeds limit bytes.
func tooLong(f, value string, limit int) error {
	if len(value) > limit {
		return &FieldError{Field: f, Reason: FieldReasonTooLong,
			Detail: strconv.Itoa(len(value)) + " bytes, limit " + strconv.Itoa(limit)}
	}
	return nil
}
