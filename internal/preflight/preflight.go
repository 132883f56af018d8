// Package preflight is the operator's end-to-end check of the public voice
// path before it points numbers at it: a voice webhook request signed exactly
// as Twilio signs one, sent to the URL numbers would be pointed at, that must
// come back with TwiML streaming the call to the webhook server for the
// number's TwilioPhoneNumber. The request carries FormField, inside the
// signed form, so only a holder of the account's auth token can mark one; the
// webhook server answers it like a call, but with StreamToken instead of a
// stream token (no stream can be opened with it), does not count it as a
// call, and reports what it found in the Header* response headers.
package preflight

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/loquent/twilio-voice-operator/internal/twiliosig"
)

// Protocol between the manager (and kubectl twilio) and the webhook server.
const (
	// FormField marks a voice webhook request as a preflight (value "1").
	FormField = "TwilioVoiceOperatorPreflight"
	// HeaderOutcome is the webhook server's outcome for the request: "ok"
	// when it would stream the call, else the hang-up outcome
	// (hangup_unknown_number, hangup_disabled, hangup_no_agent,
	// hangup_account_mismatch). Its presence shows that a
	// twilio-voice-operator webhook server answered.
	HeaderOutcome = "X-Twilio-Voice-Operator-Preflight"
	// HeaderRoute is the namespace/name of the TwilioPhoneNumber the number
	// routes through.
	HeaderRoute = "X-Twilio-Voice-Operator-Route"
	// HeaderAgent is the result of opening the agent's WebSocket (a handshake,
	// closed at once): "ok", or "failed: " and why (agent_refused or
	// agent_unreachable and the error). Absent when the outcome is not ok.
	HeaderAgent = "X-Twilio-Voice-Operator-Agent"
	// StreamToken is the stream token in a preflight answer; the stream
	// endpoint never accepts it.
	StreamToken = "preflight"
	// OutcomeOK is HeaderOutcome's value for a number that would be streamed.
	OutcomeOK = "ok"
	// AgentOK is HeaderAgent's value for a successful handshake.
	AgentOK = "ok"
)

// DefaultTimeout bounds one preflight (Twilio's own webhook timeout is 15 s).
const DefaultTimeout = 15 * time.Second

// Request is one preflight.
type Request struct {
	// VoiceURL is exactly the URL numbers are pointed at (it is signed as is).
	VoiceURL string
	// AccountSID and AuthToken are the account's; the request is signed with the token.
	AccountSID, AuthToken string
	// Number is the E.164 number the request calls.
	Number string
	// Object is the namespace/name of the TwilioPhoneNumber that must route the number.
	Object string
	// RewriteURL, when set, maps the public URL to the address the request is
	// delivered to (tests and local runs); the signature is over VoiceURL.
	RewriteURL func(string) string
}

// Failure is a preflight that did not prove the path. Pending marks
// failures that are expected for a while right after an account or number
// appears (the webhook server has not caught up with the published
// credentials or the number's route yet).
type Failure struct {
	Message string
	Pending bool
}

func (f *Failure) Error() string { return f.Message }

// AsFailure returns err as a *Failure.
func AsFailure(err error) (*Failure, bool) {
	var f *Failure
	ok := errors.As(err, &f)
	return f, ok
}

