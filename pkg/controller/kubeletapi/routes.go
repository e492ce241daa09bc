package kubeletapi

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
)

// notSupported is the answer to exec, attach and port-forward.
const notSupported = "not supported for module pods: a module runs inside its base's JVM, which has no container of its own to exec into, attach to or forward ports from; use the base pod instead\n"

// routes returns the server's handler: authentication and authorization
// first, then virtual-kubelet's kubelet API handlers for the container logs,
// and a plain error for the streaming calls module pods cannot serve (before
// any protocol upgrade, so the caller does not wait for streams).
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	unsupported := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.G(r.Context()).WithField("path", r.URL.Path).Debug("kubelet API call not supported for module pods")
		http.Error(w, notSupported, http.StatusBadRequest)
	})
	for _, prefix := range []string{"/exec/", "/attach/", "/portForward/", "/run/"} {
		mux.Handle(prefix, s.counted("unsupported", unsupported))
	}
	pods := vkapi.PodHandler(vkapi.PodHandlerConfig{GetContainerLogs: s.containerLogs}, false)
	mux.Handle("/containerLogs/", s.counted("containerLogs", s.limitStreams(pods)))
	mux.Handle("/", s.counted("other", http.HandlerFunc(vkapi.NotFound)))
	return s.auth.wrap(mux)
}

// limitStreams answers 429 once MaxStreams log streams are being served.
func (s *Server) limitStreams(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case s.streams <- struct{}{}:
			defer func() { <-s.streams }()
			next.ServeHTTP(w, r)
		default:
			s.metrics.refused.WithLabelValues("too_many_streams").Inc()
			log.G(r.Context()).WithField("limit", s.cfg.MaxStreams).Warn("kubelet API: too many log streams; request refused")
			w.Header().Set("Retry-After", "5")
			http.Error(w, "too many log streams at once; try again", http.StatusTooManyRequests)
		}
	})
}

// counted counts the requests of a route by status code.
func (s *Server) counted(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
		if !strings.HasPrefix(strconv.Itoa(rec.code), "2") {
			log.G(r.Context()).WithField("path", r.URL.Path).WithField("code", rec.code).Debug("kubelet API request failed")
		}
	})
}

// statusRecorder remembers the status code and keeps flushing available.
type statusRecorder struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

// Flush lets virtual-kubelet flush each chunk of a followed log.
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
