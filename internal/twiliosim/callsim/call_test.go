package callsim

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/twilio/twilio-go/twiml"
)

// streamTwiML is what the webhook server answers: a dual-channel recording,
// then a bidirectional stream with routing parameters. It is built with
// twilio-go's twiml package, as the server builds it.
func streamTwiML(t testing.TB, after ...twiml.Element) string {
	t.Helper()
	verbs := []twiml.Element{
		&twiml.VoiceStart{InnerElements: []twiml.Element{
			&twiml.VoiceRecording{Channels: "dual", Track: "both", RecordingStatusCallback: callbackURL},
		}},
		&twiml.VoiceConnect{InnerElements: []twiml.Element{
			&twiml.VoiceStream{Url: streamURL, InnerElements: []twiml.Element{
				&twiml.VoiceParameter{Name: "from", Value: "+14155550100"},
				&twiml.VoiceParameter{Name: "to", Value: "+14155550199"},
				&twiml.VoiceParameter{Name: "token", Value: "t0k3n"},
			}},
		}},
	}
	out, err := twiml.Voice(append(verbs, after...))
	if err != nil {
		t.Fatalf("build TwiML: %v", err)
	}
	return out
}

func TestPlaceStreamsAndPostsRecording(t *testing.T) {
	g := NewWithT(t)
	app := newFakeApp(t, streamTwiML(t))
	c := app.call()
	c.MediaFrames = 5
	c.ToneHz = 440
	c.DTMF = []string{"1", "#"}

	res, err := Place(context.Background(), c)
	g.Expect(err).NotTo(HaveOccurred())

	// The voice webhook: signed, Twilio's parameters.
	voice, recordings, upgrades, wsSigOK, msgs := app.snapshot()
	g.Expect(voice).To(HaveLen(1))
	g.Expect(voice[0].sigOK).To(BeTrue())
	g.Expect(res.CallSID).To(MatchRegexp(`^CA[0-9a-f]{32}$`))
	g.Expect(flatten(voice[0].form)).To(Equal(map[string]string{
		"CallSid": res.CallSID, "AccountSid": testAccount,
		"From": "+14155550100", "To": "+14155550199",
		"Caller": "+14155550100", "Called": "+14155550199",
		"CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01",
	}))

	// The parsed TwiML.
	g.Expect(res.VoiceStatus).To(Equal(200))
	g.Expect(res.Verbs).To(Equal([]string{"Start", "Connect"}))
	g.Expect(res.Recording).To(Equal(&RecordingInstruction{Channels: "dual", Track: "both", RecordingStatusCallback: callbackURL}))
	g.Expect(res.StreamURL).To(Equal(streamURL))
	g.Expect(res.Parameters).To(Equal(map[string]string{"from": "+14155550100", "to": "+14155550199", "token": "t0k3n"}))
	g.Expect(res.Hangup).To(BeFalse())

	// The stream: signed upgrade, then the messages in Twilio's order.
	g.Expect(upgrades).To(Equal(1))
	g.Expect(wsSigOK).To(BeTrue())
	g.Expect(res.StreamSID).To(MatchRegexp(`^MZ[0-9a-f]{32}$`))
	g.Expect(events(msgs)).To(Equal([]string{
		"connected", "start", "media", "dtmf", "media", "media", "dtmf", "media", "media", "stop",
	}))
	g.Expect(app.rawMessages()[0]).To(MatchJSON(`{"event":"connected","protocol":"Call","version":"1.0.0"}`))
	g.Expect(app.rawMessages()[1]).To(MatchJSON(`{"event":"start","sequenceNumber":"1","streamSid":"` + res.StreamSID + `",
		"start":{"streamSid":"` + res.StreamSID + `","accountSid":"` + testAccount + `","callSid":"` + res.CallSID + `",
		"tracks":["inbound"],"customParameters":{"from":"+14155550100","to":"+14155550199","token":"t0k3n"},
		"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}`))
	for i, m := range msgs[1:] {
		g.Expect(m).To(HaveKeyWithValue("sequenceNumber", strconv.Itoa(i+1)), "message %d", i+1)
		g.Expect(m).To(HaveKeyWithValue("streamSid", res.StreamSID))
	}
	chunk := 0
	var digits []string
	for _, m := range msgs {
		switch m["event"] {
		case "media":
			chunk++
			media := m["media"].(map[string]any)
			g.Expect(media).To(HaveKeyWithValue("track", "inbound"))
			g.Expect(media).To(HaveKeyWithValue("chunk", strconv.Itoa(chunk)))
			g.Expect(media).To(HaveKeyWithValue("timestamp", strconv.Itoa((chunk-1)*20)))
			audio, err := base64.StdEncoding.DecodeString(media["payload"].(string))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(audio).To(HaveLen(160))
		case "dtmf":
			d := m["dtmf"].(map[string]any)
			g.Expect(d).To(HaveKeyWithValue("track", "inbound_track"))
			digits = append(digits, d["digit"].(string))
		}
	}
	g.Expect(digits).To(Equal([]string{"1", "#"}))
	g.Expect(msgs[len(msgs)-1]).To(HaveKeyWithValue("stop", map[string]any{"accountSid": testAccount, "callSid": res.CallSID}))

	// What the caller side saw: every frame echoed, the clear, a clean close.
	g.Expect(res.SentMedia).To(Equal(5))
	g.Expect(res.SentDTMF).To(Equal(2))
	g.Expect(res.ReceivedMedia).To(Equal(5))
	g.Expect(res.ReceivedPayloads).To(HaveLen(5))
	g.Expect(res.ReceivedAudioBytes).To(Equal(5 * 160))
	g.Expect(res.ReceivedAudioSHA256).To(Equal(res.SentAudioSHA256))
	g.Expect(res.ClearsReceived).To(Equal(1))
	g.Expect(res.InvalidMessages).To(BeZero())
	g.Expect(res.StopSent).To(BeTrue())
	g.Expect(res.ServerClosed).To(BeFalse())
	g.Expect(res.CloseCode).To(Equal(1000))

	// The recording status callback: signed, the documented parameters.
	g.Expect(recordings).To(HaveLen(1))
	g.Expect(recordings[0].method).To(Equal("POST"))
	g.Expect(recordings[0].sigOK).To(BeTrue())
	g.Expect(res.RecordingCallbackStatus).To(Equal(204))
	g.Expect(res.RecordingSID).To(MatchRegexp(`^RE[0-9a-f]{32}$`))
	rec := flatten(recordings[0].form)
	g.Expect(rec).To(HaveLen(10))
	g.Expect(rec).To(HaveKeyWithValue("AccountSid", testAccount))
	g.Expect(rec).To(HaveKeyWithValue("CallSid", res.CallSID))
	g.Expect(rec).To(HaveKeyWithValue("RecordingSid", res.RecordingSID))
	g.Expect(rec).To(HaveKeyWithValue("RecordingUrl", "https://api.twilio.com/2010-04-01/Accounts/"+testAccount+"/Recordings/"+res.RecordingSID))
	g.Expect(rec).To(HaveKeyWithValue("RecordingStatus", "completed"))
	g.Expect(rec).To(HaveKeyWithValue("RecordingDuration", "1"))
	g.Expect(rec).To(HaveKeyWithValue("RecordingChannels", "2"))
	g.Expect(rec).To(HaveKeyWithValue("RecordingSource", "StartCallRecordingTwiML"))
	g.Expect(rec).To(HaveKeyWithValue("ErrorCode", "0"))
	_, err = time.Parse(time.RFC1123Z, rec["RecordingStartTime"])
	g.Expect(err).NotTo(HaveOccurred())
}

