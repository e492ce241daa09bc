package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// The HTTP tunnel (docs/http-tunnel.md; the wire contract is arklet-http.md): a base posts
// its heartbeat, a bare BaseStatus without envelope or timestamp, to the controller, and
// the controller calls the base's arklet at http://<localIP>:<port>/<command> with the
// same command bodies as over MQTT. Every answer of the arklet is a Response.
const (
	// HTTPPathHeartbeat is the controller's heartbeat endpoint (POST, body BaseStatus).
	HTTPPathHeartbeat = "/heartbeat"
	// HTTPPathQueryBaseline is the controller's baseline endpoint (POST, body
	// BaseMetadata; answered with a JSON array of BizModel).
	HTTPPathQueryBaseline = "/queryBaseline"
	// HTTPHeartbeatAnswer is the body of the 200 answer to a heartbeat, as the 2.2
	// controller sends it.
	HTTPHeartbeatAnswer = "SUCCESS"
	// DefaultArkletHTTPPort is the arklet's default HTTP port (koupleless.arklet.http.port).
	DefaultArkletHTTPPort = 1238
)

// Result codes only the HTTP tunnel's Response carries (arklet ResponseCode).
const (
	// CodeCommandNotFound answers a path that is no command of the arklet.
	CodeCommandNotFound = "CMD_NOT_FOUND"
	// CodeCommandInternalError answers a command whose handler threw outside its own
	// error handling.
	CodeCommandInternalError = "CMD_PROCESS_INTERNAL_ERROR"
)

// Response is the body of every arklet HTTP answer with status 200: the command's Output
// (Code, Message, Data) plus ErrorStackTrace and BaseIdentity. T is ClientResponse for
// installBiz and uninstallBiz, Health for health, []BizInfo for queryAllBiz.
type Response[T any] struct {
	// Code is CodeSuccess, CodeFailed, CodeCommandNotFound or CodeCommandInternalError.
	Code string `json:"code"`
	// Message explains a failure.
	Message string `json:"message,omitempty"`
	// Data is the command's result; absent on lock conflicts and internal errors.
	Data T `json:"data,omitempty,omitzero"`
	// ErrorStackTrace is the Java stack trace of an internal error.
	ErrorStackTrace string `json:"errorStackTrace,omitempty"`
	// BaseIdentity is the identity of the answering base, if the arklet sets it.
	BaseIdentity string `json:"baseIdentity,omitempty"`
}

// Validate requires Code.
func (r Response[T]) Validate() error {
	if r.Code == "" {
		return fmt.Errorf("%w: code", ErrMissingField)
	}
	return nil
}

// Output returns the Output the same command's MQTT reply would carry.
func (r Response[T]) Output() Output[T] {
	return Output[T]{Code: r.Code, Message: r.Message, Data: r.Data}
}

// DecodeHTTP parses a JSON body of the HTTP tunnel strictly: at most MaxPayloadSize bytes
// (ErrTooLarge; callers cap the read before allocating), exactly one JSON value with
// nothing but white space after it, a JSON object or array (not null, a string or a
// number), fields of the right types (ErrMalformed), and, if T or *T implements Validator,
// whatever Validate returns. Unknown fields are ignored, as newer bases may add some.
func DecodeHTTP[T any](body []byte) (T, error) {
	var v T
	if err := checkSize(body); err != nil {
		return v, err
	}
	t := bytes.TrimSpace(body)
	if len(t) == 0 || (t[0] != '{' && t[0] != '[') {
		return v, fmt.Errorf("%w: body is not a JSON object or array", ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(t))
	if err := dec.Decode(&v); err != nil {
		return v, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if dec.More() || dec.InputOffset() != int64(len(t)) {
		return v, fmt.Errorf("%w: data after the JSON value", ErrMalformed)
	}
	if val, ok := any(&v).(Validator); ok {
		if err := val.Validate(); err != nil {
			return v, err
		}
	}
	return v, nil
}

// SimpleBizInfos converts the full biz list of an HTTP queryAllBiz answer (BizInfo, upper
// case states, the whole state history) into the list the MQTT tunnel's base/simpleBiz
// carries: lower-case state words and the last state record.
func SimpleBizInfos(bizs []BizInfo) []SimpleBizInfo {
	out := make([]SimpleBizInfo, 0, len(bizs))
	for _, b := range bizs {
		s := SimpleBizInfo{Name: b.BizName, Version: b.BizVersion, State: strings.ToLower(b.BizState)}
		if n := len(b.BizStateRecords); n > 0 {
			r := b.BizStateRecords[n-1]
			s.LatestStateRecord = &r
		}
		out = append(out, s)
	}
	return out
}
