package protocol

import (
	"fmt"
	"strings"
)

// BaseStateActivated is the only BaseStatus.State a base sends (lower case on the wire).
const BaseStateActivated = "activated"

// BaseMetadata describes a base; it is the data of SuffixQueryBaseline and part of every
// heartbeat. Name, Version and ClusterName come from the base's metadata hook (stock values
// "TO_BE_IMPLEMENTED", "1.0.0" and "default").
type BaseMetadata struct {
	// Identity is the base ID, the same as the topic's second level.
	Identity string `json:"identity"`
	// Name is the base application's name.
	Name string `json:"name"`
	// Version is the base application's version.
	Version string `json:"version"`
	// ClusterName selects the module deployments that make up the base's baseline.
	ClusterName string `json:"clusterName"`
}

// Validate requires a valid Identity (ErrMissingField if empty, else ValidateBaseID).
func (m BaseMetadata) Validate() error {
	if m.Identity == "" {
		return fmt.Errorf("%w: identity", ErrMissingField)
	}
	if err := ValidateBaseID(m.Identity); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	return nil
}

// BaseStatus is the data of a heartbeat (SuffixHeartbeat).
type BaseStatus struct {
	// BaseMetadata describes the base.
	BaseMetadata BaseMetadata `json:"baseMetadata"`
	// LocalIP is the base's address as its metadata hook reports it.
	LocalIP string `json:"localIP"`
	// LocalHostName is the base's host name.
	LocalHostName string `json:"localHostName"`
	// Port is always 0 over MQTT (only the HTTP tunnel fills it).
	Port int `json:"port"`
	// State is "activated" in every heartbeat a base sends; compare with Activated.
	State string `json:"state"`
}

// Validate checks BaseMetadata.
func (s BaseStatus) Validate() error {
	if err := s.BaseMetadata.Validate(); err != nil {
		return fmt.Errorf("baseMetadata: %w", err)
	}
	return nil
}

// Activated reports whether State is "activated", ignoring case as the reference does.
func (s BaseStatus) Activated() bool {
	return strings.EqualFold(s.State, BaseStateActivated)
}

// CheckBaseID returns an error wrapping ErrBaseIDMismatch if the identity a heartbeat or
// baseline query carries differs from the base ID of its topic. Routing uses the topic's ID;
// a mismatch means a misconfigured or spoofing base.
func CheckBaseID(topicID, payloadID string) error {
	if topicID != payloadID {
		return fmt.Errorf("%w: topic has %q, payload has %q", ErrBaseIDMismatch, topicID, payloadID)
	}
	return nil
}