func TestPlaceEchoesMarksAndStopsWhenServerCloses(t *testing.T) {
	g := NewWithT(t)
	app := newFakeApp(t, streamTwiML(t, &twiml.VoiceSay{Message: "Goodbye"}, &twiml.VoiceHangup{}),
		func(a *fakeApp) { a.markOnStart = true })
	c := app.call()
	c.MediaFrames = 1_000_000 // the call ends only because the server closes
	c.FramePeriod = 0         // real-time pacing

	res, err := Place(context.Background(), c)
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(res.MarksEchoed).To(Equal(1))
	g.Expect(res.ServerClosed).To(BeTrue())
	g.Expect(res.StopSent).To(BeFalse())
	g.Expect(res.CloseCode).To(Equal(1000))
	g.Expect(res.Say).To(Equal("Goodbye"))
	g.Expect(res.Hangup).To(BeTrue())
	g.Expect(res.Verbs).To(Equal([]string{"Start", "Connect", "Say", "Hangup"}))

	_, recordings, _, _, msgs := app.snapshot()
	var marks []map[string]any
	for _, m := range msgs {
		g.Expect(m["event"]).NotTo(Equal("stop"))
		if m["event"] == "mark" {
			marks = append(marks, m)
		}
	}
	g.Expect(marks).To(HaveLen(1))
	g.Expect(marks[0]).To(HaveKeyWithValue("streamSid", res.StreamSID))
	g.Expect(marks[0]).To(HaveKeyWithValue("mark", map[string]any{"name": "greeting"}))
	g.Expect(marks[0]).To(HaveKey("sequenceNumber"))
	g.Expect(recordings).To(HaveLen(1))
	g.Expect(recordings[0].sigOK).To(BeTrue())
}

