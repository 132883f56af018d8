package callsim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

const (
	// DefaultFramePeriod paces media frames in real time (one 20 ms frame
	// every 20 ms).
	DefaultFramePeriod = 20 * time.Millisecond
	// DefaultWebhookTimeout mirrors Twilio's default total webhook timeout
	// (15 s, twilio-facts.md §7).
	DefaultWebhookTimeout = 15 * time.Second
	// DefaultCloseTimeout bounds the wait for the server's close frame after
	// the caller hung up.
	DefaultCloseTimeout = 5 * time.Second
	// MaxKeptPayloads bounds Result.ReceivedPayloads.
	MaxKeptPayloads = 64
)

// ErrWebhookFailed is wrapped by Place's error when a webhook answered with a
// non-2xx status, the wrong content type or an unusable body; Twilio would
// log 11200/12300 and try the fallback URL (which the simulator does not).
var ErrWebhookFailed = errors.New("webhook failed")

// Call describes one simulated inbound call. Only VoiceURL, AuthToken and
// AccountSID are required; the zero value of every other field has a useful
// default. Place does not modify the Call.
type Call struct {
	// VoiceURL is the number's effective voice URL (https://, or http:// for
	// local runs). It is the URL that is signed, exactly as given.
	VoiceURL string
	// AuthToken is the token of the account that owns the number; every
	// request and the WebSocket upgrade are signed with it.
	AuthToken string
	// AccountSID is sent as AccountSid and in the stream's start/stop.
	AccountSID string
	// From and To are the caller and the called number (E.164).
	From, To string
	// CallSID is generated ("CA" + 32 hex digits) when empty.
	CallSID string
	// MediaFrames is the number of caller media frames to send (20 ms each).
	// The caller hangs up after the last one.
	MediaFrames int
	// FramePeriod paces the media frames: 0 means DefaultFramePeriod (real
	// time); a negative value sends them as fast as possible (benchmarks).
	FramePeriod time.Duration
	// ToneHz is the frequency of the caller's audio; 0 sends silence.
	ToneHz float64
	// DTMF lists digits (each one of 0-9, *, #) sent as dtmf events, spread
	// evenly between the media frames.
	DTMF []string
	// HTTPClient makes the webhook requests. nil means a client with
	// WebhookTimeout that does not follow redirects.
	HTTPClient *http.Client
	// Dialer opens the media stream. nil means a dialer with a 10 s handshake
	// timeout.
	Dialer *websocket.Dialer
	// RewriteURL maps a public URL to the address the request is delivered to
	// (e.g. https://voice.example.com → http://127.0.0.1:PORT). It receives a
	// copy and is applied to the voice URL, the stream URL and the recording
	// callback URL; signatures are always over the public URL. nil means use
	// the URLs as they are.
	RewriteURL func(*url.URL) *url.URL
	// WebhookTimeout bounds each webhook request; 0 means
	// DefaultWebhookTimeout.
	WebhookTimeout time.Duration
	// CloseTimeout bounds the wait for the server's close frame after the
	// caller sent stop; 0 means DefaultCloseTimeout.
	CloseTimeout time.Duration
}

// Result is what happened during one call. Place fills in as much as it got
// to, even when it returns an error.
type Result struct {
	CallSID   string
	StreamSID string // "MZ…", set once the stream is opened

	VoiceStatus int    // HTTP status answered by the voice webhook
	TwiML       string // body answered by the voice webhook
	// Verbs lists the TwiML's top-level verbs in document order. Only Start
	// (Recording), Connect (Stream), Say and Hangup are acted on.
	Verbs []string

	// Recording is the parsed <Start><Recording>, or nil.
	Recording *RecordingInstruction
	// StreamURL and Parameters are the parsed <Connect><Stream url> and its
	// <Parameter>s (Parameters is nil when there is no stream).
	StreamURL  string
	Parameters map[string]string
	// Say is the text of the <Say> verbs (joined by spaces) and Hangup
	// reports a <Hangup>, both as parsed, wherever they appear.
	Say    string
	Hangup bool

	// StreamHandshakeStatus is the HTTP status of the WebSocket handshake
	// (101 on success, 0 when no response was received).
	StreamHandshakeStatus int
	SentMedia             int
	SentDTMF              int
	ReceivedMedia         int
	MarksEchoed           int
	ClearsReceived        int
	// InvalidMessages counts server messages Twilio would reject: binary
	// frames (31950), unparsable JSON, unknown events or a wrong streamSid
	// (31924).
	InvalidMessages int
	// ReceivedPayloads keeps the first MaxKeptPayloads media payloads
	// (base64) received from the server; ReceivedAudioBytes counts the decoded
	// bytes of all of them.
	ReceivedPayloads   []string
	ReceivedAudioBytes int
	// SentAudioSHA256 and ReceivedAudioSHA256 are hex SHA-256 digests of all
	// decoded audio sent and received, so an echo can be checked end to end.
	SentAudioSHA256     string
	ReceivedAudioSHA256 string
	// StopSent reports that the caller hung up (stop was sent); ServerClosed
	// that the server closed the stream first.
	StopSent     bool
	ServerClosed bool
	// CloseCode is the code of the server's close frame (1006 when the
	// connection ended without one).
	CloseCode int

	RecordingSID            string // "RE…", set when a callback was due
	RecordingCallbackStatus int    // status answered by the callback (0 if none)
}

