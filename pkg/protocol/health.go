package protocol

import "encoding/json"

// HealthReply is the data of SuffixHealth, the answer to CommandHealth. On an internal error
// the base sends Code CodeFailed with a Message and no Data; the reference drops such replies.
type HealthReply = Output[Health]

// LegacyBizReply is the data of SuffixLegacyBiz, the inventory runtimes up to v1.3.1 sent
// in answer to CommandQueryAllBiz. Current bases send []SimpleBizInfo on SuffixSimpleBiz.
type LegacyBizReply = Output[[]BizInfo]

// Health is the result of a health command.
type Health struct {
	// HealthData holds the indicators.
	HealthData HealthData `json:"healthData"`
}

// HealthData holds a base's health indicators, as a base answers an empty health request.
type HealthData struct {
	// MasterBizInfo describes the base itself; its BizState is the base's state.
	MasterBizInfo BizSummary `json:"masterBizInfo"`
	// JVM holds memory and class-loading figures.
	JVM JVMInfo `json:"jvm"`
	// CPU holds processor figures.
	CPU CPUInfo `json:"cpu"`
	// BizListInfo lists every registered biz, the master biz included.
	BizListInfo []BizSummary `json:"bizListInfo,omitempty"`
	// PluginListInfo lists the SOFAArk plugins.
	PluginListInfo []PluginInfo `json:"pluginListInfo,omitempty"`
}

// BizSummary is a biz as health replies describe it.
type BizSummary struct {
	// BizName is the biz name.
	BizName string `json:"bizName"`
	// BizState is the state, upper case; read it with State.
	BizState string `json:"bizState"`
	// BizVersion is the biz version.
	BizVersion string `json:"bizVersion"`
	// WebContextPath is the biz's web context path ("/" for the master biz).
	WebContextPath string `json:"webContextPath,omitempty"`
}

// State returns BizState parsed with ParseBizState.
func (b BizSummary) State() BizState {
	return ParseBizState(b.BizState)
}

// Key returns BizKey(BizName, BizVersion).
func (b BizSummary) Key() string {
	return BizKey(b.BizName, b.BizVersion)
}

// MetaspaceUndefined is the value of a metaspace figure the JVM does not define (e.g. no
// -XX:MaxMetaspaceSize); JVMInfo also uses it for figures the reply omits.
const MetaspaceUndefined int64 = -1

// JVMInfo holds the base JVM's figures. The (M) fields are MiB; the metaspace fields bytes.
type JVMInfo struct {
	// JavaVersion is the java.version property.
	JavaVersion string `json:"java version"`
	// JavaHome is the java.home property.
	JavaHome string `json:"java home"`
	// TotalMemoryM is Runtime.totalMemory in MiB.
	TotalMemoryM float64 `json:"total memory(M)"`
	// MaxMemoryM is Runtime.maxMemory in MiB.
	MaxMemoryM float64 `json:"max memory(M)"`
	// FreeMemoryM is Runtime.freeMemory in MiB.
	FreeMemoryM float64 `json:"free memory(M)"`
	// RunTimeSeconds is the JVM uptime in seconds.
	RunTimeSeconds float64 `json:"run time(s)"`
	// InitHeapMemoryM is the initial heap in MiB.
	InitHeapMemoryM float64 `json:"init heap memory(M)"`
	// UsedHeapMemoryM is the used heap in MiB.
	UsedHeapMemoryM float64 `json:"used heap memory(M)"`
	// CommittedHeapMemoryM is the committed heap in MiB.
	CommittedHeapMemoryM float64 `json:"committed heap memory(M)"`
	// MaxHeapMemoryM is the maximum heap in MiB.
	MaxHeapMemoryM float64 `json:"max heap memory(M)"`
	// InitNonHeapMemoryM is the initial non-heap memory in MiB.
	InitNonHeapMemoryM float64 `json:"init non heap memory(M)"`
	// UsedNonHeapMemoryM is the used non-heap memory in MiB.
	UsedNonHeapMemoryM float64 `json:"used non heap memory(M)"`
	// CommittedNonHeapMemoryM is the committed non-heap memory in MiB.
	CommittedNonHeapMemoryM float64 `json:"committed non heap memory(M)"`
	// MaxNonHeapMemoryM is the maximum non-heap memory in MiB (negative if undefined).
	MaxNonHeapMemoryM float64 `json:"max non heap memory(M)"`
	// LoadedClassCount is the number of classes currently loaded.
	LoadedClassCount int64 `json:"loaded class count"`
	// UnloadClassCount is the number of classes unloaded so far.
	UnloadClassCount int64 `json:"unload class count"`
	// TotalClassCount is the number of classes loaded so far.
	TotalClassCount int64 `json:"total class count"`
	// JavaUsedMetaspace is the used Metaspace in bytes, or MetaspaceUndefined.
	JavaUsedMetaspace int64 `json:"java used metaspace"`
	// JavaCommittedMetaspace is the committed Metaspace in bytes, or MetaspaceUndefined.
	JavaCommittedMetaspace int64 `json:"java committed metaspace"`
	// JavaMaxMetaspace is the Metaspace limit in bytes, or MetaspaceUndefined.
	JavaMaxMetaspace int64 `json:"java max metaspace"`
}

