package webhookserver

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	. "github.com/onsi/gomega"
)

// twimlDoc is a TwiML <Response> as the tests read it (with encoding/xml:
// twilio-go's attribute order varies, so XML is never string-compared).
type twimlDoc struct {
	XMLName xml.Name `xml:"Response"`
	Start   *struct {
		Recording *struct {
			Channels string `xml:"channels,attr"`
			Track    string `xml:"track,attr"`
			Callback string `xml:"recordingStatusCallback,attr"`
			Method   string `xml:"recordingStatusCallbackMethod,attr"`
			Events   string `xml:"recordingStatusCallbackEvent,attr"`
		} `xml:"Recording"`
	} `xml:"Start"`
	Connect *struct {
		Stream *struct {
			URL        string `xml:"url,attr"`
			Parameters []struct {
				Name  string `xml:"name,attr"`
				Value string `xml:"value,attr"`
			} `xml:"Parameter"`
		} `xml:"Stream"`
	} `xml:"Connect"`
	Say      []string  `xml:"Say"`
	Hangup   *struct{} `xml:"Hangup"`
	Dial     []string  `xml:"Dial"`
	Redirect []struct {
		URL    string `xml:",chardata"`
		Method string `xml:"method,attr"`
	} `xml:"Redirect"`
	// Order lists the top-level verbs in document order.
	Order []string `xml:"-"`
}

// parseTwiML decodes doc and records its verb order.
func parseTwiML(t testing.TB, doc string) twimlDoc {
	t.Helper()
	var d twimlDoc
	if err := xml.Unmarshal([]byte(doc), &d); err != nil {
		t.Fatalf("TwiML does not parse: %v\n%s", err, doc)
	}
	dec := xml.NewDecoder(strings.NewReader(doc))
	depth := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("TwiML does not parse: %v", err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if depth == 1 {
				d.Order = append(d.Order, e.Name.Local)
			}
			depth++
		case xml.EndElement:
			depth--
		}
	}
	return d
}

// params returns the <Stream>'s parameters as a map.
func (d twimlDoc) params() map[string]string {
	out := map[string]string{}
	if d.Connect == nil || d.Connect.Stream == nil {
		return out
	}
	for _, p := range d.Connect.Stream.Parameters {
		out[p.Name] = p.Value
	}
	return out
}

// call is one simulated inbound call: the voice webhook's answer and, once
// opened, the media stream Twilio would hold.
type call struct {
	h         *harness
	acct      account
	callSID   string
	from, to  string
	streamSID string
	twiml     twimlDoc
	// streamURL is the public URL the stream is opened at (signed over it,
	// delivered to the test server): the TwiML's unless a test changes it.
	streamURL string
	conn      *websocket.Conn
	seq       int
	sent      [][]byte // frames sent after the opening, in order
	opening   [][]byte // connected and start, as sent
}

// answer POSTs the voice webhook for a new call and parses the TwiML.
func (h *harness) answer(acct account, from, to string) *call {
	h.t.Helper()
	c := &call{h: h, acct: acct, callSID: newCallSID(), from: from, to: to, streamSID: "MZ" + newCallSID()[2:]}
	resp := h.post(VoicePath, voiceForm(acct.sid, c.callSID, from, to), acct.token)
	body := readBody(h.t, resp)
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("voice webhook: %d %s", resp.StatusCode, body)
	}
	c.twiml = parseTwiML(h.t, body)
	if c.twiml.Connect != nil && c.twiml.Connect.Stream != nil {
		c.streamURL = c.twiml.Connect.Stream.URL
	}
	return c
}

// dialStream opens a media stream WebSocket on the legacy path (no account
// in the URL), signed with token over it (an empty token: no signature).
func (h *harness) dialStream(token string) (*websocket.Conn, *http.Response, error) {
	return h.dialStreamURL(testStreamURL, token)
}

// dialStreamFor opens a media stream WebSocket at acct's stream URL, signed
// with acct's token, as Twilio does for a call of acct.
func (h *harness) dialStreamFor(acct account) (*websocket.Conn, *http.Response, error) {
	return h.dialStreamURL(testStreamURL+"/"+acct.sid, acct.token)
}

