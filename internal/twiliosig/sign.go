// Package twiliosig computes X-Twilio-Signature values the way Twilio does,
// for the emulator's call simulator and the operator's preflight; checking
// them is twilio-go's RequestValidator's job.
package twiliosig

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // Twilio signs webhooks with HMAC-SHA1; the algorithm is not ours to choose
	"encoding/base64"
	"net/url"
	"sort"
	"strings"
)

// ConnectionOverrides are the Twilio webhook connection overrides
// (twilio-facts.md §7), as a URL fragment, on the callback URLs whose events
// the webhook server delivers to a sink: up to 3 retries (rc) when it
// answers 5xx or the connection or read fails (rp), within Twilio's maximum
// total time of 15 s (tt). The webhook server puts it on the recording
// callback; the operator puts it on the StatusCallback it sets.
const ConnectionOverrides = "#rc=3&rp=5xx,ct,rt&tt=15000"

// SignatureHeader is the HTTP header that carries Twilio's request signature.
const SignatureHeader = "X-Twilio-Signature"

// Sign returns the X-Twilio-Signature value Twilio would send for a request to
// fullURL carrying the form parameters params, signed with authToken:
// base64(HMAC-SHA1(authToken, fullURL + k1 + v1 + k2 + v2 …)) with the keys
// sorted byte-wise and no delimiters (twilio-facts.md §2.5).
//
// fullURL is used exactly as given (scheme, port and query included), so pass
// the public URL the application was configured with, not the address the
// request is delivered to. For a GET or a WebSocket upgrade pass nil params.
// A key with several values contributes each value, sorted, as twilio-node
// and twilio-python do; twilio-go's validator reads only the first value of
// each key, so requests meant for it should use single-valued keys (all
// requests made by this package do).
func Sign(authToken, fullURL string, params url.Values) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	var b strings.Builder
	b.WriteString(fullURL)
	for _, k := range keys {
		vals := append([]string(nil), params[k]...)
		sort.Strings(vals)
		for _, v := range vals {
			b.WriteString(k)
			b.WriteString(v)
		}
	}

	mac := hmac.New(sha1.New, []byte(authToken))
	mac.Write([]byte(b.String()))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
