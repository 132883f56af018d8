package callsim

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/twilio/twilio-go/client"
)

const (
	testToken   = "secretToken0123456789"
	testAccount = "AC0123456789abcdef0123456789abcdef"
	publicHost  = "voice.example.com"
	publicBase  = "https://" + publicHost
	voiceURL    = publicBase + "/voice"
	streamURL   = "wss://" + publicHost + "/stream"
	callbackURL = publicBase + "/recording"
)

// signedForm is one webhook request as the fake app saw it.
type signedForm struct {
	method string
	form   url.Values
	sigOK  bool // twilio-go's RequestValidator accepted the signature
}

// fakeApp plays a Twilio voice application behind https://voice.example.com.
// It checks every signature with twilio-go's own RequestValidator, so the
// simulator's signing is checked by independent code.
type fakeApp struct {
	token       string
	twiml       string
	wsSignedURL string // the URL the upgrade signature is checked against
	// markOnStart: send a mark after start and close the stream once the
	// mark comes back (the "agent hangs up" path).
	markOnStart bool
	// firstMedia, when set, is closed when the first caller frame arrives.
	firstMedia chan struct{}
	// handler, when set, replaces the app entirely.
	handler http.Handler
	// voiceStatus, when set, is the voice webhook's status (with no TwiML).
	voiceStatus int
	// pages are further TwiML documents by path (for <Redirect> and the
	// fallback URL), answered to GET and POST.
	pages map[string]string
	// recordingAnswers are the statuses of the first recording callbacks,
	// in order; later ones get 204.
	recordingAnswers []int

	srv *httptest.Server

	mu         sync.Mutex
	voice      []signedForm
	recordings []signedForm
	upgrades   int
	wsSigOK    bool
	msgs       [][]byte // stream messages received, in order
	pageHits   []pageHit
}

// pageHit is one request for a page.
type pageHit struct {
	path string // with the query
	signedForm
}

