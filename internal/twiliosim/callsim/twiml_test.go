package callsim

import (
	"testing"

	. "github.com/onsi/gomega"
)

func TestParseTwiML(t *testing.T) {
	g := NewWithT(t)
	doc, err := parseTwiML([]byte(`<?xml version="1.0" encoding="UTF-8"?>
<Response>
  <Start><Recording track="both" channels="dual" trim="do-not-trim"
    recordingStatusCallbackMethod="POST" recordingStatusCallbackEvent="in-progress completed"
    recordingStatusCallback="https://h/recording"/></Start>
  <Pause length="1"/>
  <Connect><Stream url="wss://h/stream" name="s1" track="inbound_track">
    <Parameter name="from" value="+14155550100"/><Parameter name="empty" value=""/>
  </Stream></Connect>
  <Say voice="alice">  Bye  </Say>
  <Dial> +14155550101 </Dial>
  <Dial timeout="10"><Number>+14155550102</Number></Dial>
  <Redirect method="get">https://h/next?a=1&amp;b=2</Redirect>
  <Redirect>/relative</Redirect>
  <Hangup/>
</Response>`))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(doc.Verbs).To(Equal([]string{"Start", "Pause", "Connect", "Say", "Dial", "Dial", "Redirect", "Redirect", "Hangup"}))
	g.Expect(doc.steps).To(HaveLen(len(doc.Verbs)))
	for i, st := range doc.steps {
		g.Expect(st.verb).To(Equal(doc.Verbs[i]))
	}
	g.Expect(doc.steps[0].recording).To(Equal(&RecordingInstruction{
		Channels: "dual", Track: "both", Trim: "do-not-trim",
		RecordingStatusCallback: "https://h/recording", RecordingStatusCallbackMethod: "POST",
		RecordingStatusCallbackEvent: []string{"in-progress", "completed"},
	}))
	g.Expect(doc.steps[1]).To(Equal(step{verb: "Pause"}))
	g.Expect(doc.steps[2].stream).To(Equal(&streamInstruction{
		URL: "wss://h/stream", Name: "s1", Track: "inbound_track",
		Parameters: map[string]string{"from": "+14155550100", "empty": ""},
	}))
	g.Expect(doc.steps[3].text).To(Equal("Bye"))
	g.Expect(doc.steps[4].text).To(Equal("+14155550101"))
	g.Expect(doc.steps[5].text).To(Equal("+14155550102"))
	g.Expect(doc.steps[6]).To(Equal(step{verb: "Redirect", text: "https://h/next?a=1&b=2", method: "GET"}))
	g.Expect(doc.steps[7]).To(Equal(step{verb: "Redirect", text: "/relative", method: "POST"}))
	g.Expect(doc.steps[8]).To(Equal(step{verb: "Hangup"}))
}

func TestParseTwiMLRejects(t *testing.T) {
	tests := map[string]string{
		"not XML":           `hello`,
		"wrong root":        `<Reply/>`,
		"two streams":       `<Response><Connect><Stream url="wss://h/a"/></Connect><Connect><Stream url="wss://h/b"/></Connect></Response>`,
		"two recordings":    `<Response><Start><Recording/><Recording/></Start></Response>`,
		"relative stream":   `<Response><Connect><Stream url="/stream"/></Connect></Response>`,
		"stream query":      `<Response><Connect><Stream url="wss://h/s?token=1"/></Connect></Response>`,
		"unnamed parameter": `<Response><Connect><Stream url="wss://h/s"><Parameter value="x"/></Stream></Connect></Response>`,
		"empty redirect":    `<Response><Redirect> </Redirect></Response>`,
		"redirect method":   `<Response><Redirect method="PUT">https://h/x</Redirect></Response>`,
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := parseTwiML([]byte(body))
			NewWithT(t).Expect(err).To(HaveOccurred())
		})
	}
}

func TestResolveURL(t *testing.T) {
	g := NewWithT(t)
	for ref, want := range map[string]string{
		"https://other.example.com/x?a=1": "https://other.example.com/x?a=1",
		"/next":                           "https://h.example.com/next",
		"next?b=2":                        "https://h.example.com/app/next?b=2",
	} {
		got, err := resolveURL("https://h.example.com/app/voice#rc=2", ref)
		g.Expect(err).NotTo(HaveOccurred(), ref)
		g.Expect(got).To(Equal(want), ref)
	}
	for _, ref := range []string{"wss://h.example.com/x", "mailto:x@example.com", "%zz"} {
		_, err := resolveURL("https://h.example.com/app/voice", ref)
		g.Expect(err).To(HaveOccurred(), ref)
	}
}
