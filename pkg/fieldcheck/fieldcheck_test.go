package fieldcheck

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRenderNamesFieldsAndReferences(t *testing.T) {
	err := Errorf("UnreachableAfter", "%s must be shorter than {RemoveAfter} %s", time.Minute, time.Second)
	require.EqualError(t, err, "UnreachableAfter 1m0s must be shorter than RemoveAfter 1s")
	var fe *Error
	require.ErrorAs(t, err, &fe)
	flags := map[string]string{"UnreachableAfter": "--unreachable-after", "RemoveAfter": "--remove-after"}
	name := func(f string) string { return flags[f] }
	require.Equal(t, "--unreachable-after 1m0s must be shorter than --remove-after 1s", fe.Render(name, name))
	require.Equal(t, "X {lower} and Unknown stay", (&Error{Field: "X", Detail: "{lower} and {Unknown} stay"}).Render(nil, name),
		"only {Field} references are replaced; unknown ones keep their Go name")
}

func TestErrorfWrapsAndErrorsSplits(t *testing.T) {
	sentinel := errors.New("sentinel")
	err := errors.Join(Errorf("A", "x: %w", sentinel), errors.Join(Errorf("B", "y"), errors.New("plain")))
	require.ErrorIs(t, err, sentinel)
	parts := Errors(err)
	require.Len(t, parts, 3)
	require.Equal(t, "A x: sentinel", parts[0].Error())
	require.Equal(t, "plain", parts[2].Error())
	require.Nil(t, Errors(nil))
}

func TestDefaultFillsZeroOnly(t *testing.T) {
	d, n, s := time.Duration(0), 5, ""
	Default(&d, time.Second)
	Default(&n, 7)
	Default(&s, "x")
	require.Equal(t, time.Second, d)
	require.Equal(t, 5, n, "a set value stays")
	require.Equal(t, "x", s)
}

func TestFillZeroFillsUnsetFieldsOnly(t *testing.T) {
	type config struct {
		A       time.Duration
		B       int
		C       string
		Now     func() time.Time
		private int
	}
	c := config{B: 3}
	FillZero(&c, config{A: time.Second, B: 9, C: "x", private: 1})
	require.Equal(t, time.Second, c.A)
	require.Equal(t, 3, c.B, "a set field stays")
	require.Equal(t, "x", c.C)
	require.Nil(t, c.Now, "a zero default leaves the field zero")
	require.Zero(t, c.private, "unexported fields are not touched")
}

func TestPositiveAndTLSFiles(t *testing.T) {
	require.Len(t, Positive(Duration{"A", 0}, Duration{"B", -time.Second}, Duration{"C", time.Second}), 2)

	dir := t.TempDir()
	cert := filepath.Join(dir, "cert.pem")
	require.NoError(t, os.WriteFile(cert, nil, 0o600))
	missing := filepath.Join(dir, "missing.pem")
	require.Empty(t, TLSFiles(File{"Cert", ""}, File{"Key", ""}, File{"CA", ""}, true), "nothing set is fine")
	errs := TLSFiles(File{"Cert", ""}, File{"Key", cert}, File{"CA", missing}, true)
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	joined := strings.Join(msgs, "\n")
	require.Contains(t, joined, "Cert and Key go together")
	require.Contains(t, joined, "CA needs TLS: set Cert")
	require.Contains(t, joined, "CA "+missing+": no such file or directory")
	require.Len(t, TLSFiles(File{"Cert", ""}, File{"Key", ""}, File{"CA", cert}, false), 0, "a client CA alone is fine when the endpoint makes its own certificate")
}
