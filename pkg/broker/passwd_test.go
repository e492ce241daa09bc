package broker

import (
	"crypto/sha512"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// mosquittoLine was written by mosquitto_passwd 2.0.11 for password "s3cret".
const mosquittoLine = "base1:$7$101$QPdbv8tYNNlrqrAT$zobMruNlSu+zS6QX7XzpkUKi8Na/c0G44aYBO7ZGR+GpmI6dl7ms81eo78M21slvsABEqNpAslxAx2xxq9VaYw=="

// sha512Line is the older $6$ format: base64(SHA-512(password + salt)).
func sha512Line(user, password string) string {
	salt := []byte("0123456789ab")
	sum := sha512.Sum512(append([]byte(password), salt...))
	return user + ":$6$" + base64.StdEncoding.EncodeToString(salt) + "$" + base64.StdEncoding.EncodeToString(sum[:])
}

func TestParsePasswordFile(t *testing.T) {
	users, err := parsePasswordFile([]byte("# users\n\n" + mosquittoLine + "\n" + sha512Line("base2", "other") + "\n"))
	require.NoError(t, err)
	require.Len(t, users, 2)
	require.True(t, users["base1"].matches([]byte("s3cret")))
	require.False(t, users["base1"].matches([]byte("s3cret ")))
	require.False(t, users["base1"].matches(nil))
	require.True(t, users["base2"].matches([]byte("other")))
	require.False(t, users["base2"].matches([]byte("s3cret")))

	for name, text := range map[string]string{
		"plain text":      "base1:s3cret",
		"no colon":        "base1",
		"empty user":      ":$6$YQ==$YQ==",
		"short digest":    "base1:$6$YQ==$YQ==",
		"bad iterations":  "base1:$7$0$YQ==$" + base64.StdEncoding.EncodeToString(make([]byte, 64)),
		"huge iterations": "base1:$7$100000000$YQ==$" + base64.StdEncoding.EncodeToString(make([]byte, 64)),
		"bad base64":      "base1:$6$!!$" + base64.StdEncoding.EncodeToString(make([]byte, 64)),
		"duplicate":       mosquittoLine + "\n" + mosquittoLine,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parsePasswordFile([]byte(text))
			require.Error(t, err)
		})
	}
}

func TestPasswordFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	p, err := newPasswordFile(path) // missing: no users, no error
	require.NoError(t, err)
	ok, _, err := p.verify("base1", []byte("s3cret"))
	require.NoError(t, err)
	require.False(t, ok)

	require.NoError(t, os.WriteFile(path, []byte(mosquittoLine+"\n"), 0o600))
	ok, changed, err := p.verify("base1", []byte("s3cret"))
	require.NoError(t, err)
	require.True(t, changed)
	require.True(t, ok, "a user added to the file is admitted without a restart")

	// A broken update keeps the users read before and reports the problem.
	require.NoError(t, os.WriteFile(path, []byte("garbage line\n"+mosquittoLine+"\n"), 0o600))
	require.NoError(t, os.Chtimes(path, time.Now(), time.Now().Add(time.Minute)))
	ok, changed, err = p.verify("base1", []byte("s3cret"))
	require.Error(t, err)
	require.True(t, changed)
	require.True(t, ok)

	require.NoError(t, os.Remove(path))
	ok, changed, err = p.verify("base1", []byte("s3cret"))
	require.NoError(t, err)
	require.True(t, changed)
	require.False(t, ok, "a removed file has no users")
}
