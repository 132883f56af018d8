package webhookserver

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // Twilio signs webhooks with HMAC-SHA1; the algorithm is not ours to choose
	"crypto/subtle"
	"encoding/base64"
	"hash"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// signatureHeader carries Twilio's request signature.
const signatureHeader = "X-Twilio-Signature"

// Reasons a signature check fails, as metric labels.
const (
	sigMissing        = "missing"
	sigUnknownAccount = "unknown_account"
	sigInvalid        = "invalid"
)

// AccountValidator checks signatures made with one auth token of one
// account. Build it with NewAccountValidator.
type AccountValidator struct {
	// AccountSID is the account whose auth token the validator holds.
	AccountSID string
	key        *sigKey
}

// NewAccountValidator prepares authToken of accountSID for checking
// signatures.
func NewAccountValidator(accountSID, authToken string) AccountValidator {
	return AccountValidator{AccountSID: accountSID, key: newSigKey(authToken)}
}

// Why the server does not call twilio-go's RequestValidator (the project
// prefers the library; this is the exception, with its reason). On the voice
// webhook, the hot path, RequestValidator.Validate was ~17 % of the server's
// CPU under `make bench-webhook`: per check it parses the URL three times,
// formats every parameter with fmt.Sprintf, builds the signed string twice
// and computes two HMAC-SHA1 with a new HMAC each time, whether or not the
// first matched. The checker below computes the same function (base64 of
// HMAC-SHA1 over the URL followed by every key and its first value, keys
// sorted byte-wise, compared in constant time, over the URL with and
// without its port as the validator tries it) with an HMAC prepared once
// per token and pooled, the URL forms of the fixed webhook paths computed
// once, one reused buffer for the signed string, and one HMAC when the
// first URL form matches. RequestValidator stays the oracle:
// TestSignatureCheckerMatchesRequestValidator and
// FuzzSignatureCheckerMatchesRequestValidator assert that both accept
// exactly the same signatures.

// sigKey is one auth token prepared for checking signatures: HMAC-SHA1
// states keyed with it, reused (hmac's Reset restores the keyed state
// without hashing the key again).
type sigKey struct {
	macs sync.Pool // of hash.Hash
}

func newSigKey(token string) *sigKey {
	key := []byte(token)
	k := &sigKey{}
	k.macs.New = func() any { return hmac.New(sha1.New, key) }
	return k
}

// sigScratch is a check's reusable memory.
type sigScratch struct {
	keys   []string
	params []byte // the signed string's params part: k1 v1 k2 v2 …
	url    []byte
	sum    [sha1.Size]byte
	enc    [28]byte // base64 of sum
	sig    []byte
}

var sigScratches = sync.Pool{New: func() any { return &sigScratch{} }}

// matches reports whether s.sig is the base64 HMAC-SHA1 of u followed by
// s.params.
func (k *sigKey) matches(s *sigScratch, u string) bool {
	m := k.macs.Get().(hash.Hash)
	m.Reset()
	s.url = append(s.url[:0], u...)
	m.Write(s.url)
	m.Write(s.params)
	sum := m.Sum(s.sum[:0])
	k.macs.Put(m)
	base64.StdEncoding.Encode(s.enc[:], sum)
	return subtle.ConstantTimeCompare(s.enc[:], s.sig) == 1
}

// urlForms are the URLs a signature over u may be over, as twilio-go's
// RequestValidator tries them: u with the scheme's default port added when
// it has none (443 for https, 80 for any other scheme), and u with its port
// removed; one of the two is u as it is, which comes first (Twilio signs
// voice webhooks over the URL as configured). A URL that does not parse is
// tried as it is.
func urlForms(u string) []string {
	p, err := url.Parse(u)
	if err != nil {
		return []string{u}
	}
	q := *p
	if p.Port() == "" {
		port := ":80"
		if p.Scheme == "https" {
			port = ":443"
		}
		q.Host = p.Host + port
	} else {
		// As the validator does it: the host up to its first colon (an IPv6
		// literal's port form is not what Twilio calls, so no special case).
		q.Host, _, _ = strings.Cut(p.Host, ":")
	}
	if other := q.String(); other != u {
		return []string{u, other}
	}
	return []string{u}
}

