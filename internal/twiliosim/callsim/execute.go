package callsim

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// execution runs a call's TwiML the way Twilio does: the verbs of a
// document one after the other, and the document a <Redirect> fetches in
// place of the rest of the current one. The call ends at a <Hangup>, a
// <Dial> (the simulator connects nobody), the end of a document, or a
// <Connect><Stream> the caller hung up during (stop sent after
// Call.MediaFrames). When the server ends the stream instead (it closes the
// WebSocket, refuses the handshake or the start), the call goes on with the
// verbs after </Connect> (twilio-facts.md §4.2).
type execution struct {
	c   Call
	res *Result
	// params are sent with every <Redirect>: the voice webhook's (Twilio
	// sends the call's parameters; that CallStatus stays "ringing" rather
	// than the call's status at the time is unconfirmed, and the simulator
	// keeps the voice webhook's).
	params    url.Values
	errs      []error // errors that did not end the call (a failed stream)
	says      []string
	redirects int
}

// run executes doc, fetched from docURL, and the documents it redirects to,
// until the call ends. An error ends the call.
func (x *execution) run(ctx context.Context, doc twimlDoc, docURL string) error {
	for {
		next, nextURL, err := x.runDoc(ctx, doc, docURL)
		if err != nil || next == nil {
			return err
		}
		doc, docURL = *next, nextURL
	}
}

// runDoc executes doc's verbs. It returns the document a <Redirect>
// fetched, and its URL, or nil when the call has ended.
func (x *execution) runDoc(ctx context.Context, doc twimlDoc, docURL string) (*twimlDoc, string, error) {
	res := x.res
	for _, st := range doc.steps {
		if err := ctx.Err(); err != nil {
			return nil, "", err
		}
		switch st.verb {
		case "Start":
			if st.recording == nil {
				continue // <Start><Stream> and the like are not simulated
			}
			if res.Recording != nil {
				return nil, "", errors.New("TwiML: a second <Start><Recording> in one call is not simulated")
			}
			res.Recording = st.recording
		case "Connect":
			if st.stream == nil {
				continue
			}
			if res.StreamURL != "" {
				return nil, "", errors.New("TwiML: a second <Connect><Stream> in one call is not simulated")
			}
			res.StreamURL = st.stream.URL
			res.Parameters = st.stream.Parameters
			if err := runStream(ctx, x.c, *st.stream, res); err != nil {
				x.errs = append(x.errs, fmt.Errorf("media stream: %w", err))
			}
			if ctx.Err() != nil || res.StopSent {
				return nil, "", nil // the caller hung up (or the call was abandoned)
			}
		case "Say":
			x.says = append(x.says, st.text)
			res.Say = strings.Join(x.says, " ")
		case "Hangup":
			res.Hangup = true
			return nil, "", nil
		case "Dial":
			res.Dialed = st.text
			return nil, "", nil
		case "Redirect":
			return x.redirect(ctx, st, docURL)
		}
	}
	return nil, "", nil
}

// redirect follows a <Redirect>: its URL, relative to the document's, is
// requested with its method, signed with the call's auth token and the
// call's parameters, and the TwiML it answers replaces the current document.
func (x *execution) redirect(ctx context.Context, st step, docURL string) (*twimlDoc, string, error) {
	if x.redirects >= MaxRedirects {
		return nil, "", fmt.Errorf("TwiML: more than %d <Redirect>s", MaxRedirects)
	}
	x.redirects++
	target, err := resolveURL(docURL, st.text)
	if err != nil {
		return nil, "", fmt.Errorf("<Redirect> to %q: %w", st.text, err)
	}
	x.res.Redirects = append(x.res.Redirects, target)
	_, next, err := fetchTwiML(ctx, x.c, st.method, target, x.params, "<Redirect> to "+target)
	if err != nil {
		return nil, "", err
	}
	return &next, target, nil
}

// resolveURL resolves ref (absolute, or relative to the URL of the
// document it appears in) to an absolute http(s) URL.
func resolveURL(base, ref string) (string, error) {
	b, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	r, err := url.Parse(ref)
	if err != nil {
		return "", err
	}
	abs := b.ResolveReference(r).String()
	if err := checkWebhookURL(abs); err != nil {
		return "", err
	}
	return abs, nil
}

// checkWebhookURL requires an absolute http(s) URL.
func checkWebhookURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q: must be an absolute http(s) URL", raw)
	}
	return nil
}
