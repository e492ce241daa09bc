package protocol_test

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// FuzzDecode feeds arbitrary payloads to every base→controller decoder and the helpers a
// controller calls on the result. It asserts only that nothing panics, and that whatever
// decodes can be encoded and decoded again (what a simulated base does).
func FuzzDecode(f *testing.F) {
	entries, err := os.ReadDir("testdata")
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue // testdata/fuzz holds the committed corpus, which go test adds itself
		}
		b, err := os.ReadFile("testdata/" + e.Name())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"data":[["a","1","3"]],"publishTimestamp":1}`))
	f.Add([]byte(`{"data":{"command":"batchInstallBiz","response":{"code":"FAILED","data":{"bizUrlToResponse":{"u":{}}}}},"publishTimestamp":1}`))

	f.Fuzz(func(t *testing.T, payload []byte) {
		for _, suffix := range allBaseSuffixes {
			data, published, err := decodeFor(suffix, payload)
			if err != nil {
				if protocol.Reason(err) == "other" {
					t.Fatalf("%s: error without sentinel: %v", suffix, err)
				}
				continue
			}
			use(data)
			b, err := protocol.Encode(data, published)
			if errors.Is(err, protocol.ErrTooLarge) {
				continue
			}
			if err != nil {
				t.Fatalf("%s: re-encode: %v", suffix, err)
			}
			if _, _, err := decodeFor(suffix, b); err != nil {
				t.Fatalf("%s: decode of re-encoded %s: %v", suffix, b, err)
			}
		}
		_, _ = protocol.DecodeCommand[protocol.BizModel](payload)
		_, _ = protocol.DecodeCommand[[]protocol.BizModel](payload)
	})
}

// use calls the helpers a controller calls on decoded data.
func use(data any) {
	switch d := data.(type) {
	case protocol.BaseStatus:
		_ = d.Activated()
	case []protocol.SimpleBizInfo:
		for _, b := range d {
			_, _, _ = b.BizState(), b.Key(), b.ChangedAt()
		}
	case protocol.HealthReply:
		_, _ = d.Data.HealthData.JVM.MetaspaceAllocatable()
		_ = d.Data.HealthData.MasterBizInfo.State()
	case protocol.LegacyBizReply:
		for _, b := range d.Data {
			_, _ = b.LatestStateRecord()
		}
	case protocol.BizOperation:
		_, _, _ = d.Outcome(), d.ErrorMessage(), d.InstalledState()
	case protocol.BatchInstallResult:
		_, _, _ = d.Outcome(), d.ErrorMessage(), d.Installed()
	}
}

// FuzzParseTopic checks that a topic that parses prints back unchanged, names a valid base and
// gives a node name that maps back to it.
func FuzzParseTopic(f *testing.F) {
	f.Add("koupleless_dev/10.244.0.17/base/heart")
	f.Add("koupleless_default/10.0.0.1/installBiz")
	f.Add("koupleless_dev/a/base/baseline")
	f.Fuzz(func(t *testing.T, topic string) {
		p, err := protocol.ParseTopic(topic)
		if err != nil {
			return
		}
		if p.String() != topic {
			t.Fatalf("String() = %q, want %q", p.String(), topic)
		}
		if err := protocol.ValidateBaseID(p.BaseID); err != nil {
			t.Fatalf("parsed invalid base id: %v", err)
		}
		if protocol.ValidateEnv(p.Env) != nil {
			return // ParseTopic does not check the env: the subscription filter fixes it.
		}
		env, id, ok := protocol.BaseIDFromNodeName(protocol.NodeName(p.Env, p.BaseID))
		if !ok || id != p.BaseID || env != protocol.NormalizeEnv(p.Env) {
			t.Fatalf("node name round trip of %+v: %q %q %v", p, env, id, ok)
		}
	})
}

// FuzzDecodeCommand feeds arbitrary bodies to the decoders of every controller→base command,
// as a (simulated) base runs them. Whatever decodes must encode again (EncodeCommand) and
// decode to the same value, so a base and the controller agree on every body either accepts.
func FuzzDecodeCommand(f *testing.F) {
	for _, name := range []string{"install-biz.json", "uninstall-biz.json", "baseline.json",
		"health-request.json", "query-all-biz-request.json"} {
		f.Add(readVector(f, name))
	}
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		roundTrip(t, body, protocol.DecodeCommand[protocol.BizModel])
		roundTrip(t, body, protocol.DecodeCommand[[]protocol.BizModel])
		roundTrip(t, body, protocol.DecodeCommand[protocol.EmptyRequest])
	})
}

// roundTrip checks that a body decode accepts survives EncodeCommand and decode unchanged.
func roundTrip[T any](t *testing.T, body []byte, decode func([]byte) (T, error)) {
	t.Helper()
	v, err := decode(body)
	if err != nil {
		if r := protocol.Reason(err); r != "malformed" && r != "too_large" {
			t.Fatalf("%T: error of reason %q: %v", v, r, err)
		}
		return
	}
	b, err := protocol.EncodeCommand(v)
	if errors.Is(err, protocol.ErrTooLarge) {
		return
	}
	if err != nil {
		t.Fatalf("%T: encode %#v: %v", v, v, err)
	}
	w, err := decode(b)
	if err != nil {
		t.Fatalf("%T: decode of re-encoded %s: %v", v, b, err)
	}
	if !reflect.DeepEqual(normalizeNil(v), normalizeNil(w)) {
		t.Fatalf("%T: round trip changed %#v into %#v", v, v, w)
	}
}

// normalizeNil maps a nil []BizModel to an empty one: EncodeCommand sends nil as [].
func normalizeNil(v any) any {
	if b, ok := v.([]protocol.BizModel); ok && b == nil {
		return []protocol.BizModel{}
	}
	return v
}

// FuzzNodeName checks that every env and base ID the validators accept give a node name of
// at most MaxNodeNameLength that is one DNS-1123 subdomain and maps back to them.
func FuzzNodeName(f *testing.F) {
	f.Add(vecEnv, vecBaseID)
	f.Add(protocol.DefaultEnv, "base-1.eu-west")
	f.Fuzz(func(t *testing.T, env, id string) {
		if protocol.ValidateEnv(env) != nil || protocol.ValidateBaseID(id) != nil {
			return
		}
		name := protocol.NodeName(env, id)
		if len(name) > protocol.MaxNodeNameLength {
			t.Fatalf("node name %q is %d characters", name, len(name))
		}
		for part := range strings.SplitSeq(name, ".") {
			if part == "" || strings.Trim(part, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" ||
				part[0] == '-' || part[len(part)-1] == '-' {
				t.Fatalf("node name %q: part %q is not a DNS-1123 label", name, part)
			}
		}
		gotEnv, gotID, ok := protocol.BaseIDFromNodeName(name)
		if !ok || gotID != id || gotEnv != protocol.NormalizeEnv(env) {
			t.Fatalf("BaseIDFromNodeName(%q) = %q, %q, %v", name, gotEnv, gotID, ok)
		}
	})
}