func TestPlaceSayAndHangup(t *testing.T) {
	g := NewWithT(t)
	doc, err := twiml.Voice([]twiml.Element{&twiml.VoiceSay{Message: "This number is not in service."}, &twiml.VoiceHangup{}})
	g.Expect(err).NotTo(HaveOccurred())
	app := newFakeApp(t, doc)

	res, err := Place(context.Background(), app.call())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Verbs).To(Equal([]string{"Say", "Hangup"}))
	g.Expect(res.Say).To(Equal("This number is not in service."))
	g.Expect(res.Hangup).To(BeTrue())
	g.Expect(res.StreamURL).To(BeEmpty())
	g.Expect(res.StreamSID).To(BeEmpty())
	g.Expect(res.Recording).To(BeNil())
	g.Expect(res.RecordingCallbackStatus).To(BeZero())
	_, recordings, upgrades, _, _ := app.snapshot()
	g.Expect(upgrades).To(BeZero())
	g.Expect(recordings).To(BeEmpty())
}

func TestPlaceWithWrongTokenFailsValidation(t *testing.T) {
	g := NewWithT(t)
	app := newFakeApp(t, streamTwiML(t))
	c := app.call()
	c.AuthToken = "wrongToken1"

	res, err := Place(context.Background(), c)
	g.Expect(err).To(MatchError(ErrWebhookFailed))
	g.Expect(res.VoiceStatus).To(Equal(403))
	voice, _, upgrades, _, _ := app.snapshot()
	g.Expect(voice).To(HaveLen(1))
	g.Expect(voice[0].sigOK).To(BeFalse())
	g.Expect(upgrades).To(BeZero())
}

// A server that checks the upgrade signature over https:// instead of wss://
// rejects the stream; the call still ends normally and the recording
// callback is still posted.
func TestPlaceSignsTheUpgradeOverTheWSSURL(t *testing.T) {
	g := NewWithT(t)
	app := newFakeApp(t, streamTwiML(t), func(a *fakeApp) { a.wsSignedURL = publicBase + "/stream" })

	res, err := Place(context.Background(), app.call())
	g.Expect(err).To(MatchError(ContainSubstring("31920")))
	g.Expect(res.StreamHandshakeStatus).To(Equal(403))
	g.Expect(res.RecordingCallbackStatus).To(Equal(204))
	_, _, upgrades, wsSigOK, _ := app.snapshot()
	g.Expect(upgrades).To(Equal(1))
	g.Expect(wsSigOK).To(BeFalse())
}

func TestPlaceRecordingCallbackWithGET(t *testing.T) {
	g := NewWithT(t)
	doc, err := twiml.Voice([]twiml.Element{&twiml.VoiceStart{InnerElements: []twiml.Element{
		&twiml.VoiceRecording{RecordingStatusCallback: callbackURL + "?tenant=a", RecordingStatusCallbackMethod: "GET"},
	}}})
	g.Expect(err).NotTo(HaveOccurred())
	app := newFakeApp(t, doc)

	res, err := Place(context.Background(), app.call())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.RecordingCallbackStatus).To(Equal(204))
	_, recordings, _, _, _ := app.snapshot()
	g.Expect(recordings).To(HaveLen(1))
	g.Expect(recordings[0].method).To(Equal("GET"))
	g.Expect(recordings[0].sigOK).To(BeTrue())
	g.Expect(recordings[0].form.Get("tenant")).To(Equal("a"))
	g.Expect(recordings[0].form.Get("RecordingStatus")).To(Equal("completed"))
}

