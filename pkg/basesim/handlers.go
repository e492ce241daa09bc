package basesim

import (
	"strings"
	"time"

	"github.com/moduleops/module-controller/pkg/protocol"
)

// Command handlers. Each runs in the goroutine paho started for its message, blocks for
// the simulated install or uninstall time and publishes one reply, or none if the process
// died meanwhile (a restarted JVM forgets what it was doing).

const (
	installHandler   = "InstallBizHandler"
	uninstallHandler = "UninstallBizHandler"
	batchHandler     = "BatchInstallBizHandler"

	// batchBaseSpace is the Metaspace a batch takes besides its bizs (reading manifests).
	batchBaseSpace int64 = 512 << 10
	// repeatSpace is the Metaspace an install answered REPEAT_BIZ takes (reading the jar).
	repeatSpace int64 = 1 << 20
)

func (p *process) handleInstall(m protocol.BizModel) {
	out, ok := p.install(m)
	if !ok {
		return
	}
	p.reply(protocol.SuffixBizOperation, bizOperationJSON{
		BizName:    m.BizName,
		BizVersion: m.BizVersion,
		Command:    protocol.CommandInstallBiz,
		Response:   out,
	}, protocol.CommandInstallBiz)
}

func (p *process) handleUninstall(m protocol.BizModel) {
	out, ok := p.uninstall(m)
	if !ok {
		return
	}
	p.reply(protocol.SuffixBizOperation, bizOperationJSON{
		BizName:    m.BizName,
		BizVersion: m.BizVersion,
		Command:    protocol.CommandUninstallBiz,
		Response:   out,
	}, protocol.CommandUninstallBiz)
}

func (p *process) handleBaseline(models []protocol.BizModel) {
	out, ok := p.batch(models)
	if !ok {
		return
	}
	p.reply(protocol.SuffixBatchInstallResponse, out, protocol.CommandBatchInstallBiz)
}

// validateInstall applies InstallBizHandler.validate, returning the exception's message
// or "".
func validateInstall(m protocol.BizModel) string {
	name, version := strings.TrimSpace(m.BizName), strings.TrimSpace(m.BizVersion)
	switch {
	case strings.TrimSpace(m.BizURL) == "":
		return "bizUrl should not be blank"
	case name == "" && version == "":
		// A real base downloads the jar here to read its manifest.
		return "refresh biz info from jar failed: the simulated base cannot read jar manifests, send bizName and bizVersion"
	case name == "" || version == "":
		return "bizName and bizVersion should be both blank or both not blank."
	}
	return ""
}

// install runs one installBiz (docs/protocol.md, "Install" and "A second version of an
// active biz"). ok is false if the process died.
func (p *process) install(m protocol.BizModel) (out protocol.Output[clientResponse], ok bool) {
	if msg := validateInstall(m); msg != "" {
		return exceptionOutput(validationError(installHandler, msg)), true
	}
	key := m.Key()
	if running, locked := p.reg.tryLock(key, protocol.CommandInstallBiz); !locked {
		return conflictOutput(key, protocol.CommandInstallBiz, running), true
	}
	defer p.reg.unlock(key)

	b := p.b
	begin, startedAt := time.Now(), b.cfg.Now()
	settings := b.installSettings()
	if m.InstallStrategy == protocol.StrategyUninstallThenInstall {
		// Every registered version of the name goes first, results ignored.
		for _, k := range p.reg.keysOfName(m.BizName) {
			p.reg.beginStop(k, b.cfg.Now())
			p.reg.finishStop(k, b.cfg.Now())
		}
	}
	if b.unreachable(m.BizURL) {
		if !p.sleep(settings.delay) {
			return out, false
		}
		return exceptionOutput(handlerError(installHandler, downloadError(m.BizURL))), true
	}
	if p.reg.has(key) {
		return repeatOutput(key), true
	}
	if reason := b.startFailure(m); reason != "" {
		// The biz never becomes visible: either the download failed, or its start failed
		// and SOFAArk unregistered it right away (auto uninstall when failed).
		if !p.sleep(settings.delay) {
			return out, false
		}
		return exceptionOutput(handlerError(installHandler, startError(reason))), true
	}
	if !p.reg.register(m, b.cfg.Now(), false) {
		return repeatOutput(key), true
	}
	if !p.sleep(settings.delay) {
		return out, false
	}
	info, space, registered := p.reg.start(key, settings.activation, b.cfg.Now())
	if !registered {
		return exceptionOutput(handlerError(installHandler, startError("biz "+key+" was uninstalled while starting"))), true
	}
	return protocol.Output[clientResponse]{
		Code: protocol.CodeSuccess,
		Data: clientResponse{
			BizInfos:     []bizModelJSON{info},
			Code:         protocol.CodeSuccess,
			ElapsedSpace: &space,
			Message:      installSuccessMessage(key, time.Since(begin), startedAt),
		},
	}, true
}

