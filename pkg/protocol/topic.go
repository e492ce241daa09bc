package protocol

import (
	"fmt"
	"slices"
	"strings"
)

// Environments.
const (
	// DefaultEnv is the env a stock base (runtime >= 1.3.3) publishes under: its metadata hook
	// returns the constant "default". The reference controller defaults to "dev" instead, so
	// the two meet only if one side is configured (docs/protocol.md, "Environment").
	DefaultEnv = "default"
	// FallbackEnv is the env a base uses when its metadata hook returns an empty env.
	FallbackEnv = "dev"
	// MaxEnvLength is the longest env ValidateEnv accepts (a DNS-1123 label).
	MaxEnvLength = 63
)

// TopicPrefix starts every topic of the protocol: TopicPrefix + env + "/" + baseID + "/" +
// suffix.
const TopicPrefix = "koupleless_"

// Suffixes of the topics a base publishes and the controller subscribes to.
const (
	// SuffixHeartbeat carries a BaseStatus every 10 s.
	SuffixHeartbeat = "base/heart"
	// SuffixQueryBaseline carries a BaseMetadata once, on the base's first connect.
	SuffixQueryBaseline = "base/queryBaseline"
	// SuffixHealth carries a HealthReply, the answer to CommandHealth.
	SuffixHealth = "base/health"
	// SuffixSimpleBiz carries a []SimpleBizInfo, the answer to CommandQueryAllBiz.
	SuffixSimpleBiz = "base/simpleBiz"
	// SuffixLegacyBiz carries a LegacyBizReply; bases stopped publishing it after runtime v1.3.1.
	SuffixLegacyBiz = "base/biz"
	// SuffixBizOperation carries a BizOperation, the answer to CommandInstallBiz and
	// CommandUninstallBiz.
	SuffixBizOperation = "base/bizOperation"
	// SuffixBatchInstallResponse carries a BatchInstallResult, the answer to a baseline.
	SuffixBatchInstallResponse = "base/batchInstallBizResponse"
)

// Suffixes of the topics the controller publishes and a base subscribes to. Command bodies
// are bare JSON (see EncodeCommand), never wrapped in an Envelope.
const (
	// CommandHealth asks for a HealthReply; body EmptyRequest.
	CommandHealth = "health"
	// CommandQueryAllBiz asks for the biz inventory; body EmptyRequest.
	CommandQueryAllBiz = "queryAllBiz"
	// CommandInstallBiz installs one biz; body BizModel. Also BizOperation.Command of the reply.
	CommandInstallBiz = "installBiz"
	// CommandUninstallBiz uninstalls one name:version; body BizModel. Also BizOperation.Command
	// of the reply.
	CommandUninstallBiz = "uninstallBiz"
	// CommandBatchInstallBiz is the BatchInstallResult.Command of a baseline reply. It is NOT a
	// topic: the base does not accept it as one; a batch is started by SuffixBaseline.
	CommandBatchInstallBiz = "batchInstallBiz"
	// SuffixBaseline carries the baseline, a bare JSON array of BizModel. It lives under
	// "base/" although the controller publishes it; bases subscribe to it by name.
	SuffixBaseline = "base/baseline"
)

// baseSuffixes are the base→controller suffixes, in BaseSubscriptions order.
var baseSuffixes = []string{
	SuffixHeartbeat,
	SuffixQueryBaseline,
	SuffixHealth,
	SuffixSimpleBiz,
	SuffixLegacyBiz,
	SuffixBizOperation,
	SuffixBatchInstallResponse,
}

// commandSuffixes are the controller→base suffixes.
var commandSuffixes = []string{
	CommandHealth,
	CommandQueryAllBiz,
	CommandInstallBiz,
	CommandUninstallBiz,
	SuffixBaseline,
}

// NormalizeEnv returns env as a base puts it in topics: lower-cased, and FallbackEnv if empty.
func NormalizeEnv(env string) string {
	if env == "" {
		return FallbackEnv
	}
	return strings.ToLower(env)
}