// Place places one inbound call as described by c and returns what happened.
//
// Steps: a signed POST of the voice webhook; parsing the TwiML; for a
// <Connect><Stream>, the media stream (see the package doc); then, if a
// <Start><Recording> named a recordingStatusCallback whose events include
// "completed" (the default), the signed recording status callback. A failed
// stream still ends the call normally, so the recording callback is posted
// and both errors are returned. Every network step honours ctx.
func Place(ctx context.Context, c Call) (Result, error) {
	c, err := c.withDefaults()
	if err != nil {
		return Result{}, err
	}
	res := Result{CallSID: c.CallSID}

	doc, err := postVoice(ctx, c, &res)
	if err != nil {
		return res, err
	}
	res.Verbs = doc.Verbs
	res.Recording = doc.Recording
	res.Say = doc.Say
	res.Hangup = doc.Hangup

	var errs []error
	if doc.Stream != nil {
		res.StreamURL = doc.Stream.URL
		res.Parameters = doc.Stream.Parameters
		if err := runStream(ctx, c, *doc.Stream, &res); err != nil {
			errs = append(errs, fmt.Errorf("media stream: %w", err))
		}
	}
	if ctx.Err() == nil && wantsCompletedCallback(doc.Recording) {
		if err := postRecording(ctx, c, *doc.Recording, &res); err != nil {
			errs = append(errs, fmt.Errorf("recording status callback: %w", err))
		}
	}
	return res, errors.Join(errs...)
}

// withDefaults validates c and returns a copy with defaults applied.
func (c Call) withDefaults() (Call, error) {
	u, err := url.Parse(c.VoiceURL)
	if err != nil {
		return c, fmt.Errorf("voice URL: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return c, fmt.Errorf("voice URL %q: must be an absolute http(s) URL", c.VoiceURL)
	}
	if c.AuthToken == "" {
		return c, errors.New("auth token is empty")
	}
	if c.AccountSID == "" {
		return c, errors.New("account SID is empty")
	}
	if c.MediaFrames < 0 {
		return c, fmt.Errorf("media frames %d: must not be negative", c.MediaFrames)
	}
	for _, d := range c.DTMF {
		if len(d) != 1 || !strings.Contains("0123456789*#", d) {
			return c, fmt.Errorf("DTMF digit %q: must be one of 0-9, * or #", d)
		}
	}
	if c.CallSID == "" {
		c.CallSID = newSID("CA")
	}
	if c.FramePeriod == 0 {
		c.FramePeriod = DefaultFramePeriod
	}
	if c.WebhookTimeout <= 0 {
		c.WebhookTimeout = DefaultWebhookTimeout
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{
			Timeout: c.WebhookTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	if c.Dialer == nil {
		c.Dialer = &websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	}
	return c, nil
}

// deliveryURL returns where a request for the public URL raw goes.
func (c Call) deliveryURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	u.Fragment, u.RawFragment = "", ""
	if c.RewriteURL != nil {
		cp := *u
		u = c.RewriteURL(&cp)
	}
	return u.String(), nil
}

// signedURL is the public URL as Twilio signs it: as configured, without a
// fragment (a fragment carries Twilio's connection overrides and is never
// sent; whether Twilio signs it is unconfirmed, twilio-facts.md §7).
func signedURL(raw string) string {
	if i := strings.IndexByte(raw, '#'); i >= 0 {
		return raw[:i]
	}
	return raw
}