// UnmarshalJSON decodes like encoding/json but leaves absent metaspace figures at
// MetaspaceUndefined rather than 0, so "not sent" never reads as "no memory".
func (j *JVMInfo) UnmarshalJSON(b []byte) error {
	type plain JVMInfo // no methods, so no recursion
	p := plain(*j)
	p.JavaUsedMetaspace = MetaspaceUndefined
	p.JavaCommittedMetaspace = MetaspaceUndefined
	p.JavaMaxMetaspace = MetaspaceUndefined
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*j = JVMInfo(p)
	return nil
}

// MetaspaceCapacity returns JavaMaxMetaspace, what the reference reports as the node's
// memory capacity, or false if it is undefined.
func (j JVMInfo) MetaspaceCapacity() (int64, bool) {
	if j.JavaMaxMetaspace <= 0 {
		return 0, false
	}
	return j.JavaMaxMetaspace, true
}

// MetaspaceAllocatable returns JavaMaxMetaspace − JavaCommittedMetaspace, what the reference
// reports as the node's allocatable memory, or false if either is undefined.
func (j JVMInfo) MetaspaceAllocatable() (int64, bool) {
	capacity, ok := j.MetaspaceCapacity()
	if !ok || j.JavaCommittedMetaspace < 0 {
		return 0, false
	}
	return max(capacity-j.JavaCommittedMetaspace, 0), true
}

// CPUInfo holds the base's processor figures.
type CPUInfo struct {
	// Count is the number of processors.
	Count int `json:"count"`
	// Type is the processor model.
	Type string `json:"type"`
	// TotalUsed is, despite its key, the sum of CPU tick deltas since the indicator was
	// created, not a percentage; the other three are percentages of it.
	TotalUsed float64 `json:"total used (%)"`
	// UserUsedPercent is the user share in percent.
	UserUsedPercent float64 `json:"user used (%)"`
	// SystemUsedPercent is the system share in percent.
	SystemUsedPercent float64 `json:"system used (%)"`
	// FreePercent is the idle share in percent.
	FreePercent float64 `json:"free (%)"`
}

// PluginInfo describes one SOFAArk plugin of the base.
type PluginInfo struct {
	// ArtifactID is the plugin's Maven artifact ID.
	ArtifactID string `json:"artifactId"`
	// GroupID is the plugin's Maven group ID.
	GroupID string `json:"groupId"`
	// PluginActivator is the plugin's activator class.
	PluginActivator string `json:"pluginActivator"`
	// PluginName is the plugin's name.
	PluginName string `json:"pluginName"`
	// PluginURL is where the plugin was loaded from.
	PluginURL string `json:"pluginUrl"`
	// PluginVersion is the plugin's version.
	PluginVersion string `json:"pluginVersion"`
}
