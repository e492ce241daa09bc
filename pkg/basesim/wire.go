package basesim

import (
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// The reply types below reproduce what the Java base's fastjson writes where pkg/protocol's
// types keep only what a controller reads: protocol.BizInfo drops most of SOFAArk's
// BizModel, and protocol.ClientResponse cannot tell an absent elapsedSpace (plain
// ClientResponse) from a zero one (arklet's InstallBizClientResponse, a primitive long).
// Fields are declared in fastjson's order (alphabetical) so payloads read like the vectors.

// bizModelJSON is SOFAArk's BizModel as it appears in the bizInfos of a successful install
// (docs/protocol.md, "Install").
type bizModelJSON struct {
	Attributes                    map[string]string      `json:"attributes"`
	BizName                       string                 `json:"bizName"`
	BizState                      protocol.BizState      `json:"bizState"`
	BizStateRecords               []protocol.StateRecord `json:"bizStateRecords"`
	BizTempWorkDir                string                 `json:"bizTempWorkDir"`
	BizURL                        string                 `json:"bizUrl"`
	BizVersion                    string                 `json:"bizVersion"`
	ClassPath                     []string               `json:"classPath"`
	DeclaredMode                  bool                   `json:"declaredMode"`
	DenyImportClasses             []string               `json:"denyImportClasses"`
	DenyImportPackageNodes        []string               `json:"denyImportPackageNodes"`
	DenyImportPackageStems        []string               `json:"denyImportPackageStems"`
	DenyImportPackages            []string               `json:"denyImportPackages"`
	DenyImportResources           []string               `json:"denyImportResources"`
	DenyPrefixImportResourceStems []string               `json:"denyPrefixImportResourceStems"`
	DenySuffixImportResourceStems []string               `json:"denySuffixImportResourceStems"`
	Identity                      string                 `json:"identity"`
	InjectExportPackages          []string               `json:"injectExportPackages"`
	InjectPluginDependencies      []string               `json:"injectPluginDependencies"`
	MainClass                     string                 `json:"mainClass"`
	Priority                      int                    `json:"priority"`
	WebContextPath                string                 `json:"webContextPath"`
}

// clientResponse is SOFAArk's ClientResponse; ElapsedSpace is set only for arklet's
// InstallBizClientResponse (single installs), where the Java field is a primitive.
type clientResponse struct {
	BizInfos     []bizModelJSON `json:"bizInfos,omitempty"`
	Code         string         `json:"code"`
	ElapsedSpace *int64         `json:"elapsedSpace,omitempty"`
	Message      string         `json:"message,omitempty"`
}

// bizOperationJSON is the data of base/bizOperation: arklet's HashMap with the command,
// the echoed name and version, and the command's Output.
type bizOperationJSON struct {
	BizName    string                          `json:"bizName,omitempty"`
	Response   protocol.Output[clientResponse] `json:"response"`
	Command    string                          `json:"command"`
	BizVersion string                          `json:"bizVersion,omitempty"`
}

// batchInstallResponseJSON is arklet's BatchInstallResponse; unlike
// protocol.BatchInstallResponse it keeps an empty bizUrlToResponse and a zero elapsedSpace.
type batchInstallResponseJSON struct {
	BizURLToResponse map[string]clientResponse `json:"bizUrlToResponse"`
	Code             string                    `json:"code"`
	ElapsedSpace     int64                     `json:"elapsedSpace"`
	Message          string                    `json:"message"`
}

// batchResultJSON is the data of base/batchInstallBizResponse. T is
// batchInstallResponseJSON for a batch that ran, clientResponse for one that threw or
// conflicted.
type batchResultJSON[T any] struct {
	Response protocol.Output[T] `json:"response"`
	Command  string             `json:"command"`
}

// Fixed texts of the Java base (docs/protocol.md, "Batch install result", "Install" and
// "Uninstall").
const (
	msgInstallNotSuccess   = "install biz not success!"
	msgUninstallNotSuccess = "uninstall biz not success!"
	msgBatchSuccess        = "batch install success"
	msgBatchFailed         = "batch install failed"
	msgMasterUninstall     = "Master biz must not be uninstalled."
	msgStartDeactivated    = "start but is deactivated"
	// batchLockKey is the per-biz lock key of a batch: its input has no name or version.
	batchLockKey = "null:null"
)

// Java exception classes named in simulated failures.
const (
	classValidation     = "com.alipay.sofa.koupleless.arklet.core.common.exception.CommandValidationException"
	classArkletRuntime  = "com.alipay.sofa.koupleless.arklet.core.common.exception.ArkletRuntimeException"
	classFileNotFound   = "java.io.FileNotFoundException"
	classArkRuntime     = "com.alipay.sofa.ark.exception.ArkRuntimeException"
	javaTimeLayout      = "15:04:05,000"
	workDirTimeLayout   = "20060102150405.000"
	defaultBizPriority  = 100
	handlerFramesSuffix = "\n\t... 10 more\n"
)

// handlerFrames are the arklet frames above a command handler in the base's stack traces.
var handlerFrames = []string{
	"com.alipay.sofa.koupleless.arklet.core.command.CommandServiceImpl.process(CommandServiceImpl.java:180)",
	"com.alipay.sofa.koupleless.arklet.tunnel.mqtt.paho.MqttMessageHandler.handleBizOperation(MqttMessageHandler.java:221)",
	"com.alipay.sofa.koupleless.arklet.tunnel.mqtt.paho.MqttMessageHandler.handleCommand(MqttMessageHandler.java:200)",
	"com.alipay.sofa.koupleless.arklet.tunnel.mqtt.paho.PahoMqttClient$PahoMqttCallback.lambda$messageArrived$0(PahoMqttClient.java:172)",
	"java.util.concurrent.Executors$RunnableAdapter.call(Executors.java:511)",
	"java.util.concurrent.FutureTask.run(FutureTask.java:266)",
	"java.util.concurrent.ThreadPoolExecutor.runWorker(ThreadPoolExecutor.java:1149)",
	"java.util.concurrent.ThreadPoolExecutor$Worker.run(ThreadPoolExecutor.java:624)",
	"java.lang.Thread.run(Thread.java:750)",
}

// javaError is a simulated Java exception: Class and Message as Throwable.toString prints
// them, Cause optional, Frame the innermost frame of the throwing code.
type javaError struct {
	Class   string
	Message string
	Frame   string
	Cause   *javaError
}

// String returns Throwable.toString: "<class>: <message>".
func (e javaError) String() string {
	if e.Message == "" {
		return e.Class
	}
	return e.Class + ": " + e.Message
}

// stackTrace renders e like Throwable.printStackTrace, frames invented but plausible.
func (e javaError) stackTrace() string {
	var sb strings.Builder
	sb.WriteString(e.String())
	sb.WriteString("\n\tat ")
	sb.WriteString(e.Frame)
	for _, f := range handlerFrames {
		sb.WriteString("\n\tat ")
		sb.WriteString(f)
	}
	if e.Cause != nil {
		sb.WriteString("\nCaused by: ")
		sb.WriteString(e.Cause.String())
		sb.WriteString("\n\tat ")
		sb.WriteString(e.Cause.Frame)
		sb.WriteString(handlerFramesSuffix)
		return sb.String()
	}
	sb.WriteString("\n")
	return sb.String()
}

// validationError is what arklet throws when a command's input is invalid; the Output
// message is the bare text.
func validationError(handler, msg string) javaError {
	return javaError{
		Class:   classValidation,
		Message: msg,
		Frame:   "com.alipay.sofa.koupleless.arklet.core.command.builtin.handler." + handler + ".validate(" + handler + ".java:103)",
	}
}

// handlerError wraps cause in ArkletRuntimeException, as InstallBizHandler and
// UninstallBizHandler do with anything their operation throws: the Output message is
// then cause.toString().
func handlerError(handler string, cause javaError) javaError {
	return javaError{
		Class:   classArkletRuntime,
		Message: cause.String(),
		Frame:   "com.alipay.sofa.koupleless.arklet.core.command.builtin.handler." + handler + ".handle(" + handler + ".java:77)",
		Cause:   &cause,
	}
}

// downloadError is the exception of an unreachable biz URL.
func downloadError(url string) javaError {
	return javaError{
		Class:   classFileNotFound,
		Message: url,
		Frame:   "sun.net.www.protocol.http.HttpURLConnection.getInputStream0(HttpURLConnection.java:1898)",
	}
}

// startError is the exception of a biz whose start failed for a simulated reason.
func startError(msg string) javaError {
	return javaError{
		Class:   classArkRuntime,
		Message: msg,
		Frame:   "com.alipay.sofa.ark.container.model.BizModel.start(BizModel.java:392)",
	}
}

// exceptionOutput is the Output the tunnel builds around a thrown exception
// (docs/protocol.md, "Install", outcome "exception"): code FAILED, e.getMessage() (the bare text of a validation error,
// cause.toString() of a wrapped one), and a ClientResponse holding the stack trace.
func exceptionOutput(e javaError) protocol.Output[clientResponse] {
	return protocol.Output[clientResponse]{
		Code:    protocol.CodeFailed,
		Message: e.Message,
		Data:    clientResponse{Code: protocol.CodeFailed, Message: e.stackTrace()},
	}
}

// conflictOutput is the answer to a command refused by the per-biz lock (docs/protocol.md,
// "Per-biz command lock").
func conflictOutput(key, command, running string) protocol.Output[clientResponse] {
	return protocol.Output[clientResponse]{
		Code: protocol.CodeFailed,
		Message: protocol.CodeFailed + ":" + key + " " + command +
			" conflict, exist unfinished command(" + running + ") for this biz",
	}
}

// repeatMessage is SOFAArk's REPEAT_BIZ message.
func repeatMessage(key string) string {
	return "Biz: " + key + " has been installed or registered."
}

// installSuccessMessage is SOFAArk's install success message.
func installSuccessMessage(key string, cost time.Duration, startedAt time.Time) string {
	return fmt.Sprintf("Install Biz: %s success, cost: %d ms, started at: %s",
		key, cost.Milliseconds(), startedAt.Format(javaTimeLayout))
}

// javaIdentifier turns a biz name into a Java package segment for a plausible main class.
func javaIdentifier(name string) string {
	var sb strings.Builder
	for _, r := range strings.ToLower(name) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			sb.WriteRune(r)
		}
	}
	s := sb.String()
	if s == "" || unicode.IsDigit(rune(s[0])) {
		s = "biz" + s
	}
	return s
}
