package main

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/loquent/twilio-voice-operator/internal/twiliosim/callsim"
	"github.com/loquent/twilio-voice-operator/webhookserver"
)

// callers opens calls the way Twilio does. Through the bridge: the signed
// voice webhook, then the stream URL and parameters of its TwiML, a signed
// upgrade and connected + start. Through the relay: the same opening straight
// to the relay, which passes everything on to the agent.
type callers struct {
	name     string // "relay" or "bridge"
	addr     string // the server's host:port
	viaTwiML bool   // the bridge: answer the call first, dial the stream its TwiML names
	client   *http.Client
	dialer   *websocket.Dialer
}

var callSeq atomic.Int64

type answerDoc struct {
	Stream struct {
		URL    string `xml:"url,attr"`
		Params []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:"value,attr"`
		} `xml:"Parameter"`
	} `xml:"Connect>Stream"`
}

// answer posts the signed voice webhook for a call and returns the TwiML's
// stream URL and parameters (the per-call token among them).
func (c *callers) answer(callSID, to string) (string, map[string]string, error) {
	form := url.Values{
		"AccountSid": {accountSID}, "CallSid": {callSID}, "From": {"+15550000001"}, "To": {to},
		"CallStatus": {"ringing"}, "Direction": {"inbound"}, "ApiVersion": {"2010-04-01"},
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+c.addr+webhookserver.VoicePath, strings.NewReader(form.Encode()))
	if err != nil {
		return "", nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(callsim.SignatureHeader, callsim.Sign(authToken, publicURL+webhookserver.VoicePath, form))
	resp, err := c.client.Do(req)
	if err != nil {
		return "", nil, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return "", nil, fmt.Errorf("voice webhook: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", nil, fmt.Errorf("voice webhook: status %d", resp.StatusCode)
	}
	var doc answerDoc
	if err := xml.Unmarshal(body, &doc); err != nil || doc.Stream.URL == "" {
		return "", nil, fmt.Errorf("voice webhook answered no <Connect><Stream>: %.200s", body)
	}
	params := map[string]string{}
	for _, p := range doc.Stream.Params {
		params[p.Name] = p.Value
	}
	return doc.Stream.URL, params, nil
}

// dial opens call i's stream and sends connected and start.
func (c *callers) dial(i int) (*websocket.Conn, string, error) {
	callSID := fmt.Sprintf("CA%032x", callSeq.Add(1))
	streamSID := "MZ" + callSID[2:]
	target, params, hdr := "ws://"+c.addr+"/media", map[string]string{"from": "+15550000001", "to": number(i)}, http.Header{}
	if c.viaTwiML {
		streamURL, p, err := c.answer(callSID, number(i))
		if err != nil {
			return nil, "", err
		}
		u, err := url.Parse(streamURL)
		if err != nil {
			return nil, "", err
		}
		target, params = "ws://"+c.addr+u.RequestURI(), p
		hdr.Set(callsim.SignatureHeader, callsim.Sign(authToken, streamURL, nil))
	}
	conn, resp, err := c.dialer.Dial(target, hdr)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return nil, "", fmt.Errorf("dial %s: %w", target, err)
	}
	start, _ := json.Marshal(map[string]any{
		"event": "start", "sequenceNumber": "2", "streamSid": streamSID,
		"start": map[string]any{
			"streamSid": streamSID, "accountSid": accountSID, "callSid": callSID,
			"tracks": []string{"inbound"}, "customParameters": params,
			"mediaFormat": map[string]any{"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
		},
	})
	_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	for _, m := range [][]byte{[]byte(`{"event":"connected","protocol":"Call","version":"1.0.0"}`), start} {
		if err := conn.WriteMessage(websocket.TextMessage, m); err != nil {
			_ = conn.Close()
			return nil, "", err
		}
	}
	return conn, streamSID, nil
}

// run plays call i until the phase hangs up: paced media out, the echoes
// timed in, then stop and a close frame, and the wait for the far side's
// close.
func (c *callers) run(p *phase, conn *websocket.Conn, streamSID string) {
	defer p.wg.Done()
	defer func() { _ = conn.Close() }()
	fw := newFrameWriter()
	sending := make(chan struct{})
	go func() {
		defer close(sending)
		p.pace(conn, callerToAgent, func(seq int, at int64, measured bool) []byte { return fw.caller(streamSID, seq, at, measured) })
	}()
	reading := make(chan error, 1)
	go func() { reading <- p.receive(conn, agentToCaller) }() // round trips
	select {
	case err := <-reading:
		p.fail(fmt.Errorf("caller: stream ended before hang-up: %w", err))
		_ = conn.Close()
		<-sending
		return
	case <-p.hangup:
	}
	<-sending
	stop := fmt.Sprintf(`{"event":"stop","sequenceNumber":"%d","streamSid":"%s","stop":{"accountSid":"%s","callSid":"CA%s"}}`,
		p.maxFrames+3, streamSID, accountSID, streamSID[2:])
	_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := conn.WriteMessage(websocket.TextMessage, []byte(stop)); err != nil {
		p.fail(fmt.Errorf("caller: send stop: %w", err))
	}
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(writeTimeout))
	if err := <-reading; !normalClose(err) {
		p.fail(fmt.Errorf("caller: stream did not close cleanly: %w", err))
	}
}

// open sets up n calls, conc at a time, and starts them; it returns how
// many are live.
func (c *callers) open(p *phase, n, conc int) int {
	var live atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				p.wg.Add(1)
				conn, streamSID, err := c.dial(i)
				if err != nil {
					p.fail(err)
					p.wg.Done()
					continue
				}
				live.Add(1)
				go c.run(p, conn, streamSID)
			}
		}()
	}
	wg.Wait()
	return int(live.Load())
}
