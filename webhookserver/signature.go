package webhookserver

import (
	"net/http"
	"net/url"
	"strings"

	twclient "github.com/twilio/twilio-go/client"
)

// signatureHeader carries Twilio's request signature.
const signatureHeader = "X-Twilio-Signature"

// Reasons a signature check fails, as metric labels.
const (
	sigMissing        = "missing"
	sigUnknownAccount = "unknown_account"
	sigInvalid        = "invalid"
)

// AccountValidator is a validator for one auth token of one account.
type AccountValidator struct {
	// AccountSID is the account whose auth token the validator holds.
	AccountSID string
	// Validator checks signatures made with that token.
	Validator twclient.RequestValidator
}

// signatureChecker checks X-Twilio-Signature with twilio-go's
// RequestValidator, always over the configured public URL plus the request
// URI (never the Host the request reached the pod with), and the port forms
// the validator tries by itself.
type signatureChecker struct {
	publicURL string   // https://host, no trailing slash
	streamURL []string // the origins a WebSocket upgrade may have been signed over, preferred first
}

func newSignatureChecker(publicURL string) signatureChecker {
	host := strings.TrimPrefix(strings.TrimPrefix(publicURL, "https://"), "http://")
	ws := "wss://"
	if strings.HasPrefix(publicURL, "http://") {
		ws = "ws://"
	}
	// Twilio reportedly signs the upgrade over the wss:// URL it dialled
	// (twilio-facts §5.1, UNCONFIRMED for Media Streams), so try that first and
	// the https:// form second.
	return signatureChecker{publicURL: publicURL, streamURL: []string{ws + host, publicURL}}
}

// checkForm reports whether sig is Twilio's signature of the POST r with
// form params under one of validators (the tokens of the request's AccountSid;
// usually one, two while a token is rotated). Twilio signs the first value of
// each key, like RequestValidator.ValidateBody.
func (c signatureChecker) checkForm(r *http.Request, form url.Values, sig string, validators []AccountValidator) bool {
	full := c.publicURL + r.URL.RequestURI()
	params := make(map[string]string, len(form))
	for k, v := range form {
		params[k] = v[0]
	}
	for i := range validators {
		if validators[i].Validator.Validate(full, params, sig) {
			return true
		}
	}
	return false
}

// checkUpgrade returns the SIDs of the accounts under whose auth tokens sig
// validates the WebSocket upgrade r (signed over the stream URL with no
// params). The upgrade carries no AccountSid, so every known token is tried;
// the stream's start message must later name one of the returned accounts,
// and its per-call token binds it to that account.
func (c signatureChecker) checkUpgrade(r *http.Request, sig string, validators []AccountValidator) []string {
	var matched []string
	uri := r.URL.RequestURI()
	empty := map[string]string{}
	for i := range validators {
		v := &validators[i]
		for _, origin := range c.streamURL {
			if v.Validator.Validate(origin+uri, empty, sig) {
				matched = appendUnique(matched, v.AccountSID)
				break
			}
		}
	}
	return matched
}

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}
