package sampleagent_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/loquent/twilio-voice-operator/internal/sampleagent"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim/callsim"
)

// The call simulator and the agent speak the same protocol from both ends:
// a whole call against the agent, with a voice webhook pointing straight at it.
func TestAgentAnswersASimulatedCall(t *testing.T) {
	g := NewWithT(t)
	agent := sampleagent.New(sampleagent.Options{MarkEvery: 10})
	h, err := agent.Handler("/media")
	g.Expect(err).NotTo(HaveOccurred())
	agentSrv := httptest.NewServer(h)
	defer agentSrv.Close()

	voiceSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		_, _ = io.WriteString(w, `<Response><Connect><Stream url="wss://agent.example.com/media">`+
			`<Parameter name="from" value="+14155550100"/><Parameter name="to" value="+14155550199"/>`+
			`</Stream></Connect></Response>`)
	}))
	defer voiceSrv.Close()

	rewrite := func(u *url.URL) *url.URL {
		target := map[string]string{"voice.example.com": voiceSrv.URL, "agent.example.com": agentSrv.URL}[u.Host]
		if target == "" {
			return u
		}
		to, _ := url.Parse(target)
		u.Host = to.Host
		u.Scheme = map[string]string{"https": "http", "wss": "ws"}[u.Scheme]
		return u
	}
	res, err := callsim.Place(context.Background(), callsim.Call{
		VoiceURL: "https://voice.example.com/voice", AuthToken: "token1", AccountSID: "AC0123456789abcdef0123456789abcdef",
		From: "+14155550100", To: "+14155550199",
		MediaFrames: 40, FramePeriod: -1, ToneHz: 440, DTMF: []string{"7"},
		RewriteURL: rewrite,
	})
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(res.SentMedia).To(Equal(40))
	g.Expect(res.ReceivedMedia).To(Equal(40))
	g.Expect(res.ReceivedAudioSHA256).To(Equal(res.SentAudioSHA256))
	g.Expect(res.InvalidMessages).To(BeZero())
	g.Expect(res.CloseCode).To(Equal(1000))

	st := agent.Stats()
	g.Expect(st.Calls).To(Equal(int64(1)))
	g.Expect(st.CompletedCalls).To(Equal(int64(1)))
	g.Expect(st.LastFrom).To(Equal("+14155550100"))
	g.Expect(st.LastTo).To(Equal("+14155550199"))
	g.Expect(st.LastCallSID).To(Equal(res.CallSID))
	g.Expect(st.LastStreamSID).To(Equal(res.StreamSID))
	g.Expect(st.FramesIn).To(Equal(int64(40)))
	g.Expect(st.FramesOut).To(Equal(int64(40)))
	g.Expect(st.MarksSent).To(Equal(int64(4)))
	// Marks race the caller's hang-up, so only bounds hold.
	g.Expect(st.MarksEchoed).To(BeNumerically("<=", 4))
	g.Expect(int64(res.MarksEchoed)).To(BeNumerically(">=", st.MarksEchoed))
	g.Expect(st.Digits).To(Equal("7"))
	g.Expect(st.ProtocolErrors).To(BeZero())
}
