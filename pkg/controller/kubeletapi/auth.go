package kubeletapi

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Bounds and cache times of authentication and authorization, as a
// kubelet's webhook defaults (2 min tokens, 5 min allowed, 30 s denied).
const (
	maxTokenBytes  = 8 << 10
	tokenTTL       = 2 * time.Minute
	allowedTTL     = 5 * time.Minute
	deniedTTL      = 30 * time.Second
	reviewTimeout  = 10 * time.Second
	maxCacheLength = 1024
)

// identity is an authenticated caller.
type identity struct {
	user   string
	uid    string
	groups []string
	extra  map[string]authorizationv1.ExtraValue
}

// key identifies the identity in the authorization cache.
func (id identity) key() string {
	return id.user + "\x00" + id.uid + "\x00" + strings.Join(id.groups, "\x00")
}

var (
	errUnauthenticated = errors.New("unauthorized: present the API server's kubelet client certificate or a bearer token")
	errForbidden       = errors.New("forbidden: the caller may not use the kubelet API (nodes/proxy)")
)

// authenticator authenticates callers by client certificate (the TLS layer
// verified it) or bearer token (TokenReview), and authorizes them with a
// SubjectAccessReview on nodes/proxy. Results are cached for a while, in
// bounded caches.
type authenticator struct {
	client      kubernetes.Interface
	clientCerts bool
	metrics     *metrics
	now         func() time.Time

	tokens  ttlCache[identity]
	allowed ttlCache[bool]
}

func newAuthenticator(client kubernetes.Interface, clientCerts bool, m *metrics) *authenticator {
	return &authenticator{client: client, clientCerts: clientCerts, metrics: m, now: time.Now}
}

// wrap refuses requests that are not authenticated (401) and authorized (403).
func (a *authenticator) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		id, err := a.authenticate(ctx, r)
		if err != nil {
			a.metrics.refused.WithLabelValues("unauthenticated").Inc()
			log.G(ctx).WithField("remote", r.RemoteAddr).WithError(err).Info("kubelet API request refused: not authenticated")
			http.Error(w, errUnauthenticated.Error(), http.StatusUnauthorized)
			return
		}
		ok, err := a.authorize(ctx, id, verb(r.Method))
		if err != nil {
			a.metrics.refused.WithLabelValues("authorization_error").Inc()
			log.G(ctx).WithField("user", id.user).WithError(err).Warn("kubelet API request refused: cannot authorize")
			http.Error(w, "cannot authorize the request", http.StatusInternalServerError)
			return
		}
		if !ok {
			a.metrics.refused.WithLabelValues("forbidden").Inc()
			log.G(ctx).WithField("user", id.user).WithField("path", r.URL.Path).Info("kubelet API request refused: forbidden")
			http.Error(w, errForbidden.Error(), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r.WithContext(log.WithLogger(ctx, log.G(ctx).WithField("user", id.user))))
	})
}

// authenticate returns the caller's identity.
func (a *authenticator) authenticate(ctx context.Context, r *http.Request) (identity, error) {
	if a.clientCerts {
		// The TLS layer required and verified the certificate.
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
			return identity{}, errors.New("no verified client certificate")
		}
		leaf := r.TLS.VerifiedChains[0][0]
		if leaf.Subject.CommonName == "" {
			return identity{}, errors.New("client certificate without a common name")
		}
		return identity{user: leaf.Subject.CommonName, groups: slices.Clone(leaf.Subject.Organization)}, nil
	}
	h := r.Header.Get("Authorization")
	token, found := strings.CutPrefix(h, "Bearer ")
	token = strings.TrimSpace(token)
	if !found || token == "" {
		return identity{}, errors.New("no bearer token")
	}
	if len(token) > maxTokenBytes {
		return identity{}, errors.New("bearer token too long")
	}
	sum := sha256.Sum256([]byte(token))
	key := string(sum[:])
	if id, ok := a.tokens.get(key, a.now()); ok {
		if id.user == "" {
			return identity{}, errors.New("token rejected (cached)")
		}
		return id, nil
	}
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	review, err := a.client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token},
	}, metav1.CreateOptions{})
	if err != nil {
		return identity{}, err
	}
	if !review.Status.Authenticated || review.Status.User.Username == "" {
		a.tokens.put(key, identity{}, a.now().Add(deniedTTL))
		return identity{}, errors.New("token rejected by the TokenReview")
	}
	u := review.Status.User
	id := identity{user: u.Username, uid: u.UID, groups: u.Groups}
	if len(u.Extra) > 0 {
		id.extra = map[string]authorizationv1.ExtraValue{}
		for k, v := range u.Extra {
			id.extra[k] = authorizationv1.ExtraValue(v)
		}
	}
	a.tokens.put(key, id, a.now().Add(tokenTTL))
	return id, nil
}

// authorize asks the API server whether id may use nodes/proxy, the
// permission a kubelet checks for its logs, exec and port-forward.
func (a *authenticator) authorize(ctx context.Context, id identity, verb string) (bool, error) {
	key := id.key() + "\x00" + verb
	if ok, cached := a.allowed.get(key, a.now()); cached {
		return ok, nil
	}
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	sar, err := a.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   id.user,
			UID:    id.uid,
			Groups: id.groups,
			Extra:  id.extra,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb:        verb,
				Resource:    "nodes",
				Subresource: "proxy",
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	ttl := deniedTTL
	if sar.Status.Allowed {
		ttl = allowedTTL
	}
	a.allowed.put(key, sar.Status.Allowed, a.now().Add(ttl))
	return sar.Status.Allowed, nil
}

// verb maps an HTTP method to the API verb a kubelet authorizes it as.
func verb(method string) string {
	switch method {
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	default:
		return "get"
	}
}

// ttlCache is a small map of entries that expire, emptied when full.
type ttlCache[V any] struct {
	mu      sync.Mutex
	entries map[string]ttlEntry[V]
}

type ttlEntry[V any] struct {
	value   V
	expires time.Time
}

func (c *ttlCache[V]) get(key string, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !now.Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.value, true
}

func (c *ttlCache[V]) put(key string, v V, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= maxCacheLength {
		c.entries = map[string]ttlEntry[V]{}
	}
	c.entries[key] = ttlEntry[V]{value: v, expires: expires}
}
