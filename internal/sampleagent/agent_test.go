package sampleagent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	. "github.com/onsi/gomega"
)

const streamSID = "MZ0123456789abcdef0123456789abcdef"

// startAgent serves a new agent's Handler("/media") and returns its ws URL.
func startAgent(t *testing.T, o Options) (*Agent, *httptest.Server, string) {
	t.Helper()
	a := New(o)
	h, err := a.Handler("/media")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return a, srv, "ws" + strings.TrimPrefix(srv.URL, "http") + "/media"
}

// twilio plays Twilio's side of a stream with a plain gorilla client.
type twilio struct {
	t    *testing.T
	g    *WithT
	conn *websocket.Conn
	seq  int
}

func dialTwilio(t *testing.T, g *WithT, wsURL string) *twilio {
	conn, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { conn.Close() })
	return &twilio{t: t, g: g, conn: conn}
}

func (tw *twilio) sendRaw(s string) {
	tw.g.Expect(tw.conn.WriteMessage(websocket.TextMessage, []byte(s))).To(Succeed())
}

// send adds sequenceNumber and streamSid, as Twilio does.
func (tw *twilio) send(m map[string]any) {
	tw.seq++
	m["sequenceNumber"] = strconv.Itoa(tw.seq)
	m["streamSid"] = streamSID
	tw.g.Expect(tw.conn.WriteJSON(m)).To(Succeed())
}

func (tw *twilio) start(params map[string]string) {
	tw.sendRaw(`{"event":"connected","protocol":"Call","version":"1.0.0"}`)
	tw.send(map[string]any{"event": "start", "start": map[string]any{
		"streamSid": streamSID, "accountSid": "AC0123456789abcdef0123456789abcdef",
		"callSid": "CA0123456789abcdef0123456789abcdef", "tracks": []string{"inbound"},
		"customParameters": params,
		"mediaFormat":      map[string]any{"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
	}})
}

func (tw *twilio) read() string {
	_, data, err := tw.conn.ReadMessage()
	tw.g.Expect(err).NotTo(HaveOccurred())
	return string(data)
}

// readClose reads until the agent's close frame and returns its code.
func (tw *twilio) readClose() int {
	for {
		_, _, err := tw.conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			ok := errors.As(err, &ce)
			tw.g.Expect(ok).To(BeTrue(), "want a close frame, got %v", err)
			return ce.Code
		}
	}
}

func payload(i int) string {
	return base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string(rune('a'+i)), 160)))
}

func TestAgentEchoesMarksAndRecordsDigits(t *testing.T) {
	g := NewWithT(t)
	agent, srv, wsURL := startAgent(t, Options{MarkEvery: 2})
	tw := dialTwilio(t, g, wsURL)
	tw.start(map[string]string{"from": "+14155550100", "to": "+14155550199", "token": "x"})

	for i := range 5 {
		tw.send(map[string]any{"event": "media", "media": map[string]any{
			"track": "inbound", "chunk": strconv.Itoa(i + 1), "timestamp": strconv.Itoa(i * 20), "payload": payload(i),
		}})
		g.Expect(tw.read()).To(MatchJSON(`{"event":"media","streamSid":"` + streamSID + `","media":{"payload":"` + payload(i) + `"}}`))
		if (i+1)%2 == 0 {
			name := "echo-" + strconv.Itoa((i+1)/2)
			g.Expect(tw.read()).To(MatchJSON(`{"event":"mark","streamSid":"` + streamSID + `","mark":{"name":"` + name + `"}}`))
			tw.send(map[string]any{"event": "mark", "mark": map[string]any{"name": name}})
		}
	}
	tw.send(map[string]any{"event": "dtmf", "dtmf": map[string]any{"track": "inbound_track", "digit": "4"}})
	tw.send(map[string]any{"event": "dtmf", "dtmf": map[string]any{"track": "inbound_track", "digit": "2"}})
	tw.send(map[string]any{"event": "stop", "stop": map[string]any{"accountSid": "AC0123456789abcdef0123456789abcdef", "callSid": "CA0123456789abcdef0123456789abcdef"}})
	g.Expect(tw.readClose()).To(Equal(websocket.CloseNormalClosure))

	want := Stats{
		Calls: 1, CompletedCalls: 1,
		LastFrom: "+14155550100", LastTo: "+14155550199",
		LastCallSID: "CA0123456789abcdef0123456789abcdef", LastStreamSID: streamSID,
		FramesIn: 5, FramesOut: 5, MarksSent: 2, MarksEchoed: 2, Digits: "42",
	}
	g.Expect(agent.Stats()).To(Equal(want))

	resp, err := http.Get(srv.URL + "/stats")
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	g.Expect(resp.Header.Get("Content-Type")).To(Equal("application/json"))
	var got Stats
	g.Expect(json.NewDecoder(resp.Body).Decode(&got)).To(Succeed())
	g.Expect(got).To(Equal(want))
}

