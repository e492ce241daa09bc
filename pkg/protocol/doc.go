// Package protocol implements the Koupleless arklet MQTT wire protocol: topics, the message envelope, payload types and their validation. It imports only the standard library.
package protocol
