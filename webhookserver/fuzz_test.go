package webhookserver

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
)

// The fuzz targets run on in-memory routes: no network, no API server
// (TestMain starts none when fuzzing). `make fuzz` runs each for a short,
// bounded time; `go test` runs their seeds.

const (
	fuzzAccount = "AC0123456789abcdef0123456789abcdef"
	fuzzToken   = "fuzzAuthToken0123"
	fuzzNumber  = "+14155550100"
)

// fuzzServer is a server with one account and one routed number.
func fuzzServer(t testing.TB) *Server {
	metrics, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	routes := NewStaticRoutes([]Route{{
		Number: fuzzNumber, Object: types.NamespacedName{Namespace: "fuzz", Name: "n"},
		AccountSID: fuzzAccount, AgentURL: "ws://agent.invalid/media", Record: true, Enabled: true,
	}}, map[string]string{fuzzAccount: fuzzToken})
	s, err := New(Options{
		PublicURL: testPublicURL, Routes: routes, TokenKeys: [][]byte{testKey}, Metrics: metrics, Log: logr.Discard(),
		Limits: Limits{SignatureFailureBurst: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// FuzzReadSignedForm posts arbitrary bodies, content types and signatures
// to the webhook routes. A request is accepted only with Twilio's signature
// (computed here independently, by sign) over the public URL and the form,
// with the token of the form's AccountSid; and on the SMS route every such
// request is accepted.
func FuzzReadSignedForm(f *testing.F) {
	good := voiceForm(fuzzAccount, "CA1", "+15550001", fuzzNumber).Encode()
	const ct = "application/x-www-form-urlencoded"
	f.Add(uint8(0), good, ct, uint8(0), "")
	f.Add(uint8(1), "AccountSid="+fuzzAccount+"&RecordingSid=RE1&RecordingStatus=completed&RecordingDuration=1e308", ct, uint8(0), "")
	f.Add(uint8(2), "AccountSid="+fuzzAccount+"&MessageSid=SM1&Body=h%C3%A9llo+%3C%26%3E", ct+"; charset=utf-8", uint8(1), "")
	f.Add(uint8(2), "AccountSid="+fuzzAccount+"&AccountSid=AC2&To=1&To=2", ct, uint8(0), "")
	f.Add(uint8(0), good, ct, uint8(2), "")
	f.Add(uint8(0), good, ct, uint8(3), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
	f.Add(uint8(2), "AccountSid=%zz&To=%", ct, uint8(0), "")
	f.Add(uint8(2), "a=1;b=2", ct, uint8(0), "")
	f.Add(uint8(1), good, "application/json", uint8(0), "")
	f.Add(uint8(2), "", "", uint8(3), "")
	f.Add(uint8(0), "RecordingDuration=NaN&AccountSid="+fuzzAccount, ct, uint8(0), "")
	s := fuzzServer(f)
	handler := s.Handler()
	paths := []string{VoicePath, RecordingPath, EventsPath}

	f.Fuzz(func(t *testing.T, route uint8, body, contentType string, sigKind uint8, rawSig string) {
		path := paths[int(route)%len(paths)]
		form, parseErr := url.ParseQuery(body)
		sig := rawSig
		switch sigKind % 4 {
		case 0:
			sig = sign(fuzzToken, testPublicURL+path, form)
		case 1:
			sig = sign(fuzzToken, "https://voice.example.test:443"+path, form)
		case 2:
			sig = sign(fuzzToken+"x", testPublicURL+path, form)
		}
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		if sig != "" {
			req.Header.Set(signatureHeader, sig)
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)

		switch rec.Code {
		case http.StatusOK, http.StatusNoContent, http.StatusBadRequest, http.StatusForbidden,
			http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		default:
			t.Fatalf("status %d", rec.Code)
		}
		mt, _, mtErr := mime.ParseMediaType(contentType)
		validSig := sig != "" && parseErr == nil && form.Get("AccountSid") == fuzzAccount &&
			(sig == sign(fuzzToken, testPublicURL+path, form) || sig == sign(fuzzToken, "https://voice.example.test:443"+path, form))
		wellFormed := mtErr == nil && mt == contentTypeFormURLEncode && int64(len(body)) <= DefaultLimits.MaxBodyBytes
		accepted := rec.Code == http.StatusOK || rec.Code == http.StatusNoContent
		if accepted && (!validSig || !wellFormed) {
			t.Fatalf("accepted without a valid signature: route %s, content type %q, body %q, signature %q", path, contentType, body, sig)
		}
		if path == EventsPath && validSig && wellFormed && !accepted {
			t.Fatalf("refused (%d) with a valid signature: content type %q, body %q", rec.Code, contentType, body)
		}
	})
}

// safePath is a request path whose URL every party writes the same way.
var safePath = regexp.MustCompile(`^/[A-Za-z0-9/_.~-]{0,200}$`)

// FuzzSignatureCheck checks signatureChecker against the independent signer
// for arbitrary tokens, paths and params: Twilio's signature over the public
// URL (with or without :443) validates, and a signature with another token,
// over another URL or with one character changed does not; for upgrades,
// over the wss:// and https:// forms with and without :443.
func FuzzSignatureCheck(f *testing.F) {
	f.Add("12345", "/twilio/voice", "CallSid=CA1&Caller=%2B1&Digits=1234", uint(3))
	f.Add("tok", "/twilio/stream/"+fuzzAccount, "", uint(0))
	f.Add("t", "/twilio/recording", "Reason=x&ReasonConferenceEnded=y", uint(27))
	f.Add("\x00\xff", "/", "a=&a=1&%C3%A9=%E2%9C%93", uint(1))
	c := newSignatureChecker(testPublicURL)
	other := newSignatureChecker("http://demo.local:8080")

	f.Fuzz(func(t *testing.T, token, path, query string, flip uint) {
		if token == "" || !safePath.MatchString(path) {
			return
		}
		form, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		v := []AccountValidator{NewAccountValidator(fuzzAccount, token)}
		r := httptest.NewRequest(http.MethodPost, path, nil)
		for _, overrides := range []bool{false, true} {
			for _, base := range []string{testPublicURL, "https://voice.example.test:443"} {
				sig := sign(token, base+path, form)
				if !c.checkForm(r, form, sig, v, overrides) {
					t.Fatalf("Twilio's signature over %s%s refused", base, path)
				}
				if c.checkForm(r, form, flipChar(sig, flip), v, overrides) {
					t.Fatalf("altered signature %q accepted", flipChar(sig, flip))
				}
				// Over the URL with the connection overrides' fragment: accepted
				// only where the server puts it.
				withFragment := sign(token, base+path+ConnectionOverrides, form)
				if c.checkForm(r, form, withFragment, v, overrides) != overrides {
					t.Fatalf("signature over %s%s%s: accepted=%v with overrides=%v", base, path, ConnectionOverrides, !overrides, overrides)
				}
			}
			if c.checkForm(r, form, sign(token+"x", testPublicURL+path, form), v, overrides) {
				t.Fatal("another token's signature accepted")
			}
			if c.checkForm(r, form, sign(token, "https://pod.internal"+path, form), v, overrides) {
				t.Fatal("a signature over another host accepted")
			}
			if c.checkForm(r, form, sign(token, testPublicURL+path+"#rc=5", form), v, overrides) {
				t.Fatal("a signature over another fragment accepted")
			}
		}

		for _, base := range []string{"wss://voice.example.test", "wss://voice.example.test:443", testPublicURL, "https://voice.example.test:443"} {
			sig := sign(token, base+path, nil)
			if !c.checkUpgrade(path, sig, v) {
				t.Fatalf("upgrade signed over %s%s refused", base, path)
			}
			if c.checkUpgrade(path, flipChar(sig, flip), v) {
				t.Fatal("altered upgrade signature accepted")
			}
		}
		if !other.checkUpgrade(path, sign(token, "ws://demo.local:8080"+path, nil), v) {
			t.Fatal("upgrade over ws:// with an http public URL refused")
		}
		if c.checkUpgrade(path, sign(token+"x", "wss://voice.example.test"+path, nil), v) {
			t.Fatal("another token's upgrade signature accepted")
		}
		if c.checkUpgrade(path, sign(token, "ws://pod.internal"+path, nil), v) {
			t.Fatal("an upgrade signed over another host accepted")
		}
		signsParams := false // params that add nothing to the signed string ("=") do not count
		for k, vs := range form {
			signsParams = signsParams || k+vs[0] != ""
		}
		if signsParams && c.checkUpgrade(path, sign(token, "wss://voice.example.test"+path, form), v) {
			t.Fatal("an upgrade signed with params accepted")
		}
	})
}

// FuzzSignatureCheckerMatchesRequestValidator asserts that the signature
// checker accepts exactly what twilio-go's RequestValidator accepts, for
// any public URL, request URI, form and tokens (differential, in
// signature_test.go).
func FuzzSignatureCheckerMatchesRequestValidator(f *testing.F) {
	f.Add(testPublicURL, VoicePath, "CallSid=CA1&Caller=%2B1&Digits=1234", "12345", "", uint(3))
	f.Add("https://voice.example.test:443", RecordingPath+"?to=%2B1", "Reason=x&ReasonConferenceEnded=y", "t", "u", uint(27))
	f.Add("http://demo.local:8080", "/twilio/stream/"+fuzzAccount, "", "tok", "", uint(0))
	f.Add("https://[::1]:8443", "/a%2Fb?x=%zz", "a=&a=1&%C3%A9=%E2%9C%93", "\x00\xff", "", uint(1))
	f.Fuzz(func(t *testing.T, publicURL, uri, query, token, token2 string, flip uint) {
		form, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		tokens := []string{token}
		if token2 != "" {
			tokens = append(tokens, token2)
		}
		differential(t, publicURL, uri, form, tokens, flip)
	})
}

// flipChar changes the character at i (mod len) of a base64 signature to
// another base64 character.
func flipChar(sig string, i uint) string {
	if sig == "" {
		return "x"
	}
	b := []byte(sig)
	k := int(i % uint(len(b)))
	if b[k] == 'A' {
		b[k] = 'B'
	} else {
		b[k] = 'A'
	}
	return string(b)
}

// FuzzStreamMessages feeds arbitrary opening messages to the stream's
// opening reader and to the bridge's media classifier. When a start message
// is accepted, what is relayed to the agent is JSON that carries no stream
// token under any spelling, decodes (by this server's reader, and by
// encoding/json's case-insensitive struct decoding, as a Go agent would) to
// exactly the values the server checked, and is relayed unchanged if read
// again.
func FuzzStreamMessages(f *testing.F) {
	connected := `{"event":"connected","protocol":"Call","version":"1.0.0"}`
	start := `{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"streamSid":"MZ1","accountSid":"` + fuzzAccount +
		`","callSid":"CA1","tracks":["inbound"],"customParameters":{"from":"+15550001","to":"+14155550100","token":"v1.1.abc"},` +
		`"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}`
	f.Add([]byte(connected), []byte(start))
	f.Add([]byte(start), []byte(nil))
	f.Add([]byte(`{"event":"media","sequenceNumber":"3","streamSid":"MZ1","media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"AAAA"}}`), []byte(start))
	f.Add([]byte(`{"event":"stop","sequenceNumber":"5","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}}`), []byte(nil))
	f.Add([]byte(`{"event":"mark","sequenceNumber":"4","streamSid":"MZ1","mark":{"name":"media"}}`), []byte(nil))
	f.Add([]byte(`{"event":"dtmf","streamSid":"MZ1","dtmf":{"track":"inbound_track","digit":"1"}}`), []byte(nil))
	f.Add([]byte(connected), []byte(`{"event":"start","start":{"accountSid":"AC1","callSid":"CA1","customParameters":{"Token":"a","\u0074oken":"b","to":"x"}},"Start":{}}`))
	f.Add([]byte(connected), []byte(`{"event":"start","start":{"accountSid":"AC1","callSid":"CA1","customParameters":{"TOKEN":"a"}},"start":{"accountSid":"AC2","callSid":"CA2"}}`))
	f.Add([]byte(connected), []byte(`{"event":"start","start":{"accountSid":"AC1","callSid":"CA1","customParameters":null}}`))
	f.Add([]byte(`{"event" : "media", "event":"stop"}`), []byte(`null`))
	f.Add([]byte(`[]`), []byte(`{"event":1}`))

	f.Fuzz(func(t *testing.T, first, second []byte) {
		for _, m := range [][]byte{first, second} {
			top, event, err := decodeMessage(m)
			if isMediaFrame(m) != isMediaFrame(bytes.Clone(m)) {
				t.Fatal("isMediaFrame is not deterministic")
			}
			if err == nil && event == "media" && top != nil && !isMediaFrame(m) {
				t.Fatalf("a media message is not classified as media: %q", m)
			}
		}

		var o openingReader
		done, err := o.feed(first)
		if err == nil && !done {
			done, err = o.feed(second)
		}
		if err != nil || !done {
			return
		}
		if len(o.relay) == 0 || len(o.relay) > 2 {
			t.Fatalf("%d opening messages relayed", len(o.relay))
		}
		relayed := o.relay[len(o.relay)-1]
		if !json.Valid(relayed) {
			t.Fatalf("relayed start is not JSON: %q", relayed)
		}
		if o.start.Start.AccountSID == "" || o.start.Start.CallSID == "" {
			t.Fatal("start accepted without accountSid or callSid")
		}

		// Read again by this server: the same values, and the same bytes.
		var again openingReader
		if done, err := again.feed(relayed); err != nil || !done {
			t.Fatalf("relayed start does not read again: %v: %q", err, relayed)
		}
		if !bytes.Equal(again.relay[0], relayed) {
			t.Fatalf("relaying is not stable:\n%q\n%q", relayed, again.relay[0])
		}
		want := withoutTokens(o.start.Start.CustomParameters)
		if again.start.Start.AccountSID != o.start.Start.AccountSID || again.start.Start.CallSID != o.start.Start.CallSID ||
			again.start.Start.StreamSID != o.start.Start.StreamSID || !sameParams(again.start.Start.CustomParameters, want) {
			t.Fatalf("relayed start reads differently: %+v vs %+v", again.start, o.start)
		}

		// Read by a Go agent (case-insensitive struct fields): the same values, no token.
		var agent startMessage
		if err := json.Unmarshal(relayed, &agent); err != nil {
			t.Fatalf("relayed start does not decode: %v", err)
		}
		if agent.Event != "start" || agent.Start.AccountSID != o.start.Start.AccountSID || agent.Start.CallSID != o.start.Start.CallSID ||
			agent.Start.StreamSID != o.start.Start.StreamSID || !sameParams(agent.Start.CustomParameters, want) {
			t.Fatalf("a Go agent reads other values: %+v vs %+v", agent, o.start)
		}
		for k := range agent.Start.CustomParameters {
			if strings.EqualFold(k, paramToken) {
				t.Fatalf("token relayed as %q: %q", k, relayed)
			}
		}
		// Read generically (exact keys, as most other languages do): no token.
		var generic map[string]any
		if err := json.Unmarshal(relayed, &generic); err != nil {
			t.Fatal(err)
		}
		st, _ := generic["start"].(map[string]any)
		cp, _ := st["customParameters"].(map[string]any)
		for k := range cp {
			if strings.EqualFold(k, paramToken) {
				t.Fatalf("token relayed as %q: %q", k, relayed)
			}
		}
	})
}

func withoutTokens(p map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range p {
		if !strings.EqualFold(k, paramToken) {
			out[k] = v
		}
	}
	return out
}

// sameParams compares parameter maps, nil and empty being the same.
func sameParams(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
