package callsim

import (
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	// maxTwiMLBytes is Twilio's TwiML document size limit (64 KB).
	maxTwiMLBytes = 64 << 10
	// userAgent is what Twilio's webhook requests carry.
	userAgent = "TwilioProxy/1.1"
)

// voiceParams are the parameters of the inbound-call voice webhook; the
// simulator sends them again with the fallback URL request and with every
// <Redirect>.
func voiceParams(c Call) url.Values {
	return url.Values{
		"CallSid":    {c.CallSID},
		"AccountSid": {c.AccountSID},
		"From":       {c.From},
		"To":         {c.To},
		"Caller":     {c.From},
		"Called":     {c.To},
		"CallStatus": {"ringing"},
		"Direction":  {"inbound"},
		"ApiVersion": {"2010-04-01"},
	}
}

// postVoice sends the inbound-call voice webhook and parses its TwiML.
func postVoice(ctx context.Context, c Call, res *Result) (twimlDoc, error) {
	a, doc, err := fetchTwiML(ctx, c, http.MethodPost, c.VoiceURL, voiceParams(c), "voice webhook")
	res.VoiceStatus = a.status
	res.TwiML = string(a.body)
	return doc, err
}

// fetchTwiML requests TwiML as Twilio does from a voice URL, a fallback URL
// or a <Redirect> (what names the request in errors): signed, with params;
// and accepts the answer as Twilio does: 2xx, text/xml or application/xml,
// at most 64 KB, a valid document. A refused answer's error wraps
// ErrWebhookFailed. The answer is returned as far as it was received.
func fetchTwiML(ctx context.Context, c Call, method, publicURL string, params url.Values, what string) (answer, twimlDoc, error) {
	resp, err := signedRequest(ctx, c, method, publicURL, params, maxTwiMLBytes)
	if err != nil {
		return resp, twimlDoc{}, fmt.Errorf("%s: %w", what, err)
	}
	if resp.status < 200 || resp.status > 299 {
		return resp, twimlDoc{}, fmt.Errorf("%s answered %d (Twilio error 11200): %w", what, resp.status, ErrWebhookFailed)
	}
	mt, _, _ := mime.ParseMediaType(resp.header.Get("Content-Type"))
	if mt != "text/xml" && mt != "application/xml" {
		return resp, twimlDoc{}, fmt.Errorf("%s answered content type %q, want text/xml (Twilio error 12300): %w", what, mt, ErrWebhookFailed)
	}
	if len(resp.body) > maxTwiMLBytes {
		return resp, twimlDoc{}, fmt.Errorf("%s answered more than %d bytes of TwiML: %w", what, maxTwiMLBytes, ErrWebhookFailed)
	}
	doc, err := parseTwiML(resp.body)
	if err != nil {
		return resp, twimlDoc{}, fmt.Errorf("%s: %w: %w", what, ErrWebhookFailed, err)
	}
	return resp, doc, nil
}

// wantsCompletedCallback reports whether r asks for a "completed" recording
// status callback. An empty event list means Twilio's default, completed
// only (twilio-facts.md §6.2). The simulator sends no in-progress or absent
// callbacks.
func wantsCompletedCallback(r *RecordingInstruction) bool {
	if r == nil || r.RecordingStatusCallback == "" {
		return false
	}
	return len(r.RecordingStatusCallbackEvent) == 0 || slices.Contains(r.RecordingStatusCallbackEvent, "completed")
}