func repeatOutput(key string) protocol.Output[clientResponse] {
	space := repeatSpace
	return protocol.Output[clientResponse]{
		Code:    protocol.CodeFailed,
		Message: msgInstallNotSuccess,
		Data: clientResponse{
			Code:         protocol.CodeRepeatBiz,
			ElapsedSpace: &space,
			Message:      repeatMessage(key),
		},
	}
}

// uninstall runs one uninstallBiz (docs/protocol.md, "Uninstall"). ok is false if the
// process died.
func (p *process) uninstall(m protocol.BizModel) (out protocol.Output[clientResponse], ok bool) {
	switch {
	case strings.TrimSpace(m.BizName) == "":
		return exceptionOutput(validationError(uninstallHandler, "bizName should not be blank")), true
	case strings.TrimSpace(m.BizVersion) == "":
		return exceptionOutput(validationError(uninstallHandler, "bizVersion should not be blank")), true
	}
	key := m.Key()
	if running, locked := p.reg.tryLock(key, protocol.CommandUninstallBiz); !locked {
		return conflictOutput(key, protocol.CommandUninstallBiz, running), true
	}
	defer p.reg.unlock(key)

	b := p.b
	failed := func(code, msg string) protocol.Output[clientResponse] {
		return protocol.Output[clientResponse]{
			Code:    protocol.CodeFailed,
			Message: msgUninstallNotSuccess,
			Data:    clientResponse{Code: code, Message: msg},
		}
	}
	if m.BizName == b.cfg.Name {
		return failed(protocol.CodeFailed, msgMasterUninstall), true
	}
	if !p.reg.beginStop(key, b.cfg.Now()) {
		return failed(protocol.CodeNotFoundBiz, "Uninstall biz: "+key+" not found."), true
	}
	if !p.sleep(b.uninstallDelay()) {
		return out, false
	}
	p.reg.finishStop(key, b.cfg.Now())
	return protocol.Output[clientResponse]{
		Code: protocol.CodeSuccess,
		Data: clientResponse{Code: protocol.CodeSuccess, Message: "Uninstall biz: " + key + " success."},
	}, true
}

// batch runs a baseline as batchInstallBiz (docs/protocol.md, "Baseline query and
// baseline" and "Batch install result"). ok is false if the process died.
func (p *process) batch(models []protocol.BizModel) (out any, ok bool) {
	thrown := func(e javaError) batchResultJSON[clientResponse] {
		return batchResultJSON[clientResponse]{Command: protocol.CommandBatchInstallBiz, Response: exceptionOutput(e)}
	}
	for _, m := range models {
		if msg := validateInstall(m); msg != "" {
			return thrown(validationError(batchHandler, msg)), true
		}
	}
	if running, locked := p.reg.tryLock(batchLockKey, protocol.CommandBatchInstallBiz); !locked {
		return batchResultJSON[clientResponse]{
			Command:  protocol.CommandBatchInstallBiz,
			Response: conflictOutput(batchLockKey, protocol.CommandBatchInstallBiz, running),
		}, true
	}
	defer p.reg.unlock(batchLockKey)

	b := p.b
	// The real base downloads every jar first to read its priority: one unreachable jar
	// fails the whole batch before anything is installed.
	for _, m := range models {
		if b.unreachable(m.BizURL) {
			return thrown(handlerError(batchHandler, downloadError(m.BizURL))), true
		}
	}
	begin, startedAt := time.Now(), b.cfg.Now()
	settings := b.installSettings()
	results := make(map[string]clientResponse, len(models))
	var started []protocol.BizModel
	for _, m := range models {
		key := m.Key()
		if reason := b.startFailure(m); reason != "" {
			results[m.BizURL] = clientResponse{Code: protocol.CodeFailed, Message: "internal exception: " + reason}
			continue
		}
		if !p.reg.register(m, b.cfg.Now(), false) {
			results[m.BizURL] = clientResponse{Code: protocol.CodeRepeatBiz, Message: repeatMessage(key)}
			continue
		}
		started = append(started, m)
	}
	// All bizs share the default priority, so they install in parallel: one delay for all.
	if len(started) > 0 && !p.sleep(settings.delay) {
		return nil, false
	}
	space := batchBaseSpace
	for _, m := range started {
		key := m.Key()
		info, s, registered := p.reg.start(key, settings.activation, b.cfg.Now())
		if !registered {
			results[m.BizURL] = clientResponse{Code: protocol.CodeFailed, Message: "internal exception: biz " + key + " was uninstalled while starting"}
			continue
		}
		space += s
		results[m.BizURL] = clientResponse{
			BizInfos: []bizModelJSON{info},
			Code:     protocol.CodeSuccess,
			Message:  installSuccessMessage(key, time.Since(begin), startedAt),
		}
	}
	data := batchInstallResponseJSON{
		BizURLToResponse: results,
		Code:             protocol.CodeSuccess,
		ElapsedSpace:     space,
		Message:          msgBatchSuccess,
	}
	for _, r := range results {
		if r.Code != protocol.CodeSuccess {
			data.Code, data.Message = protocol.CodeFailed, msgBatchFailed
			break
		}
	}
	res := batchResultJSON[batchInstallResponseJSON]{
		Command:  protocol.CommandBatchInstallBiz,
		Response: protocol.Output[batchInstallResponseJSON]{Code: protocol.CodeSuccess, Data: data},
	}
	if data.Code != protocol.CodeSuccess {
		res.Response.Code, res.Response.Message = protocol.CodeFailed, msgInstallNotSuccess
	}
	return res, true
}