// dialStreamURL opens the media stream WebSocket at the public URL
// publicURL (delivered to the test server), signed over it with token (an
// empty token: no signature).
func (h *harness) dialStreamURL(publicURL, token string) (*websocket.Conn, *http.Response, error) {
	u, err := url.Parse(publicURL)
	if err != nil {
		return nil, nil, err
	}
	hdr := http.Header{}
	if token != "" {
		hdr.Set(signatureHeader, sign(token, publicURL, nil))
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	return d.Dial("ws://"+h.addr+u.RequestURI(), hdr)
}

// open dials the stream and sends connected and start with the TwiML's
// parameters (customParameters may override them).
func (c *call) open(override map[string]string) {
	c.h.t.Helper()
	params := c.twiml.params()
	for k, v := range override {
		params[k] = v
	}
	b, _ := json.Marshal(c.startMessage(params))
	c.openWith(b)
}

// startMessage is the start message Twilio would send with params.
func (c *call) startMessage(params map[string]string) map[string]any {
	return map[string]any{
		"event": "start", "sequenceNumber": c.nextSeq(), "streamSid": c.streamSID,
		"start": map[string]any{
			"streamSid": c.streamSID, "accountSid": c.acct.sid, "callSid": c.callSID,
			"tracks": []string{"inbound"}, "customParameters": params,
			"mediaFormat": map[string]any{"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
		},
	}
}

// openWith dials the stream and sends connected and then start as given.
func (c *call) openWith(start []byte) {
	t := c.h.t
	t.Helper()
	conn, resp, err := c.h.dialStreamURL(c.streamURL, c.acct.token)
	if err != nil {
		t.Fatalf("dial stream: %v (response %v)", err, resp)
	}
	c.conn = conn
	c.sendRaw([]byte(`{"event":"connected","protocol":"Call","version":"1.0.0"}`), true)
	c.sendRaw(start, true)
}

func (c *call) nextSeq() string { c.seq++; return fmt.Sprint(c.seq) }

func (c *call) sendRaw(b []byte, opening bool) {
	c.h.t.Helper()
	if err := c.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		c.h.t.Fatalf("write to stream: %v", err)
	}
	if opening {
		c.opening = append(c.opening, b)
	} else {
		c.sent = append(c.sent, b)
	}
}

// mediaFrame is a Twilio media message with a payload of n bytes.
func (c *call) mediaFrame(chunk, n int) []byte {
	payload := bytes.Repeat([]byte{byte('A' + chunk%26)}, n)
	return []byte(fmt.Sprintf(`{"event":"media","sequenceNumber":"%s","streamSid":"%s","media":{"track":"inbound","chunk":"%d","timestamp":"%d","payload":"%s"}}`,
		c.nextSeq(), c.streamSID, chunk, chunk*20, payload))
}

func (c *call) sendMedia(chunk int) { c.sendRaw(c.mediaFrame(chunk, 216), false) }

func (c *call) sendDTMF(digit string) {
	c.sendRaw([]byte(fmt.Sprintf(`{"event":"dtmf","sequenceNumber":"%s","streamSid":"%s","dtmf":{"track":"inbound_track","digit":"%s"}}`, c.nextSeq(), c.streamSID, digit)), false)
}

func (c *call) sendMark(name string) {
	c.sendRaw([]byte(fmt.Sprintf(`{"event":"mark","sequenceNumber":"%s","streamSid":"%s","mark":{"name":"%s"}}`, c.nextSeq(), c.streamSID, name)), false)
}

// hangUp sends stop and closes the WebSocket as Twilio does when the caller hangs up.
func (c *call) hangUp() {
	c.sendRaw([]byte(fmt.Sprintf(`{"event":"stop","sequenceNumber":"%s","streamSid":"%s","stop":{"accountSid":"%s","callSid":"%s"}}`, c.nextSeq(), c.streamSID, c.acct.sid, c.callSID)), false)
	_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(5*time.Second))
}

// read returns the next text frame from the server, or the close error.
func (c *call) read() ([]byte, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, b, err := c.conn.ReadMessage()
	return b, err
}

// readUntilClosed discards frames until the server closes the stream and
// returns the close frame it sent (nil if the connection dropped without one).
func (c *call) readUntilClosed() *websocket.CloseError {
	for {
		_, err := c.read()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce
		}
		return nil
	}
}

// testAgent is a WebSocket agent speaking Media Streams, on its own loopback server.
type testAgent struct {
	t     testing.TB
	srv   *httptest.Server
	url   string
	conns chan *agentConn
	stall bool // never read: a stuck agent
}

// agentConn is one stream an agent accepted.
type agentConn struct {
	conn     *websocket.Conn
	frames   chan []byte // text frames received, in order
	closed   chan struct{}
	closeErr error // why reading ended; valid after closed
}

func newTestAgent(t testing.TB, stall bool) *testAgent {
	a := &testAgent{t: t, conns: make(chan *agentConn, 16), stall: stall}
	up := websocket.Upgrader{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		ac := &agentConn{conn: conn, frames: make(chan []byte, 100_000), closed: make(chan struct{})}
		a.conns <- ac
		if a.stall {
			if tcp, ok := conn.NetConn().(*net.TCPConn); ok {
				_ = tcp.SetReadBuffer(4096)
			}
			return
		}
		go func() {
			defer close(ac.closed)
			for {
				_, b, err := conn.ReadMessage()
				if err != nil {
					ac.closeErr = err
					return
				}
				ac.frames <- b
			}
		}()
	}))
	a.url = "ws://" + a.srv.Listener.Addr().String() + "/media"
	t.Cleanup(a.srv.Close)
	return a
}

// accept waits for the next stream the agent accepted.
func (a *testAgent) accept(g Gomega) *agentConn {
	var ac *agentConn
	g.Eventually(a.conns, 30*time.Second).Should(Receive(&ac))
	return ac
}

// next returns the agent's next received frame.
func (ac *agentConn) next(g Gomega) []byte {
	var b []byte
	g.Eventually(ac.frames, 30*time.Second).Should(Receive(&b))
	return b
}

func (ac *agentConn) send(t testing.TB, b []byte) {
	t.Helper()
	if err := ac.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatalf("agent write: %v", err)
	}
}

// waitClosed waits until the agent's stream ended and returns why.
func (ac *agentConn) waitClosed(g Gomega) error {
	g.Eventually(ac.closed, 30*time.Second).Should(BeClosed())
	return ac.closeErr
}