// ValidateEnv reports, wrapping ErrInvalidEnv, whether env is non-empty and NormalizeEnv(env)
// is a DNS-1123 label (lower-case letters, digits and '-', at most MaxEnvLength). Labels have
// no '.', which BaseIDFromNodeName relies on, and no MQTT wildcard or separator.
func ValidateEnv(env string) error {
	if env == "" {
		return fmt.Errorf("%w: empty", ErrInvalidEnv)
	}
	n := NormalizeEnv(env)
	if len(n) > MaxEnvLength {
		return fmt.Errorf("%w: longer than %d characters", ErrInvalidEnv, MaxEnvLength)
	}
	if detail := checkLabel(n); detail != "" {
		return fmt.Errorf("%w %q: %s", ErrInvalidEnv, env, detail)
	}
	return nil
}

// EnvPrefix returns the first topic level for env: "koupleless_" + NormalizeEnv(env).
func EnvPrefix(env string) string {
	return TopicPrefix + NormalizeEnv(env)
}

// Topic returns the topic koupleless_<env>/<baseID>/<suffix>, env normalized.
func Topic(env, baseID, suffix string) string {
	return EnvPrefix(env) + "/" + baseID + "/" + suffix
}

// BaseSubscriptions returns the wildcard filters through which the controller receives what
// every base of env publishes, one per base→controller suffix. SuffixBaseline is not among
// them: the controller publishes it. Subscribe to these on every (re)connect.
func BaseSubscriptions(env string) []string {
	filters := make([]string, 0, len(baseSuffixes))
	for _, s := range baseSuffixes {
		filters = append(filters, Topic(env, "+", s))
	}
	return filters
}

// CommandSubscriptions returns the filters a base subscribes to: koupleless_<env>/<baseID>/+
// for the commands, and the baseline topic by name (the '+' matches one level only).
func CommandSubscriptions(env, baseID string) []string {
	return []string{
		Topic(env, baseID, "+"),
		Topic(env, baseID, SuffixBaseline),
	}
}

// TopicParts is a parsed topic.
type TopicParts struct {
	// Env is the environment as it appears in the topic (bases lower-case it).
	Env string
	// BaseID is the base identity, the second topic level.
	BaseID string
	// Suffix is what follows the base ID: a Suffix… or Command… constant.
	Suffix string
}

// String returns the topic the parts were parsed from.
func (p TopicParts) String() string {
	return TopicPrefix + p.Env + "/" + p.BaseID + "/" + p.Suffix
}

// FromBase reports whether the topic carries base→controller traffic (and thus an Envelope).
func (p TopicParts) FromBase() bool {
	return slices.Contains(baseSuffixes, p.Suffix)
}

// ParseTopic splits a topic of the protocol into its parts. It returns ErrUnknownTopic if the
// topic is not koupleless_<env>/<id>/<suffix> with a known base→controller or
// controller→base suffix, and ErrInvalidBaseID if the id fails ValidateBaseID.
func ParseTopic(topic string) (TopicParts, error) {
	rest, ok := strings.CutPrefix(topic, TopicPrefix)
	if !ok {
		return TopicParts{}, fmt.Errorf("%w %q: no %q prefix", ErrUnknownTopic, topic, TopicPrefix)
	}
	levels := strings.SplitN(rest, "/", 3)
	if len(levels) != 3 || levels[0] == "" {
		return TopicParts{}, fmt.Errorf("%w %q: want %s<env>/<base id>/<suffix>",
			ErrUnknownTopic, topic, TopicPrefix)
	}
	p := TopicParts{Env: levels[0], BaseID: levels[1], Suffix: levels[2]}
	if !slices.Contains(baseSuffixes, p.Suffix) && !slices.Contains(commandSuffixes, p.Suffix) {
		return TopicParts{}, fmt.Errorf("%w %q: unknown suffix %q", ErrUnknownTopic, topic, p.Suffix)
	}
	if err := ValidateBaseID(p.BaseID); err != nil {
		return TopicParts{}, fmt.Errorf("topic %q: %w", topic, err)
	}
	return p, nil
}
