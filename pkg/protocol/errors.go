package protocol

import "errors"

// Sentinel errors. Every error returned by this package wraps exactly one of them, so callers
// can branch with errors.Is and label metrics with Reason.
var (
	// ErrTooLarge means a payload is larger than MaxPayloadSize.
	ErrTooLarge = errors.New("payload too large")
	// ErrMalformed means a payload is not valid JSON of the expected shape: bad syntax, wrong
	// types, no data or publishTimestamp, or a value the protocol does not allow.
	ErrMalformed = errors.New("malformed payload")
	// ErrInvalidBaseID means a base identity cannot be used in topics or node names.
	ErrInvalidBaseID = errors.New("invalid base id")
	// ErrBaseIDMismatch means the identity inside a payload differs from the topic's.
	ErrBaseIDMismatch = errors.New("base id mismatch")
	// ErrMissingField means a payload lacks a field the controller needs.
	ErrMissingField = errors.New("missing field")
	// ErrUnknownTopic means a topic is not one of the protocol's topics.
	ErrUnknownTopic = errors.New("unknown topic")
	// ErrInvalidEnv means an environment name cannot be used in topics or node names.
	ErrInvalidEnv = errors.New("invalid env")
)

// reasons maps each sentinel to its metric label, most specific first.
var reasons = []struct {
	err   error
	label string
}{
	{ErrTooLarge, "too_large"},
	{ErrInvalidBaseID, "invalid_base_id"},
	{ErrBaseIDMismatch, "base_id_mismatch"},
	{ErrMissingField, "missing_field"},
	{ErrUnknownTopic, "unknown_topic"},
	{ErrInvalidEnv, "invalid_env"},
	{ErrMalformed, "malformed"},
}

// Reason maps err to a short, bounded label for metrics and logs: "too_large", "malformed",
// "invalid_base_id", "base_id_mismatch", "missing_field", "unknown_topic", "invalid_env", or
// "other" for an error of no sentinel. It returns "" for a nil error.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.label
		}
	}
	return "other"
}
