package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// MaxPayloadSize bounds every payload Decode, DecodeCommand, Encode and EncodeCommand accept.
//
// A 1 MiB limit keeps a broken or hostile publisher from making the controller allocate
// without bound while leaving ample room for real traffic. The largest real messages are
// health replies of bases with many plugins (about 300 bytes per plugin, tens of KiB) and
// install / batch-install replies, whose bizInfos carry each biz's full classPath (about
// 110 bytes per jar, so tens of KiB per unslimmed biz; a baseline of a few dozen such bizs
// is still a few hundred KiB). Commands are far smaller.
const MaxPayloadSize = 1 << 20

// DefaultMaxAge is how old a message may be before the reference controller drops it
// (`publishTimestamp + 10s <= now`; docs/protocol.md, "Timestamps and freshness"); see
// Envelope.Expired.
const DefaultMaxAge = 10 * time.Second

// Envelope wraps every base→controller payload.
type Envelope[T any] struct {
	// Data is the payload proper.
	Data T `json:"data"`
	// PublishTimestamp is the base's clock, in Unix milliseconds, when it built the message.
	PublishTimestamp int64 `json:"publishTimestamp"`
}

// PublishedAt returns PublishTimestamp as a time in UTC.
func (e Envelope[T]) PublishedAt() time.Time {
	return time.UnixMilli(e.PublishTimestamp).UTC()
}

// Expired reports whether the message was published maxAge or longer before now, the
// reference controller's freshness rule. Messages from the future never expire.
func (e Envelope[T]) Expired(now time.Time, maxAge time.Duration) bool {
	return !e.PublishedAt().Add(maxAge).After(now)
}

// Validator is implemented by payload types that can check their own content.
type Validator interface {
	// Validate returns nil if the value is usable, else an error wrapping a sentinel of
	// this package (usually ErrMissingField, ErrInvalidBaseID or ErrMalformed).
	Validate() error
}

// Decode parses a base→controller payload. It returns an error wrapping ErrTooLarge if the
// payload exceeds MaxPayloadSize; ErrMalformed if it is not JSON of the expected shape or
// lacks data or a positive publishTimestamp; and, if T or *T implements Validator, whatever
// Validate returns. Unknown fields are ignored, as the base may add some.
func Decode[T any](payload []byte) (Envelope[T], error) {
	if err := checkSize(payload); err != nil {
		return Envelope[T]{}, err
	}
	var raw struct {
		Data             *T    `json:"data"`
		PublishTimestamp int64 `json:"publishTimestamp"`
	}
	if err := json.Unmarshal(payload, &raw); err != nil {
		return Envelope[T]{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if raw.Data == nil {
		return Envelope[T]{}, fmt.Errorf("%w: no data", ErrMalformed)
	}
	if raw.PublishTimestamp <= 0 {
		return Envelope[T]{}, fmt.Errorf("%w: publishTimestamp missing or not positive", ErrMalformed)
	}
	e := Envelope[T]{Data: *raw.Data, PublishTimestamp: raw.PublishTimestamp}
	if v, ok := any(&e.Data).(Validator); ok {
		if err := v.Validate(); err != nil {
			return Envelope[T]{}, err
		}
	}
	return e, nil
}

// Encode builds a base→controller payload: data in an Envelope stamped with publishedAt in
// Unix milliseconds. It is what a (simulated) base publishes.
func Encode[T any](data T, publishedAt time.Time) ([]byte, error) {
	ts := publishedAt.UnixMilli()
	if ts <= 0 {
		return nil, fmt.Errorf("%w: publish time %s is not after the Unix epoch",
			ErrMalformed, publishedAt)
	}
	b, err := json.Marshal(Envelope[T]{Data: data, PublishTimestamp: ts})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := checkSize(b); err != nil {
		return nil, err
	}
	return b, nil
}

// EmptyRequest is the body of CommandHealth and CommandQueryAllBiz: exactly {}.
type EmptyRequest struct{}

// DecodeCommand parses the bare JSON body of a controller→base command, as a base does.
// Errors wrap ErrTooLarge or ErrMalformed (including for an empty body or null, on which
// the base does not answer either). It does not call Validate.
func DecodeCommand[T any](payload []byte) (T, error) {
	var v T
	if err := checkSize(payload); err != nil {
		return v, err
	}
	if t := bytes.TrimSpace(payload); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return v, fmt.Errorf("%w: empty command body", ErrMalformed)
	}
	if err := json.Unmarshal(payload, &v); err != nil {
		return v, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return v, nil
}

// EncodeCommand encodes the body of a controller→base command as compact JSON without an
// envelope: EmptyRequest for CommandHealth and CommandQueryAllBiz, BizModel for
// CommandInstallBiz and CommandUninstallBiz, []BizModel for SuffixBaseline (a nil slice is
// sent as [], never null).
func EncodeCommand(v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return nil, fmt.Errorf("%w: nil command body", ErrMalformed)
	case []BizModel:
		if x == nil {
			v = []BizModel{}
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := checkSize(b); err != nil {
		return nil, err
	}
	return b, nil
}

func checkSize(b []byte) error {
	if len(b) > MaxPayloadSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), MaxPayloadSize)
	}
	return nil
}
