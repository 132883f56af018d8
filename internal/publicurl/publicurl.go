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

// reservedSuffixes are names reserved for documentation and testing (RFC
// 2606, RFC 6761): no one can serve them, so a public URL under one is a
// placeholder someone forgot to replace.
var reservedSuffixes = []string{"example.com", "example.net", "example.org", "example", "test", "invalid"}

// CheckNotReserved refuses a public URL (as Parse returns it) whose host is
// a reserved example name such as voice.example.com: pointing customers'
// numbers there would send every call nowhere. Binaries call it unless
// their --allow-reserved-public-url flag is set (tests, demos).
func CheckNotReserved(publicURL string) error {
	u, err := url.Parse(publicURL)
	if err != nil {
		return err
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	for _, r := range reservedSuffixes {
		if host == r || strings.HasSuffix(host, "."+r) {
			return fmt.Errorf("%q is a reserved example host (%s), a placeholder no one serves: set it to your webhook ingress's https://host (in config/default: the PUBLIC_URL literal), or pass --allow-reserved-public-url for a test", publicURL, r)
		}
	}
	return nil
}
