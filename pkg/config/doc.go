// Package config holds the controller's settings: flags, environment fallbacks, defaults and validation.
package config
