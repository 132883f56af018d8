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
	// MaxRedirects bounds the <Redirect>s one call follows; the next one
	// fails the call. Twilio's own limit is unconfirmed (twilio-facts.md
	// does not give one).
	MaxRedirects = 10
)

// ErrWebhookFailed is wrapped by Place's error when a webhook answered with a
// non-2xx status, the wrong content type or an unusable body; Twilio would
// log 11200/12300 and try the fallback URL (the simulator does when
// Call.FallbackURL is set).
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
	// FallbackURL is the number's voice fallback URL: when the voice webhook
	// fails (no answer, a non-2xx status, the wrong content type, unusable
	// TwiML), it is requested, signed, with the voice webhook's parameters
	// plus ErrorCode and ErrorUrl, and its TwiML runs instead. Empty: no
	// fallback, the call fails. FallbackMethod is GET or POST (the default).
	FallbackURL    string
	FallbackMethod string
	// StatusCallback is the number's StatusCallback: when set, the call
	// posts the "completed" call status callback there once it has ended,
	// signed, retried per the URL fragment's connection overrides, as Twilio
	// does for a number's status callback (completed only).
	// StatusCallbackMethod is GET or POST (the default).
	StatusCallback       string
	StatusCallbackMethod string
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
	// copy and is applied to the voice URL, the fallback URL, <Redirect>
	// URLs, the stream URL and the recording callback URL; signatures are
	// always over the public URL. nil means use the URLs as they are.
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
	// UsedFallbackURL reports that the voice webhook failed and the call ran
	// the TwiML of Call.FallbackURL; FallbackStatus is the HTTP status the
	// fallback URL answered (0 when it was not requested or did not answer).
	UsedFallbackURL bool
	FallbackStatus  int
	// Verbs lists the top-level verbs of the call's first document (the
	// voice webhook's, or the fallback URL's) in document order. The call
	// runs its documents in order, as Twilio does, acting on Start
	// (Recording), Connect (Stream), Say, Hangup, Dial and Redirect; other
	// verbs are skipped.
	Verbs []string

	// Recording is the <Start><Recording> the call ran, or nil.
	Recording *RecordingInstruction
	// StreamURL and Parameters are the <Connect><Stream url> the call ran and
	// its <Parameter>s (Parameters is nil when there was no stream).
	StreamURL  string
	Parameters map[string]string
	// Say is the text of the <Say> verbs the call ran (joined by spaces);
	// Hangup reports that it ran a <Hangup>. Verbs after a <Connect><Stream>
	// run only when the server ended the stream (closed it, refused the
	// handshake or the start), not when the caller hung up.
	Say    string
	Hangup bool
	// Dialed is the number of the <Dial> the call ran (<Dial>N</Dial> or
	// <Dial><Number>N</Number></Dial>), which ends the simulated call.
	Dialed string
	// Redirects lists the absolute URLs of the <Redirect>s the call
	// followed, in order.
	Redirects []string

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
	RecordingCallbackStatus int    // status answered by the callback's last attempt (0 if none answered)
	// RecordingCallbackAttempts is how many times the callback was sent: more
	// than once when it failed and the connection overrides in its URL's
	// fragment asked for retries (see ParseOverrides).
	RecordingCallbackAttempts int
	// StatusCallbackStatus and StatusCallbackAttempts are the answer to the
	// call status callback and how many times it was sent (0 without
	// Call.StatusCallback).
	StatusCallbackStatus   int
	StatusCallbackAttempts int
}

// Place places one inbound call as described by c and returns what happened.
//
// Steps: a signed POST of the voice webhook (and when it fails, the fallback
// URL's request, if c has one); running the TwiML verb by verb, as Twilio
// does (see execution), with the media stream of a <Connect><Stream> (see
// the package doc) and the requests of <Redirect>s; then, once the call has
// ended, if a <Start><Recording> named a recordingStatusCallback whose
// events include "completed" (the default), the signed recording status
// callback. A failed stream or redirect still ends the call normally, so
// the recording callback is posted and every error is returned. A voice
// webhook failure the fallback URL made up for is not an error
// (Result.UsedFallbackURL reports it). Every network step honours ctx.
func Place(ctx context.Context, c Call) (Result, error) {
	c, err := c.withDefaults()
	if err != nil {
		return Result{}, err
	}
	res := Result{CallSID: c.CallSID}

	doc, docURL, err := answerCall(ctx, c, &res)
	if err != nil {
		return res, err
	}
	res.Verbs = doc.Verbs

	x := &execution{c: c, res: &res, params: voiceParams(c)}
	if err := x.run(ctx, doc, docURL); err != nil {
		x.errs = append(x.errs, err)
	}
	if ctx.Err() == nil && wantsCompletedCallback(res.Recording) {
		if err := postRecording(ctx, c, *res.Recording, &res); err != nil {
			x.errs = append(x.errs, fmt.Errorf("recording status callback: %w", err))
		}
	}
	if ctx.Err() == nil && c.StatusCallback != "" {
		if err := postCallStatus(ctx, c, &res); err != nil {
			x.errs = append(x.errs, fmt.Errorf("call status callback: %w", err))
		}
	}
	return res, errors.Join(x.errs...)
}

// answerCall gets the call's first document and the URL it came from: the
// voice webhook's, or when that fails and c has a FallbackURL, the fallback
// URL's. The fallback request carries the voice webhook's parameters plus
// ErrorCode and ErrorUrl, which twilio-facts.md §7 confirms Twilio sends.
// Unconfirmed, and chosen here: ErrorCode is always 11200 (Twilio may send
// 12100 or 12300 for unusable TwiML or the wrong content type); ErrorUrl is
// the voice URL as configured; the fallback is tried once, without the
// retries a connection override may ask for.
func answerCall(ctx context.Context, c Call, res *Result) (twimlDoc, string, error) {
	doc, err := postVoice(ctx, c, res)
	if err == nil {
		return doc, c.VoiceURL, nil
	}
	if c.FallbackURL == "" || ctx.Err() != nil {
		return twimlDoc{}, "", err
	}
	params := voiceParams(c)
	params.Set("ErrorCode", "11200")
	params.Set("ErrorUrl", c.VoiceURL)
	res.UsedFallbackURL = true
	a, doc, ferr := fetchTwiML(ctx, c, c.FallbackMethod, c.FallbackURL, params, "fallback URL")
	res.FallbackStatus = a.status
	if ferr != nil {
		return twimlDoc{}, "", errors.Join(err, ferr)
	}
	return doc, c.FallbackURL, nil
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
	if c.FallbackURL != "" {
		if err := checkWebhookURL(c.FallbackURL); err != nil {
			return c, fmt.Errorf("fallback URL: %w", err)
		}
	}
	switch m := strings.ToUpper(c.FallbackMethod); m {
	case "":
		c.FallbackMethod = http.MethodPost
	case http.MethodGet, http.MethodPost:
		c.FallbackMethod = m
	default:
		return c, fmt.Errorf("fallback method %q: must be GET or POST", c.FallbackMethod)
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
