package broker

import (
	"bufio"
	"errors"
	"fmt"
	"strings"
)

// ACL is a topic access list in the format of Mosquitto's acl_file, so one
// file (or one generated text) means the same on both brokers:
//
//	# comment
//	topic [read|write|readwrite] <filter>    rule for the user of the last "user" line
//	user <name>                              following topic lines are for <name>
//	pattern [read|write|readwrite] <filter>  rule for every client; %u is the user
//	                                         name, %c the client id
//
// topic lines before the first user line apply to anonymous clients. The
// access defaults to readwrite. Everything no rule grants is denied, as in
// Mosquitto once an acl_file is set. "deny" rules are not supported.
type ACL struct {
	rules []aclRule
}

// aclRule is one topic or pattern line.
type aclRule struct {
	user    string // topic rules: the user ("" = anonymous clients)
	pattern bool   // pattern rules apply to every client, with %u and %c substituted
	read    bool
	write   bool
	filter  string
}

// ParseACL parses an ACL in Mosquitto's acl_file format and reports every
// malformed line.
func ParseACL(text string) (*ACL, error) {
	a := &ACL{}
	var errs []error
	user := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		switch fields[0] {
		case "user":
			if len(fields) != 2 {
				errs = append(errs, fmt.Errorf("line %d: want \"user <name>\"", n))
				continue
			}
			user = fields[1]
		case "topic", "pattern":
			r := aclRule{user: user, pattern: fields[0] == "pattern", read: true, write: true}
			var filter []string
			switch {
			case len(fields) == 2:
				filter = fields[1:]
			case len(fields) == 3:
				switch fields[1] {
				case "read":
					r.write = false
				case "write":
					r.read = false
				case "readwrite":
				default:
					errs = append(errs, fmt.Errorf("line %d: access %q is not read, write or readwrite", n, fields[1]))
					continue
				}
				filter = fields[2:]
			default:
				errs = append(errs, fmt.Errorf("line %d: want \"%s [read|write|readwrite] <topic>\"", n, fields[0]))
				continue
			}
			r.filter = filter[0]
			if err := validFilter(r.filter); err != nil {
				errs = append(errs, fmt.Errorf("line %d: %w", n, err))
				continue
			}
			a.rules = append(a.rules, r)
		default:
			errs = append(errs, fmt.Errorf("line %d: unknown keyword %q", n, fields[0]))
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("parse acl: %w", err)
	}
	return a, nil
}

// validFilter checks that '#' is only ever a whole last level and '+' a whole level.
func validFilter(f string) error {
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return fmt.Errorf("topic %q: '#' must be the whole last level", f)
		}
		if strings.Contains(l, "+") && l != "+" {
			return fmt.Errorf("topic %q: '+' must be a whole level", f)
		}
	}
	return nil
}

// Allowed reports whether the client with user name username ("" when
// anonymous) and client id clientID may publish to topic (write) or
// subscribe to or receive from it (read). For a subscription, topic is the
// filter, and it is allowed only if a single rule covers every topic the
// filter matches.
func (a *ACL) Allowed(username, clientID, topic string, write bool) bool {
	for _, r := range a.rules {
		if write && !r.write || !write && !r.read {
			continue
		}
		filter := r.filter
		if r.pattern {
			var ok bool
			if filter, ok = substitute(filter, username, clientID); !ok {
				continue
			}
		} else if r.user != username {
			continue
		}
		if covers(filter, topic) {
			return true
		}
	}
	return false
}

// substitute fills %u and %c into a pattern. A pattern naming an empty,
// or wildcard- or separator-bearing user name or client id grants nothing,
// so a client cannot widen its rights by its choice of name.
func substitute(pattern, username, clientID string) (string, bool) {
	for _, v := range []struct{ key, value string }{{"%u", username}, {"%c", clientID}} {
		if !strings.Contains(pattern, v.key) {
			continue
		}
		if v.value == "" || strings.ContainsAny(v.value, "/+#") {
			return "", false
		}
		pattern = strings.ReplaceAll(pattern, v.key, v.value)
	}
	return pattern, true
}

// covers reports whether every topic matched by filter (a topic name or a
// subscription filter) is matched by the rule filter. Topics starting with
// '$' are matched by no wildcard in the first level, as in MQTT.
func covers(rule, filter string) bool {
	r, f := strings.Split(rule, "/"), strings.Split(filter, "/")
	if strings.HasPrefix(f[0], "$") && (r[0] == "+" || r[0] == "#") {
		return false
	}
	for i, level := range r {
		if level == "#" {
			return true // also matches the parent level itself
		}
		if i >= len(f) || f[i] == "#" {
			return false
		}
		if level != "+" && level != f[i] {
			return false // includes f[i] == "+" against a literal level
		}
	}
	return len(f) == len(r)
}