func TestAgentCountsProtocolErrors(t *testing.T) {
	g := NewWithT(t)
	agent, _, wsURL := startAgent(t, Options{})
	tw := dialTwilio(t, g, wsURL)

	g.Expect(tw.conn.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3})).To(Succeed())
	tw.sendRaw(`{not json`)
	tw.send(map[string]any{"event": "media", "media": map[string]any{"payload": payload(0)}}) // before start
	tw.send(map[string]any{"event": "hello"})
	tw.start(nil)
	tw.send(map[string]any{"event": "stop"})
	g.Expect(tw.readClose()).To(Equal(websocket.CloseNormalClosure))

	st := agent.Stats()
	g.Expect(st.ProtocolErrors).To(Equal(int64(4)))
	g.Expect(st.FramesOut).To(BeZero())
	g.Expect(st.CompletedCalls).To(Equal(int64(1)))
}

func TestAgentShutdownClosesLiveStreams(t *testing.T) {
	g := NewWithT(t)
	agent, _, wsURL := startAgent(t, Options{})
	tw := dialTwilio(t, g, wsURL)
	tw.start(map[string]string{"from": "+14155550100"})
	g.Eventually(func() int64 { return agent.Stats().ActiveCalls }).Should(Equal(int64(1)))

	done := make(chan error, 1)
	go func() { done <- agent.Shutdown(context.Background()) }()
	g.Expect(tw.readClose()).To(Equal(websocket.CloseGoingAway))
	g.Eventually(done).WithTimeout(10 * time.Second).Should(Receive(BeNil()))

	st := agent.Stats()
	g.Expect(st.ActiveCalls).To(BeZero())
	g.Expect(st.CompletedCalls).To(BeZero(), "a stream ended without stop is not completed")

	_, resp, err := websocket.DefaultDialer.Dial(wsURL, nil)
	g.Expect(err).To(HaveOccurred())
	g.Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable))
}

func TestAgentShutdownGivesUpWhenContextEnds(t *testing.T) {
	g := NewWithT(t)
	agent, _, wsURL := startAgent(t, Options{})
	// A peer that never answers close frames: its reads stop after start.
	conn, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
	g.Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	g.Expect(conn.WriteMessage(websocket.TextMessage, []byte(`{"event":"start","streamSid":"MZ1","start":{"callSid":"CA1"}}`))).To(Succeed())
	g.Eventually(func() int64 { return agent.Stats().ActiveCalls }).Should(Equal(int64(1)))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g.Expect(agent.Shutdown(ctx)).To(MatchError(context.Canceled))
	g.Expect(agent.Stats().ActiveCalls).To(BeZero())
}

func TestHandlerRejectsReservedPaths(t *testing.T) {
	for _, p := range []string{"media", "/stats", "/healthz"} {
		_, err := New(Options{}).Handler(p)
		NewWithT(t).Expect(err).To(HaveOccurred(), p)
	}
}

func TestStatsHandlerOnlyAnswersGET(t *testing.T) {
	g := NewWithT(t)
	rec := httptest.NewRecorder()
	New(Options{}).StatsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/stats", nil))
	g.Expect(rec.Code).To(Equal(http.StatusMethodNotAllowed))
}
