// Package publicurl validates the public base URL ({APP_HOST}) through which
// Twilio reaches the webhook server. Both binaries use it: the operator points
// numbers at it and the webhook server checks signatures against it.
package publicurl

import (
	"fmt"
	"net/url"
	"strings"
)

// Parse checks that raw is an absolute https URL with a host and no path,
// query, fragment or credentials, and returns it without a trailing slash.
// allowHTTP also accepts http, for local demos where nothing has TLS.
func Parse(raw string, allowHTTP bool) (string, error) {
	if raw == "" {
		return "", fmt.Errorf("is required (the https://host through which Twilio reaches the webhook server)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%q is not a URL: %w", raw, err)
	}
	switch {
	case u.Scheme != "https" && (!allowHTTP || u.Scheme != "http"):
		return "", fmt.Errorf("%q must use https (Twilio requires TLS for webhooks and wss for media streams)", raw)
	case u.Host == "" || u.Hostname() == "":
		return "", fmt.Errorf("%q has no host", raw)
	case u.User != nil:
		return "", fmt.Errorf("%q must not carry credentials", raw)
	case strings.TrimSuffix(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(raw, "?") || strings.HasSuffix(raw, "#"):
		return "", fmt.Errorf("%q must be only scheme and host (no path, query or fragment); the endpoints live at fixed paths such as /twilio/voice", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}
