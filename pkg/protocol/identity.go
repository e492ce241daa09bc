package protocol

import (
	"fmt"
	"strings"
)

// Node names: "vnode.<baseID>.<env>", as the reference virtual-kubelet builds them.
const (
	// NodeNamePrefix is the first dot-separated part of every virtual node name.
	NodeNamePrefix = "vnode"
	// MaxNodeNameLength is the Kubernetes limit for a node name (a DNS-1123 subdomain).
	MaxNodeNameLength = 253
	// MaxBaseIDLength is the longest base ID ValidateBaseID accepts: short enough that
	// NodeName of any env passing ValidateEnv stays within MaxNodeNameLength.
	MaxBaseIDLength = MaxNodeNameLength - len(NodeNamePrefix) - len("..") - MaxEnvLength
)

// ValidateBaseID reports, wrapping ErrInvalidBaseID, whether id can be a base identity: one
// MQTT topic level (no '/', '+' or '#') that also fits inside a node name, i.e. dot-separated
// parts of lower-case letters, digits and '-', each starting and ending with a letter or
// digit, at most MaxBaseIDLength in all. IPv4 addresses, what a stock base uses, qualify.
func ValidateBaseID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrInvalidBaseID)
	}
	if len(id) > MaxBaseIDLength {
		return fmt.Errorf("%w: %d characters, limit %d", ErrInvalidBaseID, len(id), MaxBaseIDLength)
	}
	if i := strings.IndexAny(id, "/+#"); i >= 0 {
		return fmt.Errorf("%w %q: MQTT topic character %q", ErrInvalidBaseID, id, id[i])
	}
	for part := range strings.SplitSeq(id, ".") {
		if detail := checkLabel(part); detail != "" {
			return fmt.Errorf("%w %q: %s, in parts separated by '.'", ErrInvalidBaseID, id, detail)
		}
	}
	return nil
}

// checkLabel returns why s is not a DNS-1123 label (ignoring length), or "" if it is.
func checkLabel(s string) string {
	if s == "" {
		return "empty dot-separated part"
	}
	for _, r := range s {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '-':
		case 'A' <= r && r <= 'Z':
			return "must be lower case"
		default:
			return fmt.Sprintf("character %q not allowed (want a-z, 0-9 and '-')", r)
		}
	}
	if s[0] == '-' || s[len(s)-1] == '-' {
		return "parts must start and end with a letter or digit"
	}
	return ""
}

// NodeName returns the name of the virtual node of a base: "vnode.<baseID>.<env>", env
// normalized. It is a valid node name if ValidateEnv(env) and ValidateBaseID(baseID) pass.
func NodeName(env, baseID string) string {
	return NodeNamePrefix + "." + baseID + "." + NormalizeEnv(env)
}

// BaseIDFromNodeName inverts NodeName: it drops the first ("vnode") and the last (env)
// dot-separated parts, so base IDs with dots (IPv4) survive. ok is false if name is not
// "vnode.<id>.<env>" with a non-empty id and env.
func BaseIDFromNodeName(name string) (env, baseID string, ok bool) {
	rest, found := strings.CutPrefix(name, NodeNamePrefix+".")
	if !found {
		return "", "", false
	}
	i := strings.LastIndexByte(rest, '.')
	if i <= 0 || i == len(rest)-1 {
		return "", "", false
	}
	return rest[i+1:], rest[:i], true
}