// postRecording sends the recording status callback for a completed
// <Start><Recording>, retried per the connection overrides of the
// callback URL's fragment (sendWithOverrides); every attempt carries the
// same parameters (the same RecordingSid), as Twilio's retries do.
// RecordingChannels is always 2 and RecordingSource is
// StartCallRecordingTwiML: both are what third-party observations of
// <Start><Recording> report; neither is confirmed by a Twilio page.
func postRecording(ctx context.Context, c Call, r RecordingInstruction, res *Result) error {
	cb, err := url.Parse(r.RecordingStatusCallback)
	if err != nil || (cb.Scheme != "https" && cb.Scheme != "http") || cb.Host == "" {
		return fmt.Errorf("recordingStatusCallback %q: must be an absolute http(s) URL (Twilio warning 13256)", r.RecordingStatusCallback)
	}
	method := strings.ToUpper(r.RecordingStatusCallbackMethod)
	if method == "" {
		method = http.MethodPost
	}
	if method != http.MethodPost && method != http.MethodGet {
		return fmt.Errorf("recordingStatusCallbackMethod %q: must be GET or POST", r.RecordingStatusCallbackMethod)
	}

	res.RecordingSID = newSID("RE")
	mediaMillis := res.SentMedia * frameMillis
	duration := (mediaMillis + 999) / 1000
	start := time.Now().UTC().Add(-time.Duration(mediaMillis) * time.Millisecond)
	params := url.Values{
		"AccountSid":         {c.AccountSID},
		"CallSid":            {c.CallSID},
		"RecordingSid":       {res.RecordingSID},
		"RecordingUrl":       {"https://api.twilio.com/2010-04-01/Accounts/" + c.AccountSID + "/Recordings/" + res.RecordingSID},
		"RecordingStatus":    {"completed"},
		"RecordingDuration":  {strconv.Itoa(duration)},
		"RecordingChannels":  {"2"},
		"RecordingSource":    {"StartCallRecordingTwiML"},
		"RecordingStartTime": {start.Format(time.RFC1123Z)},
		"ErrorCode":          {"0"},
	}
	resp, attempts, err := sendWithOverrides(ctx, c, method, r.RecordingStatusCallback, params, 1<<10)
	res.RecordingCallbackStatus = resp.status
	res.RecordingCallbackAttempts = attempts
	return err
}

// answer is what a webhook answered; its body was read (up to a limit) and closed.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// signedRequest sends params to the public URL publicURL the way Twilio
// does: POST as a form body, or GET with params appended to the query (and
// the signature over the resulting URL with no params). It reads at most
// limit+1 bytes of the answer.
func signedRequest(ctx context.Context, c Call, method, publicURL string, params url.Values, limit int64) (answer, error) {
	signURL := signedURL(publicURL)
	var body io.Reader
	var sig string
	if method == http.MethodGet {
		sep := "?"
		if strings.Contains(signURL, "?") {
			sep = "&"
		}
		signURL += sep + params.Encode()
		sig = Sign(c.AuthToken, signURL, nil)
	} else {
		body = strings.NewReader(params.Encode())
		sig = Sign(c.AuthToken, signURL, params)
	}
	target, err := c.deliveryURL(signURL)
	if err != nil {
		return answer{}, fmt.Errorf("URL %q: %w", publicURL, err)
	}

	ctx, cancel := context.WithTimeout(ctx, c.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return answer{}, fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set(SignatureHeader, sig)
	req.Header.Set("User-Agent", userAgent)

	resp, err := c.HTTPClient.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: %w", method, publicURL, err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header}
	if a.body, err = io.ReadAll(io.LimitReader(resp.Body, limit+1)); err != nil {
		return a, fmt.Errorf("read answer of %s: %w", publicURL, err)
	}
	return a, nil
}

// postCallStatus sends the number's "completed" call status callback once
// the call has ended (Call.StatusCallback), retried per its connection
// overrides like the recording callback. The parameters are those of the
// voice webhook plus CallStatus completed, CallDuration (whole seconds of
// the media sent, at least 1) and Timestamp.
func postCallStatus(ctx context.Context, c Call, res *Result) error {
	cb, err := url.Parse(c.StatusCallback)
	if err != nil || (cb.Scheme != "https" && cb.Scheme != "http") || cb.Host == "" {
		return fmt.Errorf("StatusCallback %q: must be an absolute http(s) URL", c.StatusCallback)
	}
	method := strings.ToUpper(c.StatusCallbackMethod)
	if method == "" {
		method = http.MethodPost
	}
	if method != http.MethodPost && method != http.MethodGet {
		return fmt.Errorf("StatusCallbackMethod %q: must be GET or POST", c.StatusCallbackMethod)
	}
	params := voiceParams(c)
	params.Set("CallStatus", "completed")
	params.Set("CallDuration", strconv.Itoa(max(1, (res.SentMedia*frameMillis+999)/1000)))
	params.Set("Timestamp", time.Now().UTC().Format(time.RFC1123Z))
	resp, attempts, err := sendWithOverrides(ctx, c, method, c.StatusCallback, params, 1<<10)
	res.StatusCallbackStatus, res.StatusCallbackAttempts = resp.status, attempts
	return err
}