// newFakeApp starts the app; configure runs before the server starts, so
// handlers read the settings without racing.
func newFakeApp(t testing.TB, twiml string, configure ...func(*fakeApp)) *fakeApp {
	t.Helper()
	a := &fakeApp{token: testToken, twiml: twiml, wsSignedURL: streamURL}
	for _, f := range configure {
		f(a)
	}
	if a.handler != nil {
		a.srv = httptest.NewServer(a.handler)
		t.Cleanup(a.srv.Close)
		return a
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /voice", a.handleVoice)
	mux.HandleFunc("/recording", a.handleRecording)
	mux.HandleFunc("GET /stream", a.handleStream)
	for path := range a.pages {
		mux.HandleFunc(path, a.handlePage)
	}
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

// rewrite delivers requests for the public host to the test server.
func (a *fakeApp) rewrite(u *url.URL) *url.URL {
	if u.Host != publicHost {
		return u
	}
	target, _ := url.Parse(a.srv.URL)
	switch u.Scheme {
	case "https":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "ws"
	}
	u.Host = target.Host
	return u
}

func (a *fakeApp) call() Call {
	return Call{
		VoiceURL:    voiceURL,
		AuthToken:   testToken,
		AccountSID:  testAccount,
		From:        "+14155550100",
		To:          "+14155550199",
		FramePeriod: -1,
		RewriteURL:  a.rewrite,
	}
}

func (a *fakeApp) handleVoice(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rv := client.NewRequestValidator(a.token)
	ok := rv.ValidateBody(publicBase+r.URL.RequestURI(), body, r.Header.Get("X-Twilio-Signature"))
	form, _ := url.ParseQuery(string(body))
	a.mu.Lock()
	a.voice = append(a.voice, signedForm{method: r.Method, form: form, sigOK: ok})
	a.mu.Unlock()
	if !ok {
		http.Error(w, "invalid signature", http.StatusForbidden)
		return
	}
	if a.voiceStatus != 0 {
		http.Error(w, "failing on purpose", a.voiceStatus)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	_, _ = io.WriteString(w, a.twiml)
}

// handlePage answers a page's TwiML to a correctly signed GET or POST.
func (a *fakeApp) handlePage(w http.ResponseWriter, r *http.Request) {
	sf := a.checkSigned(r)
	a.mu.Lock()
	a.pageHits = append(a.pageHits, pageHit{path: r.URL.RequestURI(), signedForm: sf})
	a.mu.Unlock()
	if !sf.sigOK {
		http.Error(w, "invalid signature", http.StatusForbidden)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	_, _ = io.WriteString(w, a.pages[r.URL.Path])
}

// checkSigned reads a webhook request and checks its signature with
// twilio-go's RequestValidator: over the URL and the form for POST, over
// the URL (its query holds the parameters) for GET.
func (a *fakeApp) checkSigned(r *http.Request) signedForm {
	rv := client.NewRequestValidator(a.token)
	sig := r.Header.Get("X-Twilio-Signature")
	full := publicBase + r.URL.RequestURI()
	if r.Method == http.MethodGet {
		return signedForm{method: r.Method, form: r.URL.Query(), sigOK: rv.Validate(full, map[string]string{}, sig)}
	}
	body, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(body))
	return signedForm{method: r.Method, form: form, sigOK: rv.ValidateBody(full, body, sig)}
}

// hits returns the page requests so far.
func (a *fakeApp) hits() []pageHit {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]pageHit(nil), a.pageHits...)
}

func (a *fakeApp) handleRecording(w http.ResponseWriter, r *http.Request) {
	sf := a.checkSigned(r)
	a.mu.Lock()
	a.recordings = append(a.recordings, sf)
	status := http.StatusNoContent
	if n := len(a.recordings); n <= len(a.recordingAnswers) {
		status = a.recordingAnswers[n-1]
	}
	a.mu.Unlock()
	if !sf.sigOK {
		http.Error(w, "invalid signature", http.StatusForbidden)
		return
	}
	w.WriteHeader(status)
}

// handleStream plays the application side of a Media Stream: it echoes every
// caller frame, sends a clear after the first one, and closes the stream
// after stop (or, with markOnStart, once its mark is echoed).
func (a *fakeApp) handleStream(w http.ResponseWriter, r *http.Request) {
	rv := client.NewRequestValidator(a.token)
	ok := rv.Validate(a.wsSignedURL, map[string]string{}, r.Header.Get("X-Twilio-Signature"))
	a.mu.Lock()
	a.upgrades++
	a.wsSigOK = ok
	a.mu.Unlock()
	if !ok {
		http.Error(w, "invalid signature", http.StatusForbidden)
		return
	}
	up := websocket.Upgrader{}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()

	closeStream := func() {
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
		_ = conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	}
	var sid string
	frames := 0
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		a.mu.Lock()
		a.msgs = append(a.msgs, data)
		a.mu.Unlock()
		var m struct {
			Event     string `json:"event"`
			StreamSid string `json:"streamSid"`
			Media     struct {
				Payload string `json:"payload"`
			} `json:"media"`
		}
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		switch m.Event {
		case "start":
			sid = m.StreamSid
			if a.markOnStart {
				_ = conn.WriteJSON(map[string]any{"event": "mark", "streamSid": sid, "mark": map[string]string{"name": "greeting"}})
			}
		case "media":
			frames++
			if frames == 1 && a.firstMedia != nil {
				close(a.firstMedia)
			}
			_ = conn.WriteJSON(map[string]any{"event": "media", "streamSid": sid, "media": map[string]string{"payload": m.Media.Payload}})
			if frames == 1 {
				_ = conn.WriteJSON(map[string]any{"event": "clear", "streamSid": sid})
			}
		case "mark":
			if a.markOnStart {
				closeStream()
				return
			}
		case "stop":
			closeStream()
			return
		}
	}
}

// snapshot returns copies of what the app recorded.
func (a *fakeApp) snapshot() (voice, recordings []signedForm, upgrades int, wsSigOK bool, msgs []map[string]any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, raw := range a.msgs {
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		msgs = append(msgs, m)
	}
	return append([]signedForm(nil), a.voice...), append([]signedForm(nil), a.recordings...), a.upgrades, a.wsSigOK, msgs
}

// rawMessages returns the stream messages exactly as received.
func (a *fakeApp) rawMessages() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, len(a.msgs))
	for i, m := range a.msgs {
		out[i] = string(m)
	}
	return out
}
