package broker

import (
	"bufio"
	"bytes"
	"crypto/pbkdf2"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxPasswordFileSize bounds what is read from a password file: about
// 10,000 users of 200 bytes.
const maxPasswordFileSize = 2 << 20

// maxPBKDF2Iterations bounds the work one CONNECT can cost; mosquitto_passwd
// writes 101 (Mosquitto 2.0) or 1000 (2.1).
const maxPBKDF2Iterations = 100_000

// passwordHash is one user's entry of a password file.
type passwordHash struct {
	kind       int // 6: salted SHA-512, 7: PBKDF2-SHA512
	iterations int
	salt, hash []byte
}

// parsePasswordFile parses the format mosquitto_passwd writes, one
// "<user>:$6$<salt>$<hash>" or "<user>:$7$<iterations>$<salt>$<hash>" a line
// (salt and hash base64), so the same Secret can feed Mosquitto and the
// embedded broker. Blank lines and lines starting with '#' are skipped.
func parsePasswordFile(data []byte) (map[string]passwordHash, error) {
	users := map[string]passwordHash{}
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, encoded, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			errs = append(errs, fmt.Errorf("line %d: want <user>:<hash>", n))
			continue
		}
		h, err := parseHash(encoded)
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d (user %q): %w", n, user, err))
			continue
		}
		if _, dup := users[user]; dup {
			errs = append(errs, fmt.Errorf("line %d: user %q listed twice", n, user))
			continue
		}
		users[user] = h
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, err)
	}
	return users, errors.Join(errs...)
}

func parseHash(s string) (passwordHash, error) {
	parts := strings.Split(s, "$")
	var h passwordHash
	var salt, hash string
	switch {
	case len(parts) == 4 && parts[0] == "" && parts[1] == "6":
		h.kind, salt, hash = 6, parts[2], parts[3]
	case len(parts) == 5 && parts[0] == "" && parts[1] == "7":
		it, err := strconv.Atoi(parts[2])
		if err != nil || it < 1 || it > maxPBKDF2Iterations {
			return h, fmt.Errorf("iterations %q not in 1..%d", parts[2], maxPBKDF2Iterations)
		}
		h.kind, h.iterations, salt, hash = 7, it, parts[3], parts[4]
	default:
		return h, errors.New("not a mosquitto_passwd hash ($6$ or $7$); plain-text passwords are not accepted")
	}
	var err error
	if h.salt, err = base64.StdEncoding.DecodeString(salt); err != nil {
		return h, fmt.Errorf("salt: %w", err)
	}
	if h.hash, err = base64.StdEncoding.DecodeString(hash); err != nil || len(h.hash) != sha512.Size {
		return h, errors.New("hash is not a base64 SHA-512 digest")
	}
	return h, nil
}

// matches reports, in constant time for a given hash, whether password is this hash's.
func (h passwordHash) matches(password []byte) bool {
	var sum []byte
	switch h.kind {
	case 6:
		d := sha512.Sum512(append(append([]byte{}, password...), h.salt...))
		sum = d[:]
	case 7:
		var err error
		if sum, err = pbkdf2.Key(sha512.New, string(password), h.salt, h.iterations, sha512.Size); err != nil {
			return false
		}
	default:
		return false
	}
	return subtle.ConstantTimeCompare(sum, h.hash) == 1
}

// passwordFile is a password file re-read when it changes (a Kubernetes
// Secret volume is updated in place), so new bases need no restart. A
// missing file has no users; a file that does not parse keeps the users
// last read.
type passwordFile struct {
	path string

	mu      sync.Mutex
	present bool // the file existed at the last look
	modTime time.Time
	size    int64
	users   map[string]passwordHash
	loadErr error // of the last read
}

// newPasswordFile reads path once. An unreadable or malformed file is an
// error; a missing one is not (an optional Secret may not exist yet).
func newPasswordFile(path string) (*passwordFile, error) {
	p := &passwordFile{path: path}
	if _, err := p.reload(); err != nil {
		return nil, err
	}
	return p, nil
}

// reload re-reads the file if its size or modification time changed and
// reports whether it did.
func (p *passwordFile) reload() (bool, error) {
	st, err := os.Stat(p.path)
	if errors.Is(err, fs.ErrNotExist) {
		changed := p.present
		p.present, p.users, p.loadErr = false, nil, nil
		return changed, nil
	}
	if err != nil {
		return false, fmt.Errorf("password file: %w", err)
	}
	if p.present && st.ModTime().Equal(p.modTime) && st.Size() == p.size {
		return false, p.loadErr
	}
	p.present, p.modTime, p.size = true, st.ModTime(), st.Size()
	if st.Size() > maxPasswordFileSize {
		p.loadErr = fmt.Errorf("password file %s: larger than %d bytes", p.path, maxPasswordFileSize)
		return true, p.loadErr
	}
	data, err := os.ReadFile(p.path)
	if err != nil {
		p.loadErr = fmt.Errorf("password file: %w", err)
		return true, p.loadErr
	}
	users, err := parsePasswordFile(data)
	if err != nil {
		p.loadErr = fmt.Errorf("password file %s: %w", p.path, err)
		return true, p.loadErr
	}
	p.users, p.loadErr = users, nil
	return true, nil
}

// verify reports whether user and password match an entry of the file,
// re-reading it first if it changed. err is the problem of a changed file
// that could not be read (the previous users stay in force).
func (p *passwordFile) verify(user string, password []byte) (ok bool, changed bool, err error) {
	p.mu.Lock()
	changed, err = p.reload()
	h, found := p.users[user]
	p.mu.Unlock()
	if !found {
		return false, changed, err
	}
	return h.matches(password), changed, err
}

// len returns the number of users last read.
func (p *passwordFile) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.users)
}
