// Package fieldcheck carries the defaulting and the validation errors of
// component Configs.
// Each error names the Config field at fault by its Go name, so that the
// command line (pkg/config) can show it as the flag and environment
// variable that set it, while a program building a Config directly reads
// the field name. It uses the standard library only.
package fieldcheck

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"time"
)

// Error is a problem with one field of a Config.
type Error struct {
	// Field is the Go name of the field, dotted for a nested struct
	// ("RemoveAfter", "TLS.CAFile").
	Field string
	// Detail says what is wrong. It may name other fields as {Field}.
	Detail string
	// cause is the error Detail wraps (%w), if any.
	cause error
}

// Unwrap returns the error the detail wraps, so errors.Is sees through it.
func (e *Error) Unwrap() error { return e.cause }

// Error renders the error with Go field names.
func (e *Error) Error() string { return e.Render(nil, nil) }

// refPattern matches a {Field} reference in a Detail.
var refPattern = regexp.MustCompile(`\{[A-Z][A-Za-z0-9]*(\.[A-Z][A-Za-z0-9]*)*\}`)

// Render renders the error, naming the field at fault by subject(field)
// and the fields the detail refers to by ref(field); a nil function, or
// one that returns "", keeps the Go name.
func (e *Error) Render(subject, ref func(field string) string) string {
	detail := refPattern.ReplaceAllStringFunc(e.Detail, func(m string) string { return show(ref, m[1:len(m)-1]) })
	return show(subject, e.Field) + " " + detail
}

// show names field by name, or by its Go name.
func show(name func(string) string, field string) string {
	if name != nil {
		if n := name(field); n != "" {
			return n
		}
	}
	return field
}

// Errorf returns an *Error for field with a formatted detail; a %w verb
// wraps its error as fmt.Errorf does.
func Errorf(field, format string, args ...any) error {
	w := fmt.Errorf(format, args...)
	return &Error{Field: field, Detail: w.Error(), cause: errors.Unwrap(w)}
}

// Errors splits err, as errors.Join builds it, into its parts.
func Errors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Errors(e)...)
		}
		return out
	}
	return []error{err}
}

// Duration names a duration field and its value.
type Duration struct {
	Field string
	Value time.Duration
}

// Positive returns an error for each duration that is not positive.
func Positive(ds ...Duration) []error {
	var errs []error
	for _, d := range ds {
		if d.Value <= 0 {
			errs = append(errs, Errorf(d.Field, "%s must be positive", d.Value))
		}
	}
	return errs
}

// File names a field holding a file path and the path ("" when unset).
type File struct {
	Field string
	Path  string
}

// TLSFiles checks the PEM files of one TLS endpoint: certificate and key
// are set together, every file set exists, and, when caNeedsCert, a CA
// (of the peers' certificates) comes with the endpoint's own certificate.
func TLSFiles(cert, key, ca File, caNeedsCert bool) []error {
	var errs []error
	if (cert.Path == "") != (key.Path == "") {
		errs = append(errs, Errorf(cert.Field, "and {%s} go together", key.Field))
	}
	if caNeedsCert && ca.Path != "" && cert.Path == "" {
		errs = append(errs, Errorf(ca.Field, "needs TLS: set {%s}", cert.Field))
	}
	for _, f := range []File{cert, key, ca} {
		if f.Path == "" {
			continue
		}
		if _, err := os.Stat(f.Path); err != nil {
			errs = append(errs, Errorf(f.Field, "%v", unwrapPath(err)))
		}
	}
	return errs
}

// unwrapPath keeps an os.Stat error's path and cause ("stat /x: no such
// file or directory" reads as "/x: no such file or directory").
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// Default sets *v to def when *v is the zero value.
func Default[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// FillZero sets every field of the struct *c that is zero to the same
// field of defaults: how a Config's constructor fills what its caller left
// unset from its DefaultConfig, so each default is written once. C must be
// a struct type.
func FillZero[C any](c *C, defaults C) {
	v, d := reflect.ValueOf(c).Elem(), reflect.ValueOf(defaults)
	for i := range v.NumField() {
		if f := v.Field(i); f.CanSet() && f.IsZero() {
			f.Set(d.Field(i))
		}
	}
}