// Fixed figures of the simulated JVM; the vectors' values.
const (
	baseMetaspaceUsed int64 = 121348920
	mib                     = 1 << 20
	baseLoadedClasses       = 21873
	classesPerBiz           = 6000
)

// health answers a health command with every indicator (docs/protocol.md, "Health").
func (p *process) health() protocol.HealthReply {
	b := p.b
	bizs, space := p.reg.summaries()
	master := protocol.BizSummary{
		BizName:        b.cfg.Name,
		BizState:       string(protocol.BizActivated),
		BizVersion:     b.cfg.Version,
		WebContextPath: "/",
	}
	used := baseMetaspaceUsed + space
	committed := (used + 8*mib + mib - 1) / mib * mib
	loaded := int64(baseLoadedClasses + classesPerBiz*len(bizs))
	usedHeap := 423.9970703125 + 48*float64(len(bizs))
	return protocol.HealthReply{
		Code: protocol.CodeSuccess,
		Data: protocol.Health{HealthData: protocol.HealthData{
			MasterBizInfo: master,
			JVM: protocol.JVMInfo{
				JavaVersion:             "1.8.0_412",
				JavaHome:                "/usr/lib/jvm/java-8-openjdk-amd64/jre",
				TotalMemoryM:            1008,
				MaxMemoryM:              3641,
				FreeMemoryM:             max(1008-usedHeap, 0),
				RunTimeSeconds:          time.Since(p.born).Seconds(),
				InitHeapMemoryM:         256,
				UsedHeapMemoryM:         usedHeap,
				CommittedHeapMemoryM:    1008,
				MaxHeapMemoryM:          3641,
				InitNonHeapMemoryM:      2.4375,
				UsedNonHeapMemoryM:      float64(used)/mib + 54,
				CommittedNonHeapMemoryM: float64(committed)/mib + 58,
				MaxNonHeapMemoryM:       -9.5367431640625e-7,
				LoadedClassCount:        loaded,
				UnloadClassCount:        12,
				TotalClassCount:         loaded + 12,
				JavaUsedMetaspace:       used,
				JavaCommittedMetaspace:  committed,
				JavaMaxMetaspace:        b.cfg.MaxMetaspace,
			},
			CPU: protocol.CPUInfo{
				Count:             4,
				Type:              "Intel(R) Xeon(R) Platinum 8369B CPU @ 2.70GHz",
				TotalUsed:         40092,
				UserUsedPercent:   7.782101167315175,
				SystemUsedPercent: 2.521700089793475,
				FreePercent:       89.26967973660581,
			},
			BizListInfo: append([]protocol.BizSummary{master}, bizs...),
			PluginListInfo: []protocol.PluginInfo{{
				ArtifactID:      "koupleless-base-plugin",
				GroupID:         "com.alipay.sofa.koupleless",
				PluginActivator: "com.alipay.sofa.koupleless.plugin.ServerlessRuntimeActivator",
				PluginName:      "koupleless-base-plugin",
				PluginURL:       "/home/admin/app/base.jar!/BOOT-INF/lib/koupleless-base-plugin-1.4.1.jar!/",
				PluginVersion:   "1.4.1",
			}},
		}},
	}
}
