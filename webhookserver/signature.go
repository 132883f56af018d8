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
	publicURL string // https://host, no trailing slash
	// streamBase is the origin of the stream URL the TwiML names: wss://host
	// (ws:// for an http:// public URL).
	streamBase string
	// upgradeOrigins are the origins a WebSocket upgrade may have been
	// signed over, preferred first.
	upgradeOrigins []string
}

func newSignatureChecker(publicURL string) signatureChecker {
	host := strings.TrimPrefix(strings.TrimPrefix(publicURL, "https://"), "http://")
	ws := "wss://"
	if strings.HasPrefix(publicURL, "http://") {
		ws = "ws://"
	}
	// Twilio reportedly signs the upgrade over the wss:// URL it dialled
	// (twilio-facts §5.1, UNCONFIRMED for Media Streams), so try that first and
	// the https:// form second. The validator tries each URL as given, with
	// its port removed, and (when it has none) with the scheme's default port
	// added, a default it knows only for https: for wss it would add :80. Twilio
	// is inconsistent about ports (§2.5), so the wss origin is given with :443:
	// as given that is wss://host:443/…, and with the port removed wss://host/….
	wssOrigin := ws + host
	if u, err := url.Parse(publicURL); err == nil && u.Port() == "" && ws == "wss://" {
		wssOrigin += ":443"
	}
	return signatureChecker{publicURL: publicURL, streamBase: ws + host, upgradeOrigins: []string{wssOrigin, publicURL}}
}

// checkForm reports whether sig is Twilio's signature of the POST r with
// form params under one of validators (the tokens of the request's AccountSid;
// usually one, two while a token is rotated). Twilio signs the first value of
// each key, like RequestValidator.ValidateBody. With overrides (the routes
// whose URLs carry ConnectionOverrides) the URL with the fragment is accepted
// too: Twilio never sends the fragment, and whether it signs it is
// unconfirmed (twilio-facts.md §7), so the URL without it is tried first.
func (c signatureChecker) checkForm(r *http.Request, form url.Values, sig string, validators []AccountValidator, overrides bool) bool {
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
	if overrides {
		full += ConnectionOverrides
		for i := range validators {
			if validators[i].Validator.Validate(full, params, sig) {
				return true
			}
		}
	}
	return false
}

// checkUpgrade reports whether sig is Twilio's signature of the WebSocket
// upgrade to uri (signed over the stream URL, with no params) under one of
// validators: the tokens of the one account the stream is for, so the cost
// of a check does not grow with the number of accounts.
func (c signatureChecker) checkUpgrade(uri, sig string, validators []AccountValidator) bool {
	empty := map[string]string{}
	for _, v := range validators {
		for _, origin := range c.upgradeOrigins {
			if v.Validator.Validate(origin+uri, empty, sig) {
				return true
			}
		}
	}
	return false
}
