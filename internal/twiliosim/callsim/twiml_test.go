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
  <Hangup/>
</Response>`))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(doc.Verbs).To(Equal([]string{"Start", "Pause", "Connect", "Say", "Hangup"}))
	g.Expect(doc.Recording).To(Equal(&RecordingInstruction{
		Channels: "dual", Track: "both", Trim: "do-not-trim",
		RecordingStatusCallback: "https://h/recording", RecordingStatusCallbackMethod: "POST",
		RecordingStatusCallbackEvent: []string{"in-progress", "completed"},
	}))
	g.Expect(doc.Stream).To(Equal(&streamInstruction{
		URL: "wss://h/stream", Name: "s1", Track: "inbound_track",
		Parameters: map[string]string{"from": "+14155550100", "empty": ""},
	}))
	g.Expect(doc.Say).To(Equal("Bye"))
	g.Expect(doc.Hangup).To(BeTrue())
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
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := parseTwiML([]byte(body))
			NewWithT(t).Expect(err).To(HaveOccurred())
		})
	}
}