func TestPlaceSkipsCallbackWithoutCompletedEvent(t *testing.T) {
	g := NewWithT(t)
	doc, err := twiml.Voice([]twiml.Element{&twiml.VoiceStart{InnerElements: []twiml.Element{
		&twiml.VoiceRecording{RecordingStatusCallback: callbackURL, RecordingStatusCallbackEvent: "in-progress absent"},
	}}})
	g.Expect(err).NotTo(HaveOccurred())
	app := newFakeApp(t, doc)

	res, err := Place(context.Background(), app.call())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Recording.RecordingStatusCallbackEvent).To(Equal([]string{"in-progress", "absent"}))
	g.Expect(res.RecordingCallbackStatus).To(BeZero())
}

func TestPlaceRejectsWhatTwilioRejects(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		want        string
	}{
		{"server error", 500, "text/xml", "<Response/>", "answered 500"},
		{"not XML", 200, "text/plain", "hello", "12300"},
		{"wrong root", 200, "text/xml", "<Reply/>", "12100"},
		{"not TwiML at all", 200, "application/xml", "<Response>", "12100"},
		{"stream with query", 200, "text/xml", `<Response><Connect><Stream url="wss://h/s?x=1"/></Connect></Response>`, "31920"},
		{"stream over https", 200, "text/xml", `<Response><Connect><Stream url="https://h/s"/></Connect></Response>`, "31922"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			app := newFakeApp(t, "", func(a *fakeApp) {
				a.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", tt.contentType)
					w.WriteHeader(tt.status)
					_, _ = io.WriteString(w, tt.body)
				})
			})
			res, err := Place(context.Background(), app.call())
			g.Expect(err).To(MatchError(ErrWebhookFailed))
			g.Expect(err).To(MatchError(ContainSubstring(tt.want)))
			g.Expect(res.VoiceStatus).To(Equal(tt.status))
		})
	}
}

func TestPlaceStopsWhenContextIsCanceled(t *testing.T) {
	g := NewWithT(t)
	firstMedia := make(chan struct{})
	app := newFakeApp(t, streamTwiML(t), func(a *fakeApp) { a.firstMedia = firstMedia })
	c := app.call()
	c.MediaFrames = 1_000_000
	c.FramePeriod = 0

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-firstMedia
		cancel()
	}()
	res, err := Place(ctx, c)
	g.Expect(err).To(MatchError(context.Canceled))
	g.Expect(res.StopSent).To(BeFalse())
	g.Expect(res.RecordingCallbackStatus).To(BeZero())
}

func TestPlaceValidatesTheCall(t *testing.T) {
	base := Call{VoiceURL: voiceURL, AuthToken: testToken, AccountSID: testAccount}
	tests := []struct {
		name   string
		change func(*Call)
		want   string
	}{
		{"relative voice URL", func(c *Call) { c.VoiceURL = "/voice" }, "absolute"},
		{"no token", func(c *Call) { c.AuthToken = "" }, "auth token"},
		{"no account", func(c *Call) { c.AccountSID = "" }, "account SID"},
		{"bad digit", func(c *Call) { c.DTMF = []string{"12"} }, "DTMF"},
		{"negative frames", func(c *Call) { c.MediaFrames = -1 }, "negative"},
		{"relative fallback URL", func(c *Call) { c.FallbackURL = "/fallback" }, "fallback URL"},
		{"bad fallback method", func(c *Call) { c.FallbackURL, c.FallbackMethod = voiceURL, "PUT" }, "fallback method"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			c := base
			tt.change(&c)
			_, err := Place(context.Background(), c)
			g.Expect(err).To(MatchError(ContainSubstring(tt.want)))
		})
	}
}

func events(msgs []map[string]any) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i], _ = m["event"].(string)
	}
	return out
}

func flatten(v url.Values) map[string]string {
	out := make(map[string]string, len(v))
	for k := range v {
		out[k] = v.Get(k)
	}
	return out
}
