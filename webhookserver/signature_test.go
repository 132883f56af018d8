package webhookserver

import (
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"testing"

	twclient "github.com/twilio/twilio-go/client"

	"github.com/loquent/twilio-voice-operator/internal/twiliosig"
)

// The signature checker (signature.go) computes Twilio's algorithm itself
// instead of calling twilio-go's RequestValidator; RequestValidator is the
// oracle here: for the same request, signature and tokens, the checker must
// accept exactly when RequestValidator.Validate accepts.

// oracleCheckForm is checkForm done with RequestValidator.Validate.
func oracleCheckForm(publicURL, uri string, form url.Values, sig string, tokens []string, overrides bool) bool {
	params := make(map[string]string, len(form))
	for k, v := range form {
		params[k] = v[0]
	}
	full := publicURL + uri
	for _, tok := range tokens {
		rv := twclient.NewRequestValidator(tok)
		if rv.Validate(full, params, sig) || overrides && rv.Validate(full+ConnectionOverrides, params, sig) {
			return true
		}
	}
	return false
}

// oracleCheckUpgrade is checkUpgrade done with RequestValidator.Validate.
func oracleCheckUpgrade(c signatureChecker, uri, sig string, tokens []string) bool {
	for _, tok := range tokens {
		rv := twclient.NewRequestValidator(tok)
		for _, origin := range c.upgradeOrigins {
			if rv.Validate(origin+uri, map[string]string{}, sig) {
				return true
			}
		}
	}
	return false
}

// firstValues keeps each key's first value: what Twilio's validators sign.
func firstValues(form url.Values) url.Values {
	out := make(url.Values, len(form))
	for k, v := range form {
		out[k] = v[:1]
	}
	return out
}

// differential asserts that the checker for publicURL and RequestValidator
// agree on a request to rawURI with form, for signatures made over the URL
// forms a signer could have used (with and without ports, with fragments,
// other schemes and hosts), with each token and another one, and altered.
// It returns how many signatures both accepted.
func differential(t testing.TB, publicURL, rawURI string, form url.Values, tokens []string, flip uint) int {
	t.Helper()
	u, err := url.ParseRequestURI(rawURI)
	if err != nil {
		return 0
	}
	r := &http.Request{Method: http.MethodPost, URL: u}
	uri := u.RequestURI()
	c := newSignatureChecker(publicURL)
	validators := make([]AccountValidator, len(tokens))
	for i, tok := range tokens {
		validators[i] = NewAccountValidator(fuzzAccount, tok)
	}
	host := strings.TrimPrefix(strings.TrimPrefix(publicURL, "https://"), "http://")
	bare, _, _ := strings.Cut(host, ":")
	urls := []string{"https://" + host + uri + "#rc=5", "wss://" + bare + ":8443" + uri}
	for _, scheme := range []string{"https://", "http://", "wss://"} {
		for _, h := range []string{host, bare, bare + ":443", bare + ":80", "pod.internal"} {
			urls = append(urls, scheme+h+uri, scheme+h+uri+ConnectionOverrides)
		}
	}
	signed := firstValues(form)
	accepted := 0
	for _, signer := range append(append([]string(nil), tokens...), "otherToken") {
		for _, full := range urls {
			for _, params := range []url.Values{signed, nil} {
				sig := twiliosig.Sign(signer, full, params)
				sigs := []string{sig, flipChar(sig, flip)}
				if full == urls[0] {
					sigs = append(sigs, sig+"=", sig[:len(sig)-1], "")
				}
				for _, s := range sigs {
					for _, overrides := range []bool{false, true} {
						want := oracleCheckForm(publicURL, uri, form, s, tokens, overrides)
						if got := c.checkForm(r, form, s, validators, overrides); got != want {
							t.Fatalf("checkForm(%s%s, %v, %q, overrides=%v) = %v, RequestValidator says %v (signed over %s by %q)",
								publicURL, uri, form, s, overrides, got, want, full, signer)
						}
						if want {
							accepted++
						}
					}
					want := oracleCheckUpgrade(c, uri, s, tokens)
					if got := c.checkUpgrade(uri, s, validators); got != want {
						t.Fatalf("checkUpgrade(%s, %q) = %v, RequestValidator says %v (signed over %s by %q)", uri, s, got, want, full, signer)
					}
					if want {
						accepted++
					}
				}
			}
		}
	}
	return accepted
}

// sigPublicURLs are public URLs the server may be configured with.
var sigPublicURLs = []string{
	testPublicURL, "https://voice.example.test:443", "https://voice.example.test:8443",
	"http://demo.local:8080", "http://demo.local", "https://[::1]:8443",
}

// TestSignatureCheckerMatchesRequestValidator compares the checker with
// RequestValidator on the webhook paths and on random request URIs, forms
// (keys sharing prefixes, repeated keys, empty values, any bytes) and
// tokens, from a fixed seed.
func TestSignatureCheckerMatchesRequestValidator(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 2))
	const alphabet = "aAzZ09-_.~%20%2F%C3%A9:/?&=+;,@!$'()*[]#"
	randString := func(n int) string {
		var b strings.Builder
		for range rng.IntN(n + 1) {
			if rng.IntN(8) == 0 {
				b.WriteByte(byte(rng.IntN(256)))
			} else {
				b.WriteByte(alphabet[rng.IntN(len(alphabet))])
			}
		}
		return b.String()
	}
	paths := []string{VoicePath, RecordingPath + "?to=%2B14155550100", EventsPath, StatusPath, StreamPath + "/" + fuzzAccount, StreamPath, "/"}
	accepted := 0
	for i := range 60 {
		uri := paths[i%len(paths)]
		if i >= 2*len(paths) {
			uri = "/" + randString(24)
		}
		form := url.Values{}
		for range rng.IntN(6) {
			k := randString(8)
			if rng.IntN(3) == 0 {
				k = "Reason" + k // keys that share a prefix sort by key, not key+value
			}
			form.Add(k, randString(10))
		}
		if i%5 == 0 {
			form = voiceForm(fuzzAccount, "CA"+randString(8), "+15550001", fuzzNumber)
		}
		tokens := []string{randString(12)}
		if rng.IntN(4) == 0 {
			tokens = append(tokens, randString(12)) // two tokens: a rotation
		}
		accepted += differential(t, sigPublicURLs[i%len(sigPublicURLs)], uri, form, tokens, uint(rng.IntN(64)))
	}
	if accepted == 0 {
		t.Fatal("no signature was accepted: the comparison proves nothing")
	}
}
