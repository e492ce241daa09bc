package mqtt

import (
	"fmt"
	"strings"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/virtual-kubelet/virtual-kubelet/log"
)

// paho reports its internal problems through package-level loggers that discard by
// default. They are routed to virtual-kubelet's default logger (log.L, which main sets)
// in init because they are plain package variables that paho's goroutines read without
// synchronization: setting them once before any client exists is the only race-free time.
// ERROR lines are mostly transient connection trouble that the tunnel also reports itself,
// so they are logged at warning level; CRITICAL lines at error level. DEBUG and WARN stay
// discarded: they are per-packet noise.
func init() {
	paho.ERROR = pahoLogger{level: "warn"}
	paho.CRITICAL = pahoLogger{level: "error"}
}

// pahoLogger adapts paho.Logger to log.L with a constant message; paho's text goes into
// the "detail" field.
type pahoLogger struct {
	level string
}

// Println implements paho.Logger.
func (l pahoLogger) Println(v ...any) { l.log(strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }

// Printf implements paho.Logger.
func (l pahoLogger) Printf(format string, v ...any) { l.log(fmt.Sprintf(format, v...)) }

func (l pahoLogger) log(detail string) {
	e := log.L.WithField("component", "paho").WithField("detail", detail)
	if l.level == "error" {
		e.Error("mqtt client reported an error")
		return
	}
	e.Warn("mqtt client reported a problem")
}