// Check runs one preflight with hc (nil: a client with DefaultTimeout that
// follows no redirects). It returns nil when the webhook server answered with
// TwiML that streams the call to itself for this number, routed through
// req.Object, and (when it tried) reached the agent; a *Failure otherwise.
func Check(ctx context.Context, hc *http.Client, req Request) error {
	if hc == nil {
		hc = &http.Client{
			Timeout:       DefaultTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	form := url.Values{
		"AccountSid": {req.AccountSID},
		"CallSid":    {newCallSID()},
		"From":       {req.Number},
		"To":         {req.Number},
		"Direction":  {"inbound"},
		"CallStatus": {"ringing"},
		"ApiVersion": {"2010-04-01"},
		FormField:    {"1"},
	}
	target := req.VoiceURL
	if req.RewriteURL != nil {
		target = req.RewriteURL(target)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		return &Failure{Message: fmt.Sprintf("preflight request to %s: %v", req.VoiceURL, err)}
	}
	hreq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hreq.Header.Set(twiliosig.SignatureHeader, twiliosig.Sign(req.AuthToken, req.VoiceURL, form))
	resp, err := hc.Do(hreq)
	if err != nil {
		return &Failure{Message: fmt.Sprintf("POST %s failed: %v", req.VoiceURL, err)}
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return &Failure{Message: fmt.Sprintf("POST %s: reading the answer: %v", req.VoiceURL, err)}
	}
	return judge(req, resp, body)
}

func judge(req Request, resp *http.Response, body []byte) error {
	outcome := resp.Header.Get(HeaderOutcome)
	switch {
	case resp.StatusCode == http.StatusForbidden:
		return &Failure{Pending: true, Message: fmt.Sprintf("POST %s answered 403 Forbidden: the webhook server does not (yet) hold account %s's published credentials, or its --public-url differs from this URL, which Twilio signs", req.VoiceURL, req.AccountSID)}
	case resp.StatusCode != http.StatusOK:
		return &Failure{Message: fmt.Sprintf("POST %s answered %s; Twilio would play an application error to callers", req.VoiceURL, resp.Status)}
	case outcome == "":
		return &Failure{Message: fmt.Sprintf("POST %s answered 200 without the %s header: it is not served by a twilio-voice-operator webhook server (check --public-url and the ingress)", req.VoiceURL, HeaderOutcome)}
	case outcome != OutcomeOK:
		return &Failure{Pending: true, Message: fmt.Sprintf("the webhook server at %s does not stream calls to %s yet (%s)", req.VoiceURL, req.Number, outcome)}
	}
	if route := resp.Header.Get(HeaderRoute); route != req.Object {
		return &Failure{Pending: true, Message: fmt.Sprintf("the webhook server at %s routes %s through %q, not %q", req.VoiceURL, req.Number, route, req.Object)}
	}
	if err := checkTwiML(body, req); err != nil {
		return &Failure{Message: fmt.Sprintf("the webhook server at %s answered unusable TwiML: %v", req.VoiceURL, err)}
	}
	if agent := resp.Header.Get(HeaderAgent); agent != "" && agent != AgentOK {
		return &Failure{Message: fmt.Sprintf("the webhook server at %s could not open the agent's WebSocket for %s: %s", req.VoiceURL, req.Number, agent)}
	}
	return nil
}

// checkTwiML requires a <Connect><Stream> to the webhook server's stream URL
// for the account, with the number as the "to" parameter.
func checkTwiML(body []byte, req Request) error {
	var doc struct {
		XMLName xml.Name
		Connect []struct {
			Stream []struct {
				URL    string `xml:"url,attr"`
				Params []struct {
					Name  string `xml:"name,attr"`
					Value string `xml:"value,attr"`
				} `xml:"Parameter"`
			} `xml:"Stream"`
		} `xml:"Connect"`
	}
	if err := xml.Unmarshal(body, &doc); err != nil {
		return err
	}
	if doc.XMLName.Local != "Response" || len(doc.Connect) != 1 || len(doc.Connect[0].Stream) != 1 {
		return errors.New("want one <Connect><Stream> in a <Response>")
	}
	stream := doc.Connect[0].Stream[0]
	want, err := StreamURL(req.VoiceURL, req.AccountSID)
	if err != nil {
		return err
	}
	if stream.URL != want {
		return fmt.Errorf("the stream goes to %q, want %q", stream.URL, want)
	}
	for _, p := range stream.Params {
		if p.Name == "to" && p.Value == req.Number {
			return nil
		}
	}
	return fmt.Errorf("the stream does not carry to=%s", req.Number)
}

// StreamURL is the stream URL the webhook server serving voiceURL gives for
// accountSID: same host, ws(s), /twilio/stream/{AccountSid}.
func StreamURL(voiceURL, accountSID string) (string, error) {
	u, err := url.Parse(voiceURL)
	if err != nil {
		return "", err
	}
	scheme := "wss"
	if u.Scheme == "http" {
		scheme = "ws"
	}
	base := strings.TrimSuffix(u.Path, "/twilio/voice")
	return scheme + "://" + u.Host + base + "/twilio/stream/" + accountSID, nil
}

func newCallSID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "CA" + hex.EncodeToString(b)
}