// signatureChecker checks X-Twilio-Signature, always over the configured
// public URL plus the request URI (never the Host the request reached the
// pod with), and the port forms Twilio's validator accepts.
type signatureChecker struct {
	publicURL string // https://host, no trailing slash
	// streamBase is the origin of the stream URL the TwiML names: wss://host
	// (ws:// for an http:// public URL).
	streamBase string
	// upgradeOrigins are the origins a WebSocket upgrade may have been
	// signed over, preferred first.
	upgradeOrigins []string
	// fixed holds the URL forms (urlForms) of the webhook paths without a
	// query: [0] without and [1] with ConnectionOverrides.
	fixed map[string]*[2][]string
}

func newSignatureChecker(publicURL string) signatureChecker {
	host := strings.TrimPrefix(strings.TrimPrefix(publicURL, "https://"), "http://")
	ws := "wss://"
	if strings.HasPrefix(publicURL, "http://") {
		ws = "ws://"
	}
	// Twilio reportedly signs the upgrade over the wss:// URL it dialled
	// (twilio-facts §5.1, UNCONFIRMED for Media Streams), so try that first and
	// the https:// form second, each with and without the port, as Twilio's
	// validator does; for wss that validator's default port is 80, so the
	// wss origin is given with :443: as given that is wss://host:443/…, and
	// with the port removed wss://host/….
	wssOrigin := ws + host
	if u, err := url.Parse(publicURL); err == nil && u.Port() == "" && ws == "wss://" {
		wssOrigin += ":443"
	}
	c := signatureChecker{publicURL: publicURL, streamBase: ws + host, upgradeOrigins: []string{wssOrigin, publicURL},
		fixed: map[string]*[2][]string{}}
	for _, p := range []string{VoicePath, RecordingPath, EventsPath, StatusPath} {
		c.fixed[p] = &[2][]string{urlForms(publicURL + p), urlForms(publicURL + p + ConnectionOverrides)}
	}
	return c
}

// checkForm reports whether sig is Twilio's signature of the POST r with
// form params under one of validators (the tokens of the request's AccountSid;
// usually one, two while a token is rotated). Twilio signs the first value of
// each key, like RequestValidator.ValidateBody. With overrides (the routes
// whose URLs carry ConnectionOverrides) the URL with the fragment is accepted
// too: Twilio never sends the fragment, and whether it signs it is
// unconfirmed (twilio-facts.md §7), so the URL without it is tried first.
func (c signatureChecker) checkForm(r *http.Request, form url.Values, sig string, validators []AccountValidator, overrides bool) bool {
	s := sigScratches.Get().(*sigScratch)
	defer sigScratches.Put(s)
	s.sig = append(s.sig[:0], sig...)
	s.keys = s.keys[:0]
	for k := range form {
		s.keys = append(s.keys, k)
	}
	slices.Sort(s.keys) // byte-wise, as sort.Strings
	s.params = s.params[:0]
	for _, k := range s.keys {
		s.params = append(s.params, k...)
		if v := form[k]; len(v) > 0 {
			s.params = append(s.params, v[0]...)
		}
	}

	uri := r.URL.RequestURI()
	if f, ok := c.fixed[uri]; ok {
		return c.anyMatches(s, f[0], validators) || overrides && c.anyMatches(s, f[1], validators)
	}
	return c.anyMatches(s, urlForms(c.publicURL+uri), validators) ||
		overrides && c.anyMatches(s, urlForms(c.publicURL+uri+ConnectionOverrides), validators)
}

// anyMatches reports whether s.sig signs one of urls followed by s.params
// under one of validators.
func (c signatureChecker) anyMatches(s *sigScratch, urls []string, validators []AccountValidator) bool {
	for i := range validators {
		if validators[i].key == nil { // a zero AccountValidator holds no token
			continue
		}
		for _, u := range urls {
			if validators[i].key.matches(s, u) {
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
	s := sigScratches.Get().(*sigScratch)
	defer sigScratches.Put(s)
	s.sig = append(s.sig[:0], sig...)
	s.params = s.params[:0]
	for _, origin := range c.upgradeOrigins {
		if c.anyMatches(s, urlForms(origin+uri), validators) {
			return true
		}
	}
	return false
}
